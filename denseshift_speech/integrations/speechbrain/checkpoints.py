"""A SpeechBrain Checkpointer that survives being killed while it saves.

SpeechBrain's Checkpointer writes ``CKPT.yaml`` -- the file that marks a folder as a
checkpoint -- *before* the parameter files.  A run killed during a save leaves a folder
that looks complete but has missing or truncated files, and the next start crashes
trying to resume from it (seen in our kill-and-resume test).  Here the marker is
written to ``CKPT.yaml.partial`` and renamed into place only after every file is saved,
so an interrupted save is simply ignored and training resumes from the previous one.
"""
from __future__ import annotations

import os

from speechbrain.utils.checkpoints import METAFNAME, Checkpointer

PARTIAL = METAFNAME + ".partial"


class AtomicCheckpointer(Checkpointer):
    """Checkpointer whose checkpoints become visible only once fully written."""

    def _save_checkpoint_metafile(self, fpath, meta_to_include={}, end_of_epoch=True):
        return super()._save_checkpoint_metafile(fpath.with_name(PARTIAL), meta_to_include,
                                                 end_of_epoch)

    def save_checkpoint(self, *args, **kwargs):
        ckpt = super().save_checkpoint(*args, **kwargs)
        if ckpt is not None:  # the main process wrote the marker
            os.replace(ckpt.path / PARTIAL, ckpt.path / METAFNAME)
        return ckpt

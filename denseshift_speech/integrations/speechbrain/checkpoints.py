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


# Keys SpeechBrain writes into every CKPT.yaml besides the recipe's own metric.
_BOOKKEEPING = ("unixtime", "end-of-epoch")


def evaluated_checkpoint(folder: str):
    """The checkpoint a recipe tests: the one with the lowest value of the metric its
    checkpoints are ranked by (``WER``, ``ErrorRate``: the numeric key the recipe put in
    CKPT.yaml), chosen by SpeechBrain's own ``find_checkpoint(min_key=...)`` exactly as
    ``Brain.evaluate(min_key=...)`` does.  ``folder``: a run's output folder or its
    ``save/``.  None when there is no checkpoint."""
    for f in (os.path.join(folder, "save"), folder):
        if not (os.path.isdir(f) and any(d.startswith("CKPT+") for d in os.listdir(f))):
            continue
        ckpts = Checkpointer(f).list_checkpoints()
        keys = sorted({k for c in ckpts for k, v in c.meta.items()
                       if k not in _BOOKKEEPING and isinstance(v, (int, float))})
        if not keys:
            return Checkpointer(f).find_checkpoint()  # the most recent
        return Checkpointer(f).find_checkpoint(min_key=keys[0])
    return None

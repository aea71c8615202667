"""What a reader of a packed model file needs beside the weights (no training glue).

* :func:`module_container`: the namespace of a model's modules -- the names DenseShift
  include/exclude patterns match and the packed file stores weights under;
* :func:`restore_normalizer_stats`: put the feature-normalization statistics the file
  carries (``{module name: {glob_mean, glob_std}}``, written by
  :func:`denseshift_speech.integrations.speechbrain.export.normalizer_stats`) back into
  their modules.

Used by the writer (integrations/speechbrain), the recipes and streaming alike.
"""
from __future__ import annotations

import torch


def module_container(modules: dict) -> torch.nn.ModuleDict:
    """The recipe's modules under their hparams names: the namespace of DenseShift
    patterns and of the packed model file."""
    return torch.nn.ModuleDict({k: v for k, v in modules.items() if isinstance(v, torch.nn.Module)})


def restore_normalizer_stats(container: torch.nn.Module, stats: dict):
    """Put statistics read by ``normalizer_stats`` back into their modules."""
    for name, values in stats.items():
        module = container.get_submodule(name)
        module.glob_mean = torch.tensor(values["glob_mean"], dtype=torch.float32)
        module.glob_std = torch.tensor(values["glob_std"], dtype=torch.float32)
        module.count = 1


# Dotted paths that hparams written before the package was laid out in layers name
# (files keep their resolved hparams YAML): old -> new.  Applied to stored YAML text
# only, so no alias modules are needed at the old import paths.
RENAMED_PATHS = {
    "denseshift_speech.models.": "denseshift_speech.integrations.speechbrain.models.",
    "denseshift_speech.checkpoints.": "denseshift_speech.integrations.speechbrain.checkpoints.",
    "denseshift_speech.optim.": "denseshift_speech.core.optim.",
}


def upgrade_stored_hparams(text: str) -> str:
    """Resolved hparams YAML text with the package's pre-layering class paths renamed."""
    for old, new in RENAMED_PATHS.items():
        text = text.replace(":" + old, ":" + new)
    return text

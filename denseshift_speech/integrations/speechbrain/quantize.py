"""DenseShift from hparams: quantize a recipe's modules as its ``denseshift`` hparam says,
optionally starting from a full-precision checkpoint (``init_from_fp``).

Used by the recipes (through :mod:`.recipe`) and by the export of a finished run
(:mod:`.export`), which rebuilds the same quantized modules before loading a checkpoint.
"""
from __future__ import annotations

import logging
import os

import torch

from ...core.convert import DenseShiftConfig, QuantizeSummary, quantize_
from ...packed.spec import module_container
from .hparams import HparamsError

logger = logging.getLogger(__name__)


def apply_denseshift(modules: dict, hparams: dict) -> QuantizeSummary | None:
    """Quantize the recipe's trainable modules as ``hparams['denseshift']`` says.

    ``modules`` maps the names used in include/exclude patterns (``CNN``, ``Transformer``,
    ``ctc_lin``...) to modules.  With ``init: from_float`` and ``init_from_fp`` naming a
    full-precision checkpoint folder (a Checkpointer ``CKPT+...`` directory or its
    ``model.ckpt``), the float weights are loaded first and DenseShift starts from them.
    Must run before the Brain builds its optimizer.
    """
    config = hparams.get("denseshift")
    if config is None:
        return None
    if not isinstance(config, DenseShiftConfig):
        raise HparamsError(f"'denseshift' must be a !new:denseshift_speech.DenseShiftConfig, "
                           f"got {type(config).__name__}")
    container = module_container(modules)
    init_from = hparams.get("init_from_fp")
    if init_from:
        if config.init != "from_float":
            raise HparamsError("init_from_fp is set but denseshift init is not 'from_float'")
        load_float_checkpoint(hparams["model"], init_from)
    summary = quantize_(container, config)
    logger.info("%s", summary)
    return summary


def load_float_checkpoint(model: torch.nn.Module, path: str):
    """Load a full-precision recipe checkpoint into ``model`` (the hparams' ``model``, the
    object the Checkpointer saves as <dir>/model.ckpt), strictly.

    ``path``: a ``model.ckpt`` file, a ``CKPT+...`` folder, or a run's output folder (or
    its ``save/``), whose checkpoint with the lowest validation WER (the one the recipe
    tests) is used.
    """
    ckpt = os.path.join(path, "model.ckpt") if os.path.isdir(path) else path
    if os.path.isdir(path) and not os.path.isfile(ckpt):
        ckpt = os.path.join(_best_checkpoint(path), "model.ckpt")
    if not os.path.isfile(ckpt):
        raise HparamsError(f"init_from_fp: no checkpoint at {ckpt}")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise HparamsError(f"init_from_fp: {ckpt} does not match this architecture: {err}") from None


def _best_checkpoint(run_dir: str) -> str:
    """The CKPT+ folder under ``run_dir`` (or ``run_dir``/save) the recipe would test."""
    from .checkpoints import evaluated_checkpoint  # (speechbrain's checkpointer: lazily)
    found = evaluated_checkpoint(run_dir)
    return str(found.path) if found is not None else run_dir

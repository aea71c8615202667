"""A trained model -> the self-contained packed model file.

:func:`export_packed` packs the recipe's modules and writes the file (the recipes call it
at the end of training); :func:`export_run` does the same for any checkpoint of a
finished or interrupted run (``denseshift-speech export RUN_DIR``, see
:mod:`denseshift_speech.cli.export`): it rebuilds the architecture from the run's
resolved hparams, applies the same DenseShift configuration, loads the best checkpoint
strictly (lowest value of the metric the checkpoints were ranked by: WER for ASR,
ErrorRate for keyword spotting) and writes the file.
"""
from __future__ import annotations

import json
import os

import torch

from ...errors import UserError
from ...packed.spec import module_container, upgrade_stored_hparams
from .hparams import RESOLVED_HPARAMS
from .quantize import apply_denseshift
from .tokenizer import tokenizer_file

PACKED_FILE = "model.dsp"
# Deterministic buffers SpeechBrain rebuilds with the architecture: not worth shipping.
REBUILT_BUFFERS = ("*positional_encoding*.pe",)


def normalizer_stats(container: torch.nn.Module) -> dict:
    """{module name: {glob_mean, glob_std}} of every InputNormalization in ``container``:
    SpeechBrain keeps these statistics outside the state dict, so the file carries them."""
    from speechbrain.processing.features import InputNormalization
    return {name: {"glob_mean": m.glob_mean.flatten().tolist(),
                   "glob_std": m.glob_std.flatten().tolist()}
            for name, m in container.named_modules() if isinstance(m, InputNormalization)}


def export_packed(hparams: dict, summary, task: str, tokenizer=None, path: str | None = None,
                  metadata: dict | None = None, kernel_path: str | None = None) -> str:
    """Pack the trained modules in place and write the packed model file.

    The file (default <output_folder>/model.dsp) is self-contained: the resolved hparams
    (the architecture), normalization statistics, the tokenizer and any extra
    ``metadata`` (str -> str) travel inside it, so ``denseshift-speech stream`` needs
    nothing else.  Call after the last evaluation (the modules become inference-only).
    """
    from ...packed import pack_, save_packed, set_path_
    container = module_container(hparams["modules"]).cpu()  # the packed kernels are CPU code
    if summary is not None:
        pack_(container)
    if kernel_path is not None:
        set_path_(container, kernel_path)
    with open(os.path.join(hparams["output_folder"], RESOLVED_HPARAMS)) as f:
        meta = {"task": task, "arch": hparams["arch"], "hparams_yaml": f.read(),
                "normalizers": json.dumps(normalizer_stats(container)), **(metadata or {})}
    blobs = {}
    if tokenizer is not None:
        with open(tokenizer_file(tokenizer), "rb") as f:
            blobs["tokenizer.model"] = f.read()
    path = path or os.path.join(hparams["output_folder"], PACKED_FILE)
    save_packed(container, path, metadata=meta, blobs=blobs, config=hparams.get("denseshift"),
                rebuilt_buffers=REBUILT_BUFFERS)
    return path


def best_checkpoint(save_folder: str, checkpoint: str | None = None) -> str:
    """The CKPT+... folder to export: the given one, else the one the recipe tested."""
    from .checkpoints import evaluated_checkpoint
    if checkpoint:
        if not os.path.isfile(os.path.join(checkpoint, "model.ckpt")):
            raise UserError(f"{checkpoint}: not a recipe checkpoint (no model.ckpt inside)")
        return checkpoint
    found = evaluated_checkpoint(save_folder)
    if found is None:
        raise UserError(f"no checkpoint (CKPT+*) in {save_folder}")
    return str(found.path)


def export_run(run_dir: str, out: str | None = None, checkpoint: str | None = None,
               kernel_path: str | None = None) -> dict:
    """Export ``run_dir`` (a recipe's output folder); return the size report.  ``kernel_path``
    (int8, exact, shift) is the kernel path recorded in the file (default: int8)."""
    from hyperpyyaml import load_hyperpyyaml

    from ...packed import format_sizes, read_packed_metadata
    from .tokenizer import train_tokenizer

    resolved = os.path.join(run_dir, RESOLVED_HPARAMS)
    if not os.path.isfile(resolved):
        raise UserError(f"{run_dir}: no {RESOLVED_HPARAMS} (not a recipe output folder)")
    with open(resolved) as f:
        hparams = load_hyperpyyaml(upgrade_stored_hparams(f.read()))
    hparams["output_folder"], hparams["save_folder"] = run_dir, os.path.join(run_dir, "save")
    ckpt = best_checkpoint(os.path.join(run_dir, "save"), checkpoint)
    summary = apply_denseshift(hparams["modules"], hparams)
    # Every recoverable of the run (model, normalization statistics, ...), loaded strictly.
    from speechbrain.utils.checkpoints import Checkpointer
    loader = Checkpointer(os.path.dirname(os.path.abspath(ckpt)),
                          recoverables=hparams["checkpointer"].recoverables)
    try:
        found = loader.recover_if_possible(
            ckpt_predicate=lambda c: os.path.samefile(c.path, ckpt))
    except RuntimeError as err:
        raise UserError(f"{ckpt} does not match {resolved}: {err}") from None
    if found is None:
        raise UserError(f"{ckpt}: could not be loaded as a checkpoint")
    tokenizer = None
    if "vocab_size" in hparams and os.path.isdir(os.path.join(hparams["save_folder"], "tokenizer")):
        tokenizer = train_tokenizer(hparams)  # loads the trained one
    task = "asr" if "ctc_lin" in hparams["modules"] else "kws"
    path = export_packed(hparams, summary, task, tokenizer, path=out, kernel_path=kernel_path)
    sizes = read_packed_metadata(path)["sizes"]
    print(f"{ckpt} -> {path}: {format_sizes(sizes)}")
    return sizes

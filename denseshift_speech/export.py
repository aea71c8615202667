"""`denseshift-speech export RUN_DIR`: a trained recipe checkpoint -> packed model file.

Rebuilds the architecture from the run's resolved hparams, applies the same DenseShift
configuration, loads the best checkpoint strictly (lowest value of the metric the
checkpoints were ranked by: WER for ASR, ErrorRate for keyword spotting), and writes
the self-contained packed file (see :func:`denseshift_speech.recipe.export_packed`).
The recipes already do this at the end of training; this verb re-exports any
checkpoint, e.g. one saved mid-training.
"""
from __future__ import annotations

import glob
import os

from .errors import UserError


def best_checkpoint(save_folder: str, checkpoint: str | None = None) -> str:
    """The CKPT+... folder to export: the given one, else the best-ranked in save_folder."""
    import yaml
    if checkpoint:
        if not os.path.isfile(os.path.join(checkpoint, "model.ckpt")):
            raise UserError(f"{checkpoint}: not a recipe checkpoint (no model.ckpt inside)")
        return checkpoint
    ckpts = sorted(glob.glob(os.path.join(save_folder, "CKPT+*")))
    if not ckpts:
        raise UserError(f"no checkpoint (CKPT+*) in {save_folder}")

    def rank(path):
        with open(os.path.join(path, "CKPT.yaml")) as f:
            meta = yaml.safe_load(f) or {}
        metric = [v for k, v in meta.items() if k not in ("unixtime", "end-of-epoch")
                  and isinstance(v, (int, float))]
        return (metric[0] if metric else float("inf"), -meta.get("unixtime", 0))
    return min(ckpts, key=rank)


def export_run(run_dir: str, out: str | None = None, checkpoint: str | None = None) -> dict:
    """Export ``run_dir`` (a recipe's output folder); return the size report."""
    from hyperpyyaml import load_hyperpyyaml

    from . import recipe
    from .packed import format_sizes, read_packed_metadata

    resolved = os.path.join(run_dir, recipe.RESOLVED_HPARAMS)
    if not os.path.isfile(resolved):
        raise UserError(f"{run_dir}: no {recipe.RESOLVED_HPARAMS} (not a recipe output folder)")
    with open(resolved) as f:
        hparams = load_hyperpyyaml(f.read())
    hparams["output_folder"], hparams["save_folder"] = run_dir, os.path.join(run_dir, "save")
    ckpt = best_checkpoint(os.path.join(run_dir, "save"), checkpoint)
    summary = recipe.apply_denseshift(hparams["modules"], hparams)
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
        tokenizer = recipe.train_tokenizer(hparams)  # loads the trained one
    task = "asr" if "ctc_lin" in hparams["modules"] else "kws"
    path = recipe.export_packed(hparams, summary, task, tokenizer, path=out)
    sizes = read_packed_metadata(path)["sizes"]
    print(f"{ckpt} -> {path}: {format_sizes(sizes)}")
    return sizes


def add_parser(subparsers):
    p = subparsers.add_parser(
        "export", help="trained recipe checkpoint -> packed model file",
        description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="a recipe output folder (holds save/ and the resolved hparams)")
    p.add_argument("--checkpoint", help="a CKPT+... folder (default: the best in RUN_DIR/save)")
    p.add_argument("--out", help="output file (default: RUN_DIR/model.dsp)")
    p.set_defaults(func=lambda args: export_run(args.run_dir, args.out, args.checkpoint) and 0)
    return p

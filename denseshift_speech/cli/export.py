"""`denseshift-speech export RUN_DIR`: a trained recipe checkpoint -> packed model file.

The recipes already export at the end of training; this verb re-exports any checkpoint,
e.g. one saved mid-training (see
:func:`denseshift_speech.integrations.speechbrain.export.export_run`).
"""
from __future__ import annotations


def _run(args) -> int:
    from ..integrations.speechbrain.export import export_run
    return export_run(args.run_dir, args.out, args.checkpoint, kernel_path=args.kernel_path) and 0


def add_parser(subparsers):
    p = subparsers.add_parser(
        "export", help="trained recipe checkpoint -> packed model file",
        description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="a recipe output folder (holds save/ and the resolved hparams)")
    p.add_argument("--checkpoint", help="a CKPT+... folder (default: the best in RUN_DIR/save)")
    p.add_argument("--out", help="output file (default: RUN_DIR/model.dsp)")
    p.add_argument("--kernel-path", choices=["int8", "exact", "shift"], default=None,
                   help="packed kernel path recorded in the file (default: int8)")
    p.set_defaults(func=_run)
    return p

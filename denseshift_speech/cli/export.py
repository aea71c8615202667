"""`denseshift-speech export RUN_DIR`: a trained recipe checkpoint -> packed model file.

The recipes already export at the end of training; this verb re-exports any checkpoint,
e.g. one saved mid-training (see
:func:`denseshift_speech.integrations.speechbrain.export.export_run`).

With ``--onnx`` it writes instead the ONNX twin of the model (ASR: CNN front-end, conformer
encoder, CTC head; keyword spotter: normalization, x-vector TDNN, classifier; DenseShift
weights as exact int8 with per-channel scales where onnxruntime has an int8 MatMul, for
stock onnxruntime: :mod:`denseshift_speech.integrations.speechbrain.onnx_export`); the
source is a run folder (exported through a temporary packed file) or a ``model.dsp`` file.
``--wer MANIFEST`` (ASR) then decodes a recipe manifest with the packed model and with the
ONNX model and prints both WERs; ``--compare DIR`` (keyword spotter) classifies the clips
of a Speech Commands-layout folder with both and prints both accuracies and how many
predictions agree.
"""
from __future__ import annotations

import os
import tempfile


def _run_onnx(args) -> int:
    from ..errors import UserError
    from ..integrations.speechbrain.export import PACKED_FILE, export_run
    from ..integrations.speechbrain.onnx_export import (compare_kws, compare_wer,
                                                        export_asr_onnx, export_kws_onnx)
    from ..packed import read_packed_metadata
    from ..packed.onnx_export import size_report

    src = args.run_dir
    with tempfile.TemporaryDirectory(prefix="denseshift-onnx-") as tmp:
        if os.path.isfile(src):
            if args.checkpoint:
                raise UserError("--checkpoint applies to a run folder, not to a model file")
            dsp = src
            out = args.out or os.path.splitext(src)[0] + ".onnx"
        elif os.path.isdir(src):
            dsp = os.path.join(tmp, PACKED_FILE)
            export_run(src, dsp, args.checkpoint, kernel_path=args.kernel_path)
            out = args.out or os.path.join(src, "model.onnx")
        else:
            raise UserError(f"{src}: no such run folder or model file")
        task = read_packed_metadata(dsp)["metadata"].get("task") or "asr"
        if task not in ("asr", "kws"):
            raise UserError(f"{src}: --onnx exports ASR models (conformer CTC) and keyword "
                            f"spotters; this is a {task!r} model")
        if task == "kws" and args.wer:
            raise UserError(f"{src}: a keyword spotter; --wer is for ASR models (use "
                            "--compare DIR, a Speech Commands-layout folder)")
        if task == "asr" and args.compare:
            raise UserError(f"{src}: an ASR model; --compare is for keyword spotters (use "
                            "--wer MANIFEST)")
        try:
            report = (export_kws_onnx if task == "kws" else export_asr_onnx)(dsp, out)
        except ValueError as err:  # ModelFileError
            raise UserError(str(err)) from None
        print(f"{src} -> {out}: {report}; {size_report(out, dsp)}")
        if args.wer:
            compare_wer(dsp, out, args.wer, limit=args.wer_limit)
        if args.compare:
            compare_kws(dsp, out, args.compare, limit=args.wer_limit)
    return 0


def _run(args) -> int:
    if args.onnx:
        return _run_onnx(args)
    if args.wer or args.compare:
        from ..errors import UserError
        raise UserError("--wer and --compare need --onnx")
    from ..integrations.speechbrain.export import export_run
    return export_run(args.run_dir, args.out, args.checkpoint, kernel_path=args.kernel_path) and 0


def add_parser(subparsers):
    p = subparsers.add_parser(
        "export", help="trained recipe checkpoint -> packed model file (or ONNX with --onnx)",
        description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="a recipe output folder (holds save/ and the resolved "
                                   "hparams); with --onnx also a packed model file")
    p.add_argument("--checkpoint", help="a CKPT+... folder (default: the best in RUN_DIR/save)")
    p.add_argument("--out", help="output file (default: RUN_DIR/model.dsp; with --onnx "
                                 "RUN_DIR/model.onnx, or the model file's name with .onnx)")
    p.add_argument("--kernel-path", choices=["int8", "exact", "shift"], default=None,
                   help="packed kernel path recorded in the file (default: int8)")
    p.add_argument("--onnx", action="store_true",
                   help="write the ASR encoder + CTC head, or the keyword spotter's network, "
                        "as ONNX for stock onnxruntime (DenseShift weights as exact int8, "
                        "per-channel scales)")
    p.add_argument("--wer", metavar="MANIFEST",
                   help="with --onnx: greedy CTC WER of the packed and the ONNX model on a "
                        "recipe manifest (CSV with wav, wrd)")
    p.add_argument("--compare", metavar="DIR",
                   help="with --onnx, a keyword spotter: classify the clips of a Speech "
                        "Commands-layout folder with the packed and the ONNX model")
    p.add_argument("--wer-limit", type=int, default=None, metavar="N",
                   help="decode only the first N utterances of --wer (clips of --compare)")
    p.set_defaults(func=_run)
    return p

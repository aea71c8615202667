"""`denseshift-speech bench`: the verb's options; the benchmarks live in
:mod:`denseshift_speech.benchmarks` (inference.py, training.py, kws.py)."""
from __future__ import annotations

from ..benchmarks import harness as H
from ..benchmarks import inference as INF
from ..benchmarks import training as TR
from ..errors import UserError


def add_parser(subparsers):
    p = subparsers.add_parser(
        "bench", help="packed DenseShift vs torch / onnxruntime fp32 and int8 (table + JSON)",
        description="Packed DenseShift against what a user would run instead, side by side "
                    "in one run: whole encoders, several streams, single layers "
                    "(denseshift_speech/benchmarks/inference.py); --training: training steps "
                    "(benchmarks/training.py); --kws MODEL: a packed keyword spotter "
                    "(benchmarks/kws.py).")
    p.add_argument("--quick", action="store_true",
                   help="CI-sized run (well under a minute): demo geometry with 2 layers, "
                        "2 layer shapes, short timing budget (--training: the tiny geometry, "
                        "batch 2 x 1 s, 1 warm-up + 2 steps, plain AdamW)")
    p.add_argument("--json", default=None,
                   help=f"where to write the JSON (default {INF.DEFAULT_JSON}, with --training "
                        f"{TR.DEFAULT_JSON}; '' to skip)")
    p.add_argument("--threads", default=None, metavar="N[,N...]",
                   help="thread counts, comma-separated: every table is timed at each, with "
                        "torch, onnxruntime and DenseShift on the same count (default "
                        f"{','.join(map(str, H.DEFAULT_THREADS))}; --training: one count, "
                        "default 2)")
    p.add_argument("--bits", type=int, default=3, choices=(2, 3, 4),
                   help="DenseShift bits (default %(default)s)")
    p.add_argument("--isa", default="auto",
                   help="DenseShift kernel ISA (auto, avx512, avx2, scalar)")
    p.add_argument("--no-onnx", action="store_true", help="skip the onnxruntime baselines")
    p.add_argument("--no-encoder", action="store_true", help="skip the whole-encoder lines")
    p.add_argument("--no-layers", action="store_true", help="skip the single-layer lines")
    p.add_argument("--no-streams", action="store_true",
                   help=f"skip the several-streams line ({INF.STREAMS} x 640 ms in one call)")
    p.add_argument("--min-time", type=float, default=None,
                   help=f"seconds per layer measurement (default {INF.BUDGET}; quick "
                        f"{INF.QUICK_BUDGET}); whole encoders get {INF.ENCODER_BUDGET_SCALE}x")
    t = p.add_argument_group("training step (--training)")
    t.add_argument("--training", action="store_true",
                   help="time training steps instead: fp32 vs DenseShift (fused and reference "
                        "parametrization), step time, peak memory, bytes per weight")
    t.add_argument("--steps", type=int, default=5,
                   help="timed steps per configuration; the median is reported "
                        "(default %(default)s)")
    t.add_argument("--warmup", type=int, default=2,
                   help="untimed steps first (default %(default)s)")
    t.add_argument("--geometry", action="append", default=None,
                   choices=sorted(TR.GEOMETRIES),
                   help="geometry to time (repeatable; default: demo and conformer-small)")
    t.add_argument("--adamw", default="both", choices=("plain", "fused", "both"),
                   help="AdamW as torch builds it (plain: a loop over tensors on CPU), with "
                        "fused=True, or both (default %(default)s)")
    t.add_argument("--batch", type=int, default=8, help="utterances per batch (default 8)")
    t.add_argument("--seconds", type=float, default=3.0,
                   help="seconds of features per utterance (default 3)")
    k = p.add_argument_group("keyword spotter (--kws MODEL)")
    k.add_argument("--kws", metavar="MODEL",
                   help="time a packed keyword spotter (model.dsp of recipes/speech_commands) "
                        "against its fp32 twin in torch, torch int8 and onnxruntime fp32 / "
                        "int8, per one-second window and per 100 ms hop; one thread count "
                        "(default 1); JSON only with --json")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    if args.training and args.kws:
        raise UserError("--training and --kws are separate benchmarks: give one")
    if args.training:
        return TR.run(args)
    if args.kws:
        from ..benchmarks import kws
        return kws.run(args)
    return INF.run(args)

"""`denseshift-speech bench`: packed DenseShift against what a user would run instead.

One run measures, side by side in the same process, at each thread count of ``--threads``
(default 1 and 2: torch, onnxruntime and DenseShift all on the same count; microseconds
per call, the best of 5 timed groups after warm-up; medians go to the JSON too):

whole encoder
    SpeechBrain conformer encoders (``TransformerASR.encode``, batch 1, T = 16 and 100
    frames) of the geometries "demo" and "conformer-small"
    (:data:`denseshift_speech.benchmarks.baselines.GEOMETRIES`):

    torch-fp32   the fp32 encoder, eager
    torch-int8   torch dynamic int8 (``quantize_dynamic``, every ``nn.Linear``)
    ort-fp32     the same encoder exported to ONNX, onnxruntime
    ort-int8     its onnxruntime ``quantize_dynamic`` twin (int8 MatMuls)
    ds-int8      the SAME fp32 encoder, ``quantize_(DenseShiftConfig(bits, from_float,
    ds-exact       keep_first=False, keep_last=False))`` + ``pack_``, on each kernel path:
    ds-shift       int8 activations (the default), exact float, and the paper's
                   integer-add (shift) path
    ds-onnx      onnxruntime running the DenseShift ONNX export of that packed encoder
                 (``packed.onnx_export``: the exact int8 weights in MatMulInteger with
                 per-channel scales, uint8 activations per tensor; depthwise convs fp32)

    plus the packed file's size (``save_packed``) against the fp32 weights (4 bytes a
    parameter).

several streams
    :data:`STREAMS` independent streams of a 640 ms chunk (T = 16 encoder frames) through
    one call (batch 4: the linears see every stream's rows at once, so each weight tile
    is decoded once for all of them) against the same chunks one call after another, for
    ``ds-int8`` and ``ort-int8``: ms per round and the throughput gain; the packed model's
    batched output is checked equal (bit for bit) to the stream-by-stream output.

single layers
    ``y = x @ W.T + b`` for the conformer-small shapes (in->out) 144->432, 144->144,
    144->1024, 1024->144, 144->288 at M = 1, 16, 100 rows, and 512->2048, 1024->4096 at
    M = 1, 16: torch-fp32 (``F.linear``), torch-int8, ort-fp32, ort-int8 (one-node ONNX
    models), and the DenseShift kernels on the tiled layout (``kernels.linear_tiled``,
    paths ``int8`` and ``exact``) and the file-layout op on the shift path
    (``denseshift::linear(..., method="add")``).

Ratios are the alternative's time over DenseShift's (``> 1``: DenseShift is faster); the
scaling tables give each alternative's time on one thread over its time on N threads
(``> 1``: the threads help). The run ends with the deploy-speed targets, each PASS / MISS
with the measured ratio (:mod:`denseshift_speech.benchmarks.targets`), and writes
everything to ``--json``.

training (``--training``)
    one training step (forward, CTC loss, backward, AdamW step; batch 8 x 3 s of features,
    2 threads) of the demo and conformer-small conformers, fp32 against ``--bits`` DenseShift
    quantized as hparams/conformer_ds.yaml does it, with the fused parametrization and the
    reference one, each configuration in its own process (peak memory = its
    ``ru_maxrss``); with AdamW as torch builds it and with ``fused=True``. Median step time,
    phases, peak memory, bytes per quantized weight, and the ratios DenseShift / fp32
    (:mod:`denseshift_speech.benchmarks.training`); JSON to ``--json`` (default
    results/bench_training.json).
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time

from .errors import UserError

#: whole-encoder geometries and frame counts
GEOMETRIES = ("demo", "conformer-small")
FRAMES = (16, 100)
#: single layers: (in_features, out_features, M values)
LAYERS = [(144, 432, (1, 16, 100)), (144, 144, (1, 16, 100)), (144, 1024, (1, 16, 100)),
          (1024, 144, (1, 16, 100)), (144, 288, (1, 16, 100)),
          (512, 2048, (1, 16)), (1024, 4096, (1, 16))]
QUICK_LAYERS = [(144, 432, (1, 16)), (512, 2048, (1,))]
QUICK_LAYERS_PER_ENCODER = 2  # --quick: the demo geometry with this many conformer layers
#: thread counts timed by default (torch, onnxruntime and DenseShift on each)
DEFAULT_THREADS = (1, 2)
#: several streams at once: this many 640 ms chunks (STREAM_FRAMES encoder frames each)
STREAMS, STREAM_FRAMES = 4, 16
STREAM_NAMES = ("ds-int8", "ort-int8")
#: seconds per measurement (layers; whole encoders get ENCODER_BUDGET_SCALE times more)
BUDGET, QUICK_BUDGET = 0.7, 0.03  # full run: about 3-4 min on 2 cores
ENCODER_BUDGET_SCALE = 3

BASELINES = ("torch-fp32", "torch-int8", "ort-fp32", "ort-int8")
ONNX_BASELINES = ("ort-fp32", "ort-int8")
PATHS = ("int8", "exact", "shift")
DS_ONNX = "ds-onnx"  # onnxruntime on the DenseShift int8 ONNX export (whole encoder only)
REF = "ds-int8"  # the packed default path, the denominator of every printed ratio
DEFAULT_JSON, DEFAULT_TRAINING_JSON = "results/bench.json", "results/bench_training.json"
#: geometries of the training benchmark (benchmarks/training.py; kept here so that
#: ``--help`` does not import torch)
TRAINING_GEOMETRIES = ("demo", "conformer-small", "tiny")


def add_parser(subparsers):
    p = subparsers.add_parser(
        "bench", help="packed DenseShift vs torch / onnxruntime fp32 and int8 (table + JSON)",
        description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="CI-sized run (well under a minute): demo geometry with 2 layers, "
                        "2 layer shapes, short timing budget (--training: the tiny geometry, "
                        "batch 2 x 1 s, 1 warm-up + 2 steps, plain AdamW)")
    p.add_argument("--json", default=None,
                   help=f"where to write the JSON (default {DEFAULT_JSON}, with --training "
                        f"{DEFAULT_TRAINING_JSON}; '' to skip)")
    p.add_argument("--threads", default=None, metavar="N[,N...]",
                   help="thread counts, comma-separated: every table is timed at each, with "
                        "torch, onnxruntime and DenseShift on the same count (default "
                        f"{','.join(map(str, DEFAULT_THREADS))}; --training: one count, "
                        "default 2)")
    p.add_argument("--bits", type=int, default=3, choices=(2, 3, 4),
                   help="DenseShift bits (default %(default)s)")
    p.add_argument("--isa", default="auto",
                   help="DenseShift kernel ISA (auto, avx512, avx2, scalar)")
    p.add_argument("--no-onnx", action="store_true", help="skip the onnxruntime baselines")
    p.add_argument("--no-encoder", action="store_true", help="skip the whole-encoder lines")
    p.add_argument("--no-layers", action="store_true", help="skip the single-layer lines")
    p.add_argument("--no-streams", action="store_true",
                   help=f"skip the several-streams line ({STREAMS} x 640 ms in one call)")
    p.add_argument("--min-time", type=float, default=None,
                   help=f"seconds per layer measurement (default {BUDGET}; quick "
                        f"{QUICK_BUDGET}); whole encoders get {ENCODER_BUDGET_SCALE}x")
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
                   choices=sorted(TRAINING_GEOMETRIES),
                   help="geometry to time (repeatable; default: demo and conformer-small)")
    t.add_argument("--adamw", default="both", choices=("plain", "fused", "both"),
                   help="AdamW as torch builds it (plain: a loop over tensors on CPU), with "
                        "fused=True, or both (default %(default)s)")
    t.add_argument("--batch", type=int, default=8, help="utterances per batch (default 8)")
    t.add_argument("--seconds", type=float, default=3.0,
                   help="seconds of features per utterance (default 3)")
    p.set_defaults(func=run)
    return p


def time_us(fn, budget: float, stats: dict | None = None) -> float:
    """Microseconds per call of ``fn``: the best of 5 timed groups after calibration.

    The best group is reported because the 2-core machines this runs on are shared:
    other processes steal whole scheduler slices, which inflates medians at random.
    The median of the 5 groups goes to ``stats["median"]`` when ``stats`` is given.
    """
    fn()
    fn()
    n, t0 = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < budget * 0.2:
        fn()
        n += 1
    per = (time.perf_counter() - t0) / n
    reps = max(1, int(budget * 0.8 / 5 / max(per, 1e-9)))
    samples = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        samples.append((time.perf_counter() - t) / reps)
    if stats is not None:
        stats["median"] = statistics.median(samples) * 1e6
    return min(samples) * 1e6


def _time_all(fns: dict, budget: float) -> tuple:
    """``{name: fn}`` -> ``({name: best us}, {name: median us})``."""
    best, median = {}, {}
    for name, fn in fns.items():
        st = {}
        best[name] = time_us(fn, budget, st)
        median[name] = st["median"]
    return best, median


def _ratios(us: dict) -> dict:
    """``{"<name>/ds-int8": us[name] / us["ds-int8"]}`` for every other timed name."""
    ref = us.get(REF)
    return {f"{k}/{REF}": v / ref for k, v in us.items() if k != REF and ref}


def _rel_err(y, ref) -> float:
    import numpy as np

    y = np.asarray(y.detach() if hasattr(y, "detach") else y, dtype=np.float64)
    ref = np.asarray(ref.detach() if hasattr(ref, "detach") else ref, dtype=np.float64)
    return float(np.linalg.norm(y - ref) / max(np.linalg.norm(ref), 1e-30))


# ------------------------------------------------------------------ table printing ----------

def _table(title: str, keys: list, rows: list, cols: list, fmt: str, width: int = 10) -> list:
    """Lines of a fixed-width table: ``keys`` (label, width) then numeric ``cols``."""
    head = "  ".join(f"{k:<{w}}" for k, w in keys) + "".join(f"{c:>{width + 1}}" for c in cols)
    lines = [title, head]
    for label, values in rows:
        line = "  ".join(f"{str(v):<{w}}" for v, (_, w) in zip(label, keys))
        for c in cols:
            v = values.get(c)
            line += f"{'-' if v is None else format(v, fmt):>{width + 1}}"
        lines.append(line)
    return lines


def _ratio_cols(rows: list, preferred: list) -> list:
    present = set().union(*(r["ratios"] for r in rows)) if rows else set()
    return [c for c in preferred if c in present]


# ------------------------------------------------------------------ whole encoder -----------

def _packed_model(fp32, bits: int, isa: str):
    """The packed DenseShift twin of ``fp32`` (default path; switch with ``set_path_``)."""
    import copy

    from . import DenseShiftConfig, quantize_
    from .packed import pack_, set_path_

    m = copy.deepcopy(fp32)  # the fp32 encoder itself stays untouched
    quantize_(m, DenseShiftConfig(bits=bits, init="from_float", keep_first=False,
                                  keep_last=False))
    pack_(m, path=PATHS[0])
    if isa != "auto":
        set_path_(m, PATHS[0], isa)
    return m.eval()


def _file_sizes(fp32, packed, workdir: str) -> dict:
    from .integrations.speechbrain.export import REBUILT_BUFFERS
    from .packed import save_packed

    path = os.path.join(workdir, "packed.dsp")
    report = save_packed(packed, path, rebuilt_buffers=REBUILT_BUFFERS)
    n_params = sum(p.numel() for p in fp32.parameters())
    size = os.path.getsize(path)
    return {"params": n_params, "fp32_param_bytes": 4 * n_params, "packed_file_bytes": size,
            "fp32_over_packed": 4 * n_params / size, "save_packed_report": report}


def parse_threads(text, default=DEFAULT_THREADS) -> list:
    """``"1,2"`` -> ``[1, 2]`` (``None``: ``default``); counts >= 1, each once, in order."""
    if text is None:
        return list(default)
    if isinstance(text, int):
        text = str(text)
    out = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            n = int(part)
        except ValueError:
            n = 0
        if n < 1:
            raise UserError(f"--threads: expected thread counts >= 1 separated by commas "
                            f"(e.g. 1,2), got {text!r}")
        if n not in out:
            out.append(n)
    return out


def _set_threads(n: int):
    import torch
    torch.set_num_threads(n)


def _scaling(rows: list, key) -> None:
    """``row["scaling"][name]``: the name's time on 1 thread over its time on the row's
    count (rows matched by ``key(row)``; only where 1 thread was measured)."""
    one = {key(r): r for r in rows if r["threads"] == 1}
    for r in rows:
        base = one.get(key(r))
        if base is None:
            continue
        r["scaling"] = {k: base["us"][k] / v for k, v in r["us"].items()
                        if k in base["us"] and v > 0}


def bench_encoders(geometries, frames, bits, threads, budget, isa="auto", onnx=True,
                   num_layers=None, streams=True, log=print) -> tuple:
    """Whole-encoder rows, several-streams rows and ``{geometry: sizes}`` (see the module
    docstring), at each thread count of ``threads`` (an int or a list)."""
    import torch

    from .benchmarks import baselines as B
    from .packed import set_path_

    counts = [threads] if isinstance(threads, int) else list(threads)
    rows, stream_rows, sizes = [], [], {}
    for geometry in geometries:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="denseshift-bench-") as work:
            sessions = {}  # thread count -> {name: onnxruntime callable}
            if onnx:
                bl = B.encoder_baselines(geometry, work, threads=counts[0], num_layers=num_layers)
            else:
                wrapper = B.EncoderWrapper(B.build_encoder(geometry, num_layers=num_layers))
                q = B.torch_dynamic_int8(wrapper)

                def _torch(mod):
                    def call(x):
                        with torch.inference_mode():
                            return mod(x)
                    return call
                bl = {"torch-fp32": _torch(wrapper), "torch-int8": _torch(q), "module": wrapper}
            fp32 = bl["module"].model
            packed = _packed_model(fp32, bits, isa)
            sizes[geometry] = _file_sizes(fp32, packed, work)
            if onnx:
                from .packed.onnx_export import export_onnx
                ds_path = os.path.join(work, "ds.onnx")
                export_onnx(B.EncoderWrapper(packed), B.example_input(geometry, 16), ds_path)
                sizes[geometry]["ds_onnx_file_bytes"] = os.path.getsize(ds_path)
                for n in counts:  # sessions made while the files exist
                    sessions[n] = {"ort-fp32": B.OrtModel(bl["onnx_fp32"], n),
                                   "ort-int8": B.OrtModel(bl["onnx_int8"], n),
                                   DS_ONNX: B.OrtModel(ds_path, n)}
        n_layers = len(fp32.encoder.layers)
        log(f"# {geometry}: {n_layers} layers, {sizes[geometry]['params'] / 1e6:.2f} M "
            f"parameters; baselines and {bits}-bit packed model built in "
            f"{time.perf_counter() - t0:.1f} s")

        for n in counts:
            _set_threads(n)
            base = {k: bl[k] for k in ("torch-fp32", "torch-int8")}
            base.update(sessions.get(n, {}))
            for t in frames:
                x = B.example_input(geometry, t)
                fns = {k: base[k] for k in (*BASELINES, DS_ONNX) if k in base}
                with torch.no_grad():
                    ref = fns["torch-fp32"](x)
                    errs = {}
                    us, med = {}, {}
                    for name, fn in fns.items():
                        errs[name] = _rel_err(fn(x), ref)
                    for path in PATHS:
                        set_path_(packed, path, None if isa == "auto" else isa)
                        fn = (lambda: packed.encode(x, None))
                        errs[f"ds-{path}"] = _rel_err(fn(), ref)
                        b, m = _time_all({f"ds-{path}": fn}, budget)
                        us.update(b)
                        med.update(m)
                    b, m = _time_all({k: (lambda f=f: f(x)) for k, f in fns.items()}, budget)
                    us.update(b)
                    med.update(m)
                    set_path_(packed, PATHS[0], None if isa == "auto" else isa)
                order = list(BASELINES) + [f"ds-{p}" for p in PATHS] + [DS_ONNX]
                us = {k: us[k] for k in order if k in us}
                row = {"geometry": geometry, "layers": n_layers, "frames": t, "batch": 1,
                       "threads": n, "bits": bits, "us": us,
                       "median_us": {k: med[k] for k in us}, "ratios": _ratios(us),
                       "rel_err_vs_torch_fp32": errs}
                rows.append(row)
                log(f"{geometry:<16} T={t:<4d} {n} thr " + "  ".join(
                    f"{k} {v / 1e3:7.2f}" for k, v in us.items()) + "   (ms)")
            if streams:
                stream_rows.append(_bench_streams(geometry, n_layers, packed, base, n, bits,
                                                  budget, log))
    _scaling(rows, lambda r: (r["geometry"], r["frames"]))
    return rows, stream_rows, sizes


def _bench_streams(geometry, n_layers, packed, base, threads, bits, budget, log) -> dict:
    """:data:`STREAMS` chunks of :data:`STREAM_FRAMES` frames: one call vs one by one."""
    import torch

    from .benchmarks import baselines as B

    x = B.example_input(geometry, STREAM_FRAMES, batch=STREAMS, seed=1)
    one = [x[i:i + 1].contiguous() for i in range(STREAMS)]
    calls = {"ds-int8": lambda v: packed.encode(v, None)}
    if "ort-int8" in base:
        calls["ort-int8"] = base["ort-int8"]
    us, med = {}, {}
    with torch.no_grad():
        together = packed.encode(x, None)
        alone = torch.cat([packed.encode(v, None) for v in one])
        for name, f in calls.items():
            fns = {f"{name} one call": (lambda f=f: f(x)),
                   f"{name} one by one": (lambda f=f: [f(v) for v in one])}
            b, m = _time_all(fns, budget)
            us.update(b)
            med.update(m)
    gain = {name: us[f"{name} one by one"] / us[f"{name} one call"] for name in calls}
    row = {"geometry": geometry, "layers": n_layers, "frames": STREAM_FRAMES,
           "streams": STREAMS, "threads": threads, "bits": bits, "us": us, "median_us": med,
           "gain": gain, "ds_one_call_equals_one_by_one": bool(torch.equal(together, alone)),
           "ds_max_abs_diff": float((together - alone).abs().max())}
    log(f"{geometry:<16} {STREAMS} streams x T={STREAM_FRAMES} {threads} thr " + "  ".join(
        f"{name} {us[f'{name} one call'] / 1e3:.2f} vs {us[f'{name} one by one'] / 1e3:.2f} ms "
        f"({gain[name]:.2f}x)" for name in calls))
    return row


def _scaling_table(title: str, keys: list, rows: list, label, names: list) -> list:
    """Speed-up over one thread of every timed name, for the rows on more threads."""
    multi = [r for r in rows if r["threads"] > 1 and r.get("scaling")]
    if not multi:
        return []
    cols = [n for n in names if any(n in r["scaling"] for r in multi)]
    return [""] + _table(title, keys, [(label(r), r["scaling"]) for r in multi], cols, ".2f")


def encoder_tables(rows, sizes, stream_rows=()) -> list:
    names = list(BASELINES) + [f"ds-{p}" for p in PATHS] + [DS_ONNX]
    keys = [("geometry", 16), ("layers", 6), ("T", 4), ("thr", 3)]
    label = lambda r: (r["geometry"], r["layers"], r["frames"], r["threads"])  # noqa: E731
    lines = _table("## whole encoder, ms per call (batch 1)", keys,
                   [(label(r), {k: v / 1e3 for k, v in r["us"].items()}) for r in rows],
                   [n for n in names if any(n in r["us"] for r in rows)], ".2f")
    cols = _ratio_cols(rows, [f"{n}/{REF}" for n in names if n != REF])
    lines += [""] + _table(f"## whole encoder, speed-up of {REF} (alternative's time / {REF}'s; "
                           ">1: packed is faster; both on thr threads)", keys,
                           [(label(r), r["ratios"]) for r in rows], cols, ".2f",
                           width=max(len(c) for c in cols))
    lines += _scaling_table("## whole encoder, scaling (time on 1 thread / time on thr threads; "
                            ">1: the threads help)", keys, rows, label, names)
    lines += stream_table(stream_rows)
    lines.append("")
    for g, s in sizes.items():
        lines.append(f"## size {g}: packed file {s['packed_file_bytes']:,} B vs fp32 weights "
                     f"{s['fp32_param_bytes']:,} B ({s['params']:,} parameters x 4): "
                     f"{s['fp32_over_packed']:.2f}x smaller")
    return lines


def stream_table(stream_rows) -> list:
    """The several-streams lines: ms per round of N chunks, one call vs one by one."""
    if not stream_rows:
        return []
    r0 = stream_rows[0]
    lines = ["", f"## several streams: {r0['streams']} chunks of 640 ms (T={r0['frames']}) in one "
                 "call (batch) vs one call after another; ms per round, gain = throughput of "
                 "one call / one by one"]
    names = [n for n in STREAM_NAMES if any(n in r["gain"] for r in stream_rows)]
    head = f"{'geometry':<16}  {'thr':<3}" + "".join(
        f"  {n + ' one call':>17} {'one by one':>10} {'gain':>5}" for n in names)
    lines.append(head)
    for r in stream_rows:
        line = f"{r['geometry']:<16}  {r['threads']:<3}"
        for n in names:
            if n in r["gain"]:
                line += (f"  {r['us'][n + ' one call'] / 1e3:>17.2f} "
                         f"{r['us'][n + ' one by one'] / 1e3:>10.2f} {r['gain'][n]:>5.2f}")
            else:
                line += f"  {'-':>17} {'-':>10} {'-':>5}"
        if not r["ds_one_call_equals_one_by_one"]:
            line += f"   (ds outputs differ: max {r['ds_max_abs_diff']:.2g})"
        lines.append(line)
    return lines


# ------------------------------------------------------------------ single layers -----------

def bench_layers(layers, bits, threads, budget, isa="auto", onnx=True, log=print) -> list:
    """Single-layer rows (see the module docstring), at each thread count of ``threads``
    (an int or a list)."""
    import torch
    import torch.nn.functional as F

    from . import kernels
    from .benchmarks import baselines as B
    from .core import quant
    from .kernels import layout

    counts = [threads] if isinstance(threads, int) else list(threads)
    rows = []
    gen = torch.Generator().manual_seed(0)
    shift = torch.ops.denseshift.linear
    for k, n, ms in layers:
        w = torch.randn(n, k, generator=gen) / k ** 0.5
        bias = torch.randn(n, generator=gen) * 0.1
        alpha = quant.low_variance_alpha(w, bits)  # (timing does not depend on the fit)
        codes = quant.nearest_codes(w, alpha[:, None], bits)
        packed, alpha = layout.pack_weight(codes, alpha, bits)
        tiles, sums = kernels.repack(packed, bits=bits, in_features=k)
        w_q = quant.decode(codes, bits) * alpha[:, None]
        xs = {m: torch.randn(m, k, generator=gen) for m in ms}
        for nt in counts:
            _set_threads(nt)
            if onnx:
                bl = B.layer_baselines(w, bias, nt)
            else:
                bl = {"torch-fp32": B.torch_linear_fp32(w, bias),
                      "torch-int8": B.torch_linear_int8(w, bias)}
            for m in ms:
                x = xs[m]
                fns = {name: (lambda f=f: f(x)) for name, f in bl.items()}
                for path in ("int8", "exact"):
                    fns[f"ds-{path}"] = (lambda p=path: kernels.linear_tiled(
                        x, tiles, sums, alpha, bias, bits=bits, in_features=k, path=p, isa=isa))
                fns["ds-shift"] = lambda: shift(x, packed, alpha, bias, bits, k, isa, "add")
                with torch.no_grad():
                    ref = F.linear(x, w_q, bias)
                    errs = {name: _rel_err(fn(), ref) for name, fn in fns.items()
                            if name.startswith("ds-")}
                    us, med = _time_all(fns, budget)
                row = {"in": k, "out": n, "M": m, "bits": bits, "threads": nt, "us": us,
                       "median_us": med, "ratios": _ratios(us),
                       "weight_bytes_fp32": 4 * n * k,
                       "weight_bytes_packed": packed.numel() + 4 * alpha.numel(),
                       "ds_rel_err_vs_dequantized": errs}
                for p in ("int8", "exact"):
                    for base in ("torch-fp32", "torch-int8"):
                        if base in us:
                            row["ratios"][f"{base}/ds-{p}"] = us[base] / us[f"ds-{p}"]
                rows.append(row)
                log(f"{k:>5d}->{n:<5d} M={m:<4d} {nt} thr " + "  ".join(
                    f"{name} {v:8.1f}" for name, v in us.items()) + "   (us)")
    _scaling(rows, lambda r: (r["in"], r["out"], r["M"]))
    return rows


LAYER_RATIOS = ["torch-fp32/ds-int8", "torch-int8/ds-int8", "ort-int8/ds-int8",
                "torch-fp32/ds-exact", "torch-int8/ds-exact", "ort-fp32/ds-exact",
                "ds-shift/ds-int8"]


def layer_tables(rows) -> list:
    names = list(BASELINES) + [f"ds-{p}" for p in PATHS]
    keys = [("in->out", 10), ("M", 4), ("thr", 3)]
    label = lambda r: (f"{r['in']}->{r['out']}", r["M"], r["threads"])  # noqa: E731
    lines = _table("## single layers, us per call", keys, [(label(r), r["us"]) for r in rows],
                   [n for n in names if any(n in r["us"] for r in rows)], ".1f")
    cols = _ratio_cols(rows, LAYER_RATIOS)
    lines += [""] + _table("## single layers, speed-up (alternative's time / DenseShift's; "
                           ">1: DenseShift is faster; both on thr threads)", keys,
                           [(label(r), r["ratios"]) for r in rows], cols, ".2f",
                           width=max(len(c) for c in cols))
    lines += _scaling_table("## single layers, scaling (time on 1 thread / time on thr "
                            "threads; >1: the threads help)", keys, rows, label, names)
    return lines


# ------------------------------------------------------------------ the verb ----------------

def machine_info():
    import torch

    from . import kernels

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "loadavg": load,
            "native_kernel": kernels.native_available(), "isas": kernels.supported_isas(),
            "quantized_engine": torch.backends.quantized.engine}


def _write_json(path: str, out: dict, elapsed: float):
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(out, f, indent=1)
        print(f"# wrote {path} ({elapsed:.0f} s)")


def _command() -> str:
    argv = list(sys.argv)
    if argv and os.path.basename(argv[0]) in ("__main__.py", "denseshift-speech"):
        argv[0] = "denseshift-speech"  # (python -m denseshift_speech, or the entry point)
    return " ".join(shlex.quote(a) for a in argv)


def run_training(args) -> int:
    """``bench --training``: see :mod:`denseshift_speech.benchmarks.training`."""
    from .benchmarks import training as TR

    t_start = time.perf_counter()
    counts = parse_threads(args.threads, default=(2,))
    if len(counts) != 1:
        raise UserError(f"--training times one thread count at a time, got --threads "
                        f"{args.threads}")
    threads = counts[0]
    if args.quick:
        geometries, adamw, batch, seconds, steps, warmup = ["tiny"], ["plain"], 2, 1.0, 2, 1
    else:
        geometries = args.geometry or list(TR.DEFAULT_GEOMETRIES)
        adamw = list(TR.ADAMW) if args.adamw == "both" else [args.adamw]
        batch, seconds, steps, warmup = args.batch, args.seconds, args.steps, args.warmup
    if steps < 1 or warmup < 0 or batch < 1 or not seconds > 0:
        raise UserError("--steps and --batch must be >= 1, --warmup >= 0, --seconds > 0")
    info = machine_info()
    print(f"# {info['cpu']} ({info['cores']} cores, load average {info['loadavg']}), "
          f"torch {info['torch']}, {threads} thread(s); training step of fp32 and "
          f"{args.bits}-bit DenseShift, one process per configuration")
    rows = TR.bench(geometries, adamw, bits=args.bits, threads=threads, steps=steps,
                    warmup=warmup, batch=batch, seconds=seconds)
    summary = TR.summarize(rows)
    print()
    print("\n".join(TR.tables(rows, summary)))
    elapsed = time.perf_counter() - t_start
    info["loadavg_end"] = machine_info()["loadavg"]
    out = {"command": _command(), "mode": "training",
           "options": {k: v for k, v in vars(args).items() if k != "func"},
           "machine": info, "quick": args.quick, "bits": args.bits, "threads": threads,
           "steps": steps, "warmup": warmup, "batch": batch, "seconds": seconds,
           "geometries": geometries, "adamw": adamw, "summary": summary, "rows": rows,
           "elapsed_s": elapsed}
    _write_json(DEFAULT_TRAINING_JSON if args.json is None else args.json, out, elapsed)
    return 0


def run(args) -> int:
    if args.training:
        return run_training(args)
    import torch

    from . import kernels
    from .benchmarks import baselines as B
    from .benchmarks import targets as T

    t_start = time.perf_counter()
    counts = parse_threads(args.threads)
    quick = args.quick
    budget = args.min_time if args.min_time is not None else (QUICK_BUDGET if quick else BUDGET)
    geometries = GEOMETRIES[:1] if quick else GEOMETRIES
    num_layers = QUICK_LAYERS_PER_ENCODER if quick else None
    layers = QUICK_LAYERS if quick else LAYERS
    info = machine_info()
    onnx_status = B.available()
    onnx = onnx_status.ok and not args.no_onnx
    if not kernels.native_available():
        print("warning: native kernel not built; timing the pure-PyTorch reference")
    isa = kernels.selected_isa(args.isa)
    thr = ", ".join(map(str, counts))
    print(f"# {info['cpu']} ({info['cores']} cores, load average {info['loadavg']}), "
          f"torch {info['torch']}, DenseShift {args.bits}-bit kernel isa {isa}, "
          f"torch int8 engine {info['quantized_engine']}, {thr} thread(s)")
    if args.no_onnx:
        print("# onnxruntime baselines skipped (--no-onnx)")
    elif not onnx_status.ok:
        print(f"# onnxruntime baselines skipped: onnxruntime is not importable "
              f"({onnx_status.message}); install it (pip install onnxruntime onnx) to compare")
    else:
        print(f"# {onnx_status.message}")
    print(f"# times: best of 5 groups; ratios: alternative's time / DenseShift's "
          f"(>1: DenseShift is faster); every alternative on the same thread count (thr)"
          f"{'; --quick run' if quick else ''}")
    saved_threads = torch.get_num_threads()
    try:
        enc_rows, stream_rows, sizes = ([], [], {}) if args.no_encoder else bench_encoders(
            geometries, FRAMES, args.bits, counts, budget * ENCODER_BUDGET_SCALE,
            args.isa, onnx, num_layers, streams=not args.no_streams)
        layer_rows = [] if args.no_layers else bench_layers(
            layers, args.bits, counts, budget, args.isa, onnx)
    finally:
        torch.set_num_threads(saved_threads)
    records = T.evaluate(enc_rows, layer_rows, sizes, stream_rows)
    print()
    if enc_rows:
        print("\n".join(encoder_tables(enc_rows, sizes, stream_rows)))
        print()
    if layer_rows:
        print("\n".join(layer_tables(layer_rows)))
        print()
    print(f"## targets ({args.bits}-bit, {thr} thread(s), ds-int8 is the default path; "
          "each target names its thread count)")
    print("\n".join(T.format_summary(records)))
    elapsed = time.perf_counter() - t_start
    info["loadavg_end"] = machine_info()["loadavg"]
    out = {"command": _command(),
           "options": {k: v for k, v in vars(args).items() if k != "func"},
           "machine": info, "isa": isa, "quick": quick, "bits": args.bits,
           "threads": counts, "budget_s": budget,
           "onnx": {"used": onnx, "available": onnx_status.ok,
                    "message": onnx_status.message},
           "encoder": enc_rows, "streams": stream_rows, "sizes": sizes, "layers": layer_rows,
           "targets": records,
           "elapsed_s": elapsed}
    _write_json(DEFAULT_JSON if args.json is None else args.json, out, elapsed)
    return 0

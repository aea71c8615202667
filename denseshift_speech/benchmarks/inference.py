"""`denseshift-speech bench`: packed DenseShift inference against what a user would run
instead.

One run measures, side by side in the same process, at each thread count of ``--threads``
(default 1 and 2: torch, onnxruntime and DenseShift all on the same count; microseconds
per call, the best of 5 timed groups after warm-up, the groups of every alternative and
thread count of one shape taken in turns (harness.time_all); medians go to the JSON too):

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
"""
from __future__ import annotations

import os
import tempfile
import time

from .harness import (command_line, machine_info, parse_threads, ratio_cols, rel_err, scaling,
                      scaling_table, set_threads, table, time_all, write_json)

#: whole-encoder geometries and frame counts
GEOMETRIES = ("demo", "conformer-small")
FRAMES = (16, 100)
#: single layers: (in_features, out_features, M values)
LAYERS = [(144, 432, (1, 16, 100)), (144, 144, (1, 16, 100)), (144, 1024, (1, 16, 100)),
          (1024, 144, (1, 16, 100)), (144, 288, (1, 16, 100)),
          (512, 2048, (1, 16)), (1024, 4096, (1, 16))]
QUICK_LAYERS = [(144, 432, (1, 16)), (512, 2048, (1,))]
QUICK_LAYERS_PER_ENCODER = 2  # --quick: the demo geometry with this many conformer layers
#: several streams at once: this many 640 ms chunks (STREAM_FRAMES encoder frames each)
STREAMS, STREAM_FRAMES = 4, 16
STREAM_NAMES = ("ds-int8", "ort-int8")
#: seconds per measurement (layers; whole encoders get ENCODER_BUDGET_SCALE times more)
BUDGET, QUICK_BUDGET = 0.7, 0.03  # full run: about 3-4 min on 2 cores
ENCODER_BUDGET_SCALE = 3
#: seconds per process of the machine-capacity line (benchmarks/capacity.py)
CAPACITY_SECONDS, QUICK_CAPACITY_SECONDS = 3.0, 0.3

BASELINES = ("torch-fp32", "torch-int8", "ort-fp32", "ort-int8")
ONNX_BASELINES = ("ort-fp32", "ort-int8")
PATHS = ("int8", "exact", "shift")
DS_ONNX = "ds-onnx"  # onnxruntime on the DenseShift int8 ONNX export (whole encoder only)
REF = "ds-int8"  # the packed default path, the denominator of every printed ratio
DEFAULT_JSON = "results/bench.json"


def _ratios(us: dict) -> dict:
    """``{"<name>/ds-int8": us[name] / us["ds-int8"]}`` for every other timed name."""
    ref = us.get(REF)
    return {f"{k}/{REF}": v / ref for k, v in us.items() if k != REF and ref}


# ------------------------------------------------------------------ whole encoder -----------

def _packed_model(fp32, bits: int, isa: str):
    """The packed DenseShift twin of ``fp32`` (default path; switch with ``set_path_``)."""
    import copy

    from .. import DenseShiftConfig, quantize_
    from ..packed import pack_, set_path_

    m = copy.deepcopy(fp32)  # the fp32 encoder itself stays untouched
    quantize_(m, DenseShiftConfig(bits=bits, init="from_float", keep_first=False,
                                  keep_last=False))
    pack_(m, path=PATHS[0])
    if isa != "auto":
        set_path_(m, PATHS[0], isa)
    return m.eval()


def _file_sizes(fp32, packed, workdir: str) -> dict:
    from ..integrations.speechbrain.export import REBUILT_BUFFERS
    from ..packed import save_packed

    path = os.path.join(workdir, "packed.dsp")
    report = save_packed(packed, path, rebuilt_buffers=REBUILT_BUFFERS)
    n_params = sum(p.numel() for p in fp32.parameters())
    size = os.path.getsize(path)
    return {"params": n_params, "fp32_param_bytes": 4 * n_params, "packed_file_bytes": size,
            "fp32_over_packed": 4 * n_params / size, "save_packed_report": report}


def bench_encoders(geometries, frames, bits, threads, budget, isa="auto", onnx=True,
                   num_layers=None, streams=True, log=print) -> tuple:
    """Whole-encoder rows, several-streams rows and ``{geometry: sizes}`` (see the module
    docstring), at each thread count of ``threads`` (an int or a list)."""
    import torch

    from . import baselines as B

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
                from ..packed.onnx_export import export_onnx
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

        bases = {}  # thread count -> {name: callable of x}
        for n in counts:
            bases[n] = {k: bl[k] for k in ("torch-fp32", "torch-int8")}
            bases[n].update(sessions.get(n, {}))
        isa_arg = None if isa == "auto" else isa
        for t in frames:
            rows += _bench_encoder_frames(geometry, n_layers, packed, bases, t, bits, budget,
                                          isa_arg, log)
        if streams:
            stream_rows += _bench_streams(geometry, n_layers, packed, bases, bits, budget, log)
    scaling(rows, lambda r: (r["geometry"], r["frames"]))
    return rows, stream_rows, sizes


def _bench_encoder_frames(geometry, n_layers, packed, bases, frames, bits, budget, isa,
                          log) -> list:
    """One row per thread count of ``bases`` for ``frames`` encoder frames: every
    alternative and every packed path on every thread count timed in turns (time_all)."""
    import torch

    from . import baselines as B
    from ..packed import set_path_

    x = B.example_input(geometry, frames)
    fns, setup, errs = {}, {}, {}
    with torch.no_grad():
        ref = bases[min(bases)]["torch-fp32"](x)
        for n, base in bases.items():
            set_threads(n)
            errs[n] = {}
            for name in (*BASELINES, DS_ONNX):
                if name in base:
                    fns[(n, name)] = (lambda f=base[name]: f(x))
                    setup[(n, name)] = (lambda n=n: set_threads(n))
                    errs[n][name] = rel_err(fns[(n, name)](), ref)
            for path in PATHS:
                def use(n=n, path=path):
                    set_threads(n)
                    set_path_(packed, path, isa)
                use()
                fns[(n, f"ds-{path}")] = (lambda: packed.encode(x, None))
                setup[(n, f"ds-{path}")] = use
                errs[n][f"ds-{path}"] = rel_err(packed.encode(x, None), ref)
        best, med = time_all(fns, budget, setup)
    set_path_(packed, PATHS[0], isa)  # the default path for whatever runs next
    order = list(BASELINES) + [f"ds-{p}" for p in PATHS] + [DS_ONNX]
    rows = []
    for n in bases:
        us = {k: best[(n, k)] for k in order if (n, k) in best}
        rows.append({"geometry": geometry, "layers": n_layers, "frames": frames, "batch": 1,
                     "threads": n, "bits": bits, "us": us,
                     "median_us": {k: med[(n, k)] for k in us}, "ratios": _ratios(us),
                     "rel_err_vs_torch_fp32": errs[n]})
        log(f"{geometry:<16} T={frames:<4d} {n} thr " + "  ".join(
            f"{k} {v / 1e3:7.2f}" for k, v in us.items()) + "   (ms)")
    return rows


def _bench_streams(geometry, n_layers, packed, bases, bits, budget, log) -> list:
    """:data:`STREAMS` chunks of :data:`STREAM_FRAMES` frames: one call vs one by one, one
    row per thread count of ``bases`` (all timed in turns)."""
    import torch

    from . import baselines as B
    from ..packed import set_path_

    set_path_(packed, PATHS[0])  # "ds-int8" below
    x = B.example_input(geometry, STREAM_FRAMES, batch=STREAMS, seed=1)
    one = [x[i:i + 1].contiguous() for i in range(STREAMS)]
    fns, setup = {}, {}
    for n, base in bases.items():
        calls = {"ds-int8": lambda v: packed.encode(v, None)}
        if "ort-int8" in base:
            calls["ort-int8"] = base["ort-int8"]
        for name, f in calls.items():
            fns[(n, f"{name} one call")] = (lambda f=f: f(x))
            fns[(n, f"{name} one by one")] = (lambda f=f: [f(v) for v in one])
            setup[(n, f"{name} one call")] = setup[(n, f"{name} one by one")] = (lambda n=n: set_threads(n))
    with torch.no_grad():
        together = packed.encode(x, None)
        alone = torch.cat([packed.encode(v, None) for v in one])
        best, med = time_all(fns, budget, setup)
    rows = []
    for n in bases:
        us = {k: v for (m, k), v in best.items() if m == n}
        names = [k[:-len(" one call")] for k in us if k.endswith(" one call")]
        gain = {name: us[f"{name} one by one"] / us[f"{name} one call"] for name in names}
        rows.append({"geometry": geometry, "layers": n_layers, "frames": STREAM_FRAMES,
                     "streams": STREAMS, "threads": n, "bits": bits, "us": us,
                     "median_us": {k: v for (m, k), v in med.items() if m == n}, "gain": gain,
                     "ds_one_call_equals_one_by_one": bool(torch.equal(together, alone)),
                     "ds_max_abs_diff": float((together - alone).abs().max())})
        log(f"{geometry:<16} {STREAMS} streams x T={STREAM_FRAMES} {n} thr " + "  ".join(
            f"{name} {us[f'{name} one call'] / 1e3:.2f} vs {us[f'{name} one by one'] / 1e3:.2f} ms "
            f"({gain[name]:.2f}x)" for name in names))
    return rows


def encoder_tables(rows, sizes, stream_rows=()) -> list:
    names = list(BASELINES) + [f"ds-{p}" for p in PATHS] + [DS_ONNX]
    keys = [("geometry", 16), ("layers", 6), ("T", 4), ("thr", 3)]
    label = lambda r: (r["geometry"], r["layers"], r["frames"], r["threads"])  # noqa: E731
    lines = table("## whole encoder, ms per call (batch 1)", keys,
                   [(label(r), {k: v / 1e3 for k, v in r["us"].items()}) for r in rows],
                   [n for n in names if any(n in r["us"] for r in rows)], ".2f")
    cols = ratio_cols(rows, [f"{n}/{REF}" for n in names if n != REF])
    lines += [""] + table(f"## whole encoder, speed-up of {REF} (alternative's time / {REF}'s; "
                           ">1: packed is faster; both on thr threads)", keys,
                           [(label(r), r["ratios"]) for r in rows], cols, ".2f",
                           width=max(len(c) for c in cols))
    lines += scaling_table("## whole encoder, scaling (time on 1 thread / time on thr threads; "
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

    from .. import kernels
    from . import baselines as B
    from ..core import quant
    from ..kernels import layout

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
            set_threads(nt)
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
                    errs = {name: rel_err(fn(), ref) for name, fn in fns.items()
                            if name.startswith("ds-")}
                    us, med = time_all(fns, budget)
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
    scaling(rows, lambda r: (r["in"], r["out"], r["M"]))
    return rows


LAYER_RATIOS = ["torch-fp32/ds-int8", "torch-int8/ds-int8", "ort-int8/ds-int8",
                "torch-fp32/ds-exact", "torch-int8/ds-exact", "ort-fp32/ds-exact",
                "ds-shift/ds-int8"]


def layer_tables(rows) -> list:
    names = list(BASELINES) + [f"ds-{p}" for p in PATHS]
    keys = [("in->out", 10), ("M", 4), ("thr", 3)]
    label = lambda r: (f"{r['in']}->{r['out']}", r["M"], r["threads"])  # noqa: E731
    lines = table("## single layers, us per call", keys, [(label(r), r["us"]) for r in rows],
                   [n for n in names if any(n in r["us"] for r in rows)], ".1f")
    cols = ratio_cols(rows, LAYER_RATIOS)
    lines += [""] + table("## single layers, speed-up (alternative's time / DenseShift's; "
                           ">1: DenseShift is faster; both on thr threads)", keys,
                           [(label(r), r["ratios"]) for r in rows], cols, ".2f",
                           width=max(len(c) for c in cols))
    lines += scaling_table("## single layers, scaling (time on 1 thread / time on thr "
                            "threads; >1: the threads help)", keys, rows, label, names)
    return lines


# ------------------------------------------------------------------ the verb ----------------

def run(args) -> int:
    """``bench`` (inference): every table of the module docstring, the targets, the JSON."""
    import torch

    from .. import kernels
    from . import baselines as B
    from . import targets as T

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
    capacity = {}
    if max(counts) > 1:  # the ceiling of the scaling columns on this machine
        from .capacity import core_capacity
        capacity = core_capacity(counts, seconds=QUICK_CAPACITY_SECONDS if quick else
                                 CAPACITY_SECONDS)
    print()
    if enc_rows:
        print("\n".join(encoder_tables(enc_rows, sizes, stream_rows)))
        print()
    if layer_rows:
        print("\n".join(layer_tables(layer_rows)))
        print()
    if capacity:
        print("## this machine: N one-thread processes at once run "
              + ", ".join(f"{capacity[n]:.2f}x (N={n})" for n in counts if n > 1)
              + " the calls of one (the tiled int8 kernel; the most N threads can gain here)")
        print()
    print(f"## targets ({args.bits}-bit, {thr} thread(s), ds-int8 is the default path; "
          "each target names its thread count)")
    print("\n".join(T.format_summary(records)))
    elapsed = time.perf_counter() - t_start
    info["loadavg_end"] = machine_info()["loadavg"]
    out = {"command": command_line(),
           "options": {k: v for k, v in vars(args).items() if k != "func"},
           "machine": info, "isa": isa, "quick": quick, "bits": args.bits,
           "threads": counts, "budget_s": budget,
           "onnx": {"used": onnx, "available": onnx_status.ok,
                    "message": onnx_status.message},
           "capacity": capacity, "encoder": enc_rows, "streams": stream_rows, "sizes": sizes, "layers": layer_rows,
           "targets": records,
           "elapsed_s": elapsed}
    write_json(DEFAULT_JSON if args.json is None else args.json, out, elapsed)
    return 0

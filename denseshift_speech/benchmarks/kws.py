"""The packed keyword spotter against what a user would run instead, side by side.

    denseshift-speech bench --kws results/kws_ds3/model.dsp [--threads 1]
        [--json results/bench_kws.json]

One window of the spotter (one second of audio = 101 log-mel frames in, class posteriors
out; batch 1) through the SAME network, each the best of 5 timed groups after warm-up, the
lines' groups taken in turns (:func:`denseshift_speech.benchmarks.harness.time_all`; the
spotter hop on its own), in one process:

    ds-int8        the packed file on the native kernel, int8 path (the default): the
                   x-vector network in one fused op call (packed/xvector.py) when it fuses
    ds-exact       the packed file, exact float path (fused alike)
    torch-fp32     the packed weights decoded to dense fp32 layers, eager torch
    torch-int8     that fp32 twin through torch dynamic int8 (its nn.Linear layers; the
                   TDNN's Conv1d stay fp32: torch has no dynamic int8 conv)
    ort-fp32       the fp32 twin exported to ONNX, onnxruntime
    ort-int8       onnxruntime quantize_dynamic of it, MatMul only (the project's baseline
                   setting, benchmarks/baselines.py)
    ort-int8-conv  the same with Conv quantized too (ConvInteger: the TDNN is mostly convs)
    ds-onnx        the DenseShift ONNX export of the packed file (export --onnx)

plus the spotter's whole cost per 100 ms hop (features for the new audio + one window,
``ds-spotter-hop``) and the files' sizes.  Each line is called as the spotter calls the
model (``KWSModel.feature_posteriors``: sentence normalization, the network with the
pooling's noise at its middle value, softmax); the table says whether the packed lines ran the
fused op, or why not.  Ratios are each line's time over ds-int8's
(``> 1``: the packed spotter is faster).  The fp32 twin has the packed model's weights
(decoded), so every line computes the same function up to int8 rounding.
"""
from __future__ import annotations

import json
import os
import tempfile

import torch

from ..errors import UserError

REF = "ds-int8"


def _network(model):
    """``feats -> posteriors`` of one window, as the spotter runs it."""
    return lambda feats: model.feature_posteriors(feats, deterministic=True)


def _onnx_files(path, twin, workdir) -> dict:
    """fp32 ONNX of the decoded twin, its two quantize_dynamic variants, and the DenseShift
    export of the packed file."""
    from ..integrations.speechbrain.onnx_export import KwsOnnxModule, export_kws_onnx
    from ..packed.onnx_export import export_onnx
    from ..streaming.kws import deterministic_pooling
    from . import baselines as B
    frames = twin.clip_samples // int(twin.compute_features.compute_STFT.hop_length) + 1
    example = torch.zeros(1, frames, int(twin.compute_features.compute_fbanks.n_mels))
    files = {name: os.path.join(workdir, f"{name}.onnx")
             for name in ("ort-fp32", "ort-int8", "ort-int8-conv", "ds-onnx")}
    dynamic = {"feats": {0: "batch", 1: "time"}, "probs": {0: "batch"}}
    with deterministic_pooling(twin):
        export_onnx(KwsOnnxModule(twin).eval(), example, files["ort-fp32"],
                    input_names=("feats",), output_names=("probs",), dynamic_axes=dynamic)
    B.ort_int8(files["ort-fp32"], files["ort-int8"])
    B.ort_int8(files["ort-fp32"], files["ort-int8-conv"], op_types=("MatMul", "Conv"))
    export_kws_onnx(path, files["ds-onnx"])
    return files


def _hop(model):
    """One 100 ms hop of the streaming spotter in steady state (features + one window)."""
    from ..streaming.spotter import KeywordSpotter, SpotSettings
    spotter = KeywordSpotter(model, SpotSettings())
    hop = spotter.features.hop
    audio = 0.05 * torch.randn(model.clip_samples + 64 * hop, generator=torch.Generator().manual_seed(0))
    spotter.accept(audio[:model.clip_samples])
    state = {"at": model.clip_samples}

    def call():
        if state["at"] + hop > audio.numel():   # loop over the same audio, stream going on
            state["at"] = model.clip_samples
        spotter.accept(audio[state["at"]:state["at"] + hop])
        state["at"] += hop
    return call


DEFAULT_BUDGET = 0.5  # seconds per line


def bench_kws(path, threads: int = 1, budget: float = DEFAULT_BUDGET, log=print) -> dict:
    """Time every line of the module docstring; return rows, ratios and sizes."""
    from .harness import machine_info, rel_err, time_all, time_us
    from ..packed import set_path_
    from ..streaming.kws import load_kws_model
    from . import baselines as B

    torch.set_num_threads(threads)
    packed = load_kws_model(path)
    exact = load_kws_model(path)
    set_path_(torch.nn.ModuleList([exact.embedding_model, exact.classifier]), "exact")
    twin = load_kws_model(path, fp32=True)
    feats = packed.compute_features(0.05 * torch.randn(1, packed.clip_samples,
                                                       generator=torch.Generator().manual_seed(1)))
    fns = {"ds-int8": _network(packed), "ds-exact": _network(exact),
           "torch-fp32": _network(twin)}
    network = {name: m.unfused_reason(m.normalize(feats, torch.ones(1))) or "fused x-vector op"
               for name, m in (("ds-int8", packed), ("ds-exact", exact))}
    int8_twin = load_kws_model(path, fp32=True)
    int8_twin.embedding_model = B.torch_dynamic_int8(twin.embedding_model)
    int8_twin.classifier = B.torch_dynamic_int8(twin.classifier)
    fns["torch-int8"] = _network(int8_twin)
    sizes = {"packed_file_bytes": os.path.getsize(path)}
    available = B.available()
    with tempfile.TemporaryDirectory(prefix="denseshift-kws-bench-") as workdir:
        if available:
            files = _onnx_files(path, twin, workdir)
            for name, f in files.items():
                model = B.OrtModel(f, threads)
                fns[name] = (lambda m: lambda x: m(x))(model)
                sizes[f"{name}_bytes"] = os.path.getsize(f)
        else:
            log(f"# onnxruntime lines skipped: {available}")
        reference = fns["torch-fp32"](feats)
        outputs = {name: fn(feats) for name, fn in fns.items()}
        best, median = time_all({name: (lambda fn=fn: fn(feats)) for name, fn in fns.items()},
                                budget)  # groups in turns
        rows = {}
        for name, y in outputs.items():
            rows[name] = {"us": round(best[name], 2), "median_us": round(median[name], 2),
                          "rel_err_vs_fp32": round(rel_err(y, reference), 5),
                          "same_class_as_fp32": int(torch.as_tensor(y).argmax())
                          == int(reference.argmax())}
    hop_stats = {}
    rows["ds-spotter-hop"] = {"us": round(time_us(_hop(packed), budget, hop_stats), 2),
                              "median_us": round(hop_stats["median"], 2)}
    ref = rows[REF]["us"]
    ratios = {f"{name}/{REF}": round(row["us"] / ref, 3) for name, row in rows.items()
              if name != REF}
    hop_seconds = 0.1
    return {"model": os.fspath(path), "threads": threads, "machine": machine_info(),
            "window_frames": int(feats.shape[1]), "rows": rows, "ratios": ratios,
            "sizes": sizes, "network": network,
            "spotter_rtf": round(rows["ds-spotter-hop"]["us"] * 1e-6 / hop_seconds, 5)}


def format_table(result: dict) -> str:
    lines = [f"# {result['machine']['cpu']}, {result['threads']} thread(s); "
             f"{result['model']}: one window ({result['window_frames']} frames) per call",
             f"{'line':<16}{'us/window':>12}{'median':>10}{f'x {REF}':>10}{'rel.err':>10}"
             f"{'class':>7}"]
    for name, row in result["rows"].items():
        ratio = "1.000" if name == REF else f"{result['ratios'][f'{name}/{REF}']:.3f}"
        err = row.get("rel_err_vs_fp32")
        same = row.get("same_class_as_fp32")
        lines.append(f"{name:<16}{row['us']:>12.1f}{row['median_us']:>10.1f}{ratio:>10}"
                     f"{'-' if err is None else format(err, '.4f'):>10}"
                     f"{'-' if same is None else ('same' if same else 'DIFF'):>7}")
    lines.append(f"spotter real-time factor (one hop per 100 ms): {result['spotter_rtf']:.4f}")
    lines.append("packed network: " + ", ".join(f"{k} {v}" for k, v in result.get("network", {}).items()))
    lines.append("sizes: " + ", ".join(f"{k[:-6]} {v:,} B" for k, v in result["sizes"].items()))
    return "\n".join(lines)


def run(args) -> int:
    """``bench --kws MODEL``: the table on stdout, the result to ``--json`` if given."""
    from ..streaming.model import ModelFileError
    from .harness import parse_threads

    counts = parse_threads(args.threads, default=(1,))
    if len(counts) != 1:
        raise UserError(f"--kws times one thread count at a time, got --threads {args.threads}")
    budget = args.min_time if args.min_time is not None else DEFAULT_BUDGET
    try:
        result = bench_kws(args.kws, counts[0], budget)
    except ModelFileError as err:
        raise UserError(str(err)) from None
    print(format_table(result))
    if args.json:
        from ..fsio import atomic_open
        with atomic_open(args.json) as f:
            json.dump(result, f, indent=1)
    return 0

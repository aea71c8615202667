"""`denseshift-speech bench`: the quick run end to end, the JSON it writes, the targets logic,
and the graceful skip of the onnxruntime baselines."""
import argparse
import json
import os
import subprocess
import sys

import pytest

from denseshift_speech.benchmarks import harness
from denseshift_speech.benchmarks import inference as bench
from denseshift_speech.cli import bench as bench_cli
from denseshift_speech.benchmarks import baselines as B
from denseshift_speech.benchmarks import targets as T

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DS = ["ds-int8", "ds-exact", "ds-shift"]


def _check_rows(rows, names):
    assert rows
    for r in rows:
        assert set(r["us"]) == set(names), r["us"].keys()
        for k in names:
            assert r["us"][k] > 0 and r["median_us"][k] >= r["us"][k]
        assert r["ratios"]["torch-fp32/ds-int8"] == pytest.approx(
            r["us"]["torch-fp32"] / r["us"]["ds-int8"])


def test_bench_quick_cli(tmp_path):
    """`python -m denseshift_speech bench --quick --json PATH`: one process, every line."""
    out = tmp_path / "bench.json"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "denseshift_speech", "bench", "--quick",
                           "--json", str(out)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    for head in ("## whole encoder", "## single layers", "## size demo", "## targets"):
        assert head in text, text
    data = json.loads(out.read_text())
    for key in ("command", "options", "machine", "isa", "quick", "bits", "threads", "onnx",
                "encoder", "streams", "sizes", "layers", "targets", "elapsed_s"):
        assert key in data, key
    assert data["quick"] and data["bits"] == 3 and data["threads"] == [1, 2]
    for head in ("## whole encoder, scaling", "## single layers, scaling", "## several streams"):
        assert head in text, text
    assert data["command"].startswith("denseshift-speech bench --quick")
    assert data["machine"]["native_kernel"] and data["machine"]["cores"] >= 1
    # the ceiling of a 2-thread speed-up here: 2 one-thread processes against one
    assert data["capacity"]["one_process_calls_per_s"] > 0 and 0 < data["capacity"]["2"] < 2.5
    assert "## this machine: N one-thread processes at once run" in text
    onnx = B.available().ok
    assert data["onnx"]["used"] == onnx
    baselines = list(bench.BASELINES) if onnx else ["torch-fp32", "torch-int8"]
    _check_rows(data["encoder"], baselines + DS + ([bench.DS_ONNX] if onnx else []))
    assert sorted((r["geometry"], r["frames"], r["threads"]) for r in data["encoder"]) == [
        ("demo", 16, 1), ("demo", 16, 2), ("demo", 100, 1), ("demo", 100, 2)]
    # every alternative on each thread count, and its speed-up over one thread
    for r in data["encoder"] + data["layers"]:
        assert set(r["scaling"]) == set(r["us"])
        if r["threads"] == 1:
            assert all(v == 1.0 for v in r["scaling"].values())
    streams = data["streams"]
    assert [(r["geometry"], r["threads"], r["streams"], r["frames"]) for r in streams] == [
        ("demo", 1, 4, 16), ("demo", 2, 4, 16)]
    for r in streams:  # several streams in one call: each stream's own output, bit for bit
        assert r["ds_one_call_equals_one_by_one"] and r["ds_max_abs_diff"] == 0.0
        assert set(r["gain"]) == ({"ds-int8", "ort-int8"} if onnx else {"ds-int8"})
        for name, g in r["gain"].items():
            assert g == pytest.approx(r["us"][f"{name} one by one"] / r["us"][f"{name} one call"])
    # the packed encoder computes the same function on every path (3-bit quantized)
    for r in data["encoder"]:
        errs = r["rel_err_vs_torch_fp32"]
        assert abs(errs["ds-int8"] - errs["ds-exact"]) < 0.05 and errs["ds-exact"] < 1
        assert errs["ds-shift"] == pytest.approx(errs["ds-exact"], abs=1e-4)
        if onnx:  # onnxruntime on the DenseShift int8 export: the same quantized function
            assert abs(errs[bench.DS_ONNX] - errs["ds-exact"]) < 0.05
    _check_rows(data["layers"], baselines + DS)
    assert sorted((r["in"], r["out"], r["M"], r["threads"]) for r in data["layers"]) == sorted(
        (k, n, m, t) for k, n, ms in bench.QUICK_LAYERS for m in ms for t in (1, 2))
    for r in data["layers"]:
        assert r["ds_rel_err_vs_dequantized"]["ds-exact"] < 1e-5
        assert r["ds_rel_err_vs_dequantized"]["ds-int8"] < 0.03
    s = data["sizes"]["demo"]
    assert s["packed_file_bytes"] > 0 and s["fp32_over_packed"] > 4
    assert [t["name"] for t in data["targets"]] == [t.name for t in T.TARGETS]
    status = {t["name"]: t["status"] for t in data["targets"]}
    assert status["encoder-T16-vs-ort-int8"] == "n/a"  # conformer-small is not in --quick
    assert status["streams-4x640ms"] == status["encoder-scaling-T100"] == "n/a"
    assert status["m1-int8-vs-torch-int8"] in ("PASS", "MISS")


def _run_inprocess(argv, capsys):
    parser = argparse.ArgumentParser()
    bench_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["bench", *argv])
    assert args.func(args) == 0
    return capsys.readouterr().out


def test_bench_without_onnxruntime(tmp_path, capsys, monkeypatch):
    """No onnxruntime: a clear message, torch baselines and DenseShift still timed."""
    monkeypatch.setattr(B, "available",
                        lambda: B.Availability(False, "ImportError: No module named 'x'"))
    out = tmp_path / "b.json"
    text = _run_inprocess(["--quick", "--no-encoder", "--min-time", "0.001", "--json",
                           str(out)], capsys)
    assert "onnxruntime is not importable (ImportError: No module named 'x')" in text
    data = json.loads(out.read_text())
    assert data["onnx"] == {"used": False, "available": False,
                            "message": "ImportError: No module named 'x'"}
    _check_rows(data["layers"], ["torch-fp32", "torch-int8"] + DS)
    assert data["encoder"] == []
    text = _run_inprocess(["--quick", "--no-encoder", "--no-onnx", "--min-time", "0.001",
                           "--json", ""], capsys)
    assert "skipped (--no-onnx)" in text


def test_targets_evaluate():
    def enc(frames, ort, ds, fp32):
        return {"geometry": "conformer-small", "frames": frames,
                "us": {"ort-int8": ort, "ds-int8": ds, "torch-fp32": fp32}}

    def lay(k, n, m, **us):
        return {"in": k, "out": n, "M": m, "us": {key.replace("_", "-"): v for key, v in us.items()}}

    rec = {r["name"]: r for r in T.evaluate(
        [enc(16, 6.0, 4.0, 12.0), enc(100, 16.0, 17.0, 50.0),
         {"geometry": "demo", "frames": 16, "us": {"ort-int8": 1.0, "ds-int8": 9.0}}],
        [lay(512, 2048, 1, torch_int8=30.0, ds_int8=10.0, torch_fp32=60.0, ds_exact=25.0),
         lay(1024, 4096, 1, torch_int8=90.0, ds_int8=80.0, torch_fp32=500.0, ds_exact=90.0),
         lay(144, 432, 7, torch_int8=1.0, ds_int8=9.0)],  # M=7 is no target case
        {"conformer-small": {"fp32_param_bytes": 100, "packed_file_bytes": 10}})}
    assert rec["encoder-T16-vs-ort-int8"]["status"] == "PASS"
    assert rec["encoder-T16-vs-ort-int8"]["min_ratio"] == pytest.approx(1.5)
    assert rec["encoder-T100-vs-ort-int8"]["status"] == "MISS"
    r = rec["encoder-vs-torch-fp32"]
    assert (r["status"], r["passed"], len(r["cases"])) == ("PASS", 2, 2)
    assert r["min_ratio"] == pytest.approx(50 / 17) and r["min_case"] == "conformer-small T=100"
    r = rec["m1-int8-vs-torch-int8"]
    assert (r["status"], r["passed"], r["min_case"]) == ("MISS", 1, "1024->4096 M=1")
    assert rec["m1-exact-vs-torch-fp32"]["status"] == "MISS"  # 60/25 = 2.4
    assert rec["m1-exact-vs-torch-int8"]["status"] == "PASS"  # 1.2 and 1.0
    assert rec["layers-int8-vs-torch-int8"]["status"] == "n/a"
    assert rec["size-conformer-small"]["status"] == "PASS"
    lines = T.format_summary(T.evaluate())
    assert len(lines) == len(T.TARGETS) and all(line.lstrip().startswith("n/a") for line in lines)


def test_targets_on_two_threads_scaling_and_streams():
    """Rows name their thread count (none: 1 thread); the 2-thread targets see only 2-thread
    rows, the scaling target the row's speed-up over one thread, the streams target the
    several-streams rows."""
    def enc(frames, threads, ort, ds, scaling=None):
        r = {"geometry": "conformer-small", "frames": frames, "threads": threads,
             "us": {"ort-int8": ort, "ds-int8": ds, "torch-fp32": 10 * ds}}
        if scaling is not None:
            r["scaling"] = {"ds-int8": scaling}
        return r

    rows = [enc(16, 1, 6.0, 4.0), enc(100, 1, 17.0, 16.0),
            enc(16, 2, 5.0, 2.0, 2.0), enc(100, 2, 12.0, 9.0, 16.0 / 9.0)]
    streams = [{"geometry": "conformer-small", "threads": 2, "streams": 4,
                "us": {"ds-int8 one call": 3.0, "ds-int8 one by one": 5.0}},
               {"geometry": "conformer-small", "threads": 1, "streams": 4,
                "us": {"ds-int8 one call": 1.0, "ds-int8 one by one": 1.1}}]
    rec = {r["name"]: r for r in T.evaluate(rows, [], {}, streams)}
    assert rec["encoder-T16-vs-ort-int8"]["min_ratio"] == pytest.approx(1.5)  # the 1-thread row
    r = rec["encoder-2thr-T16-vs-ort-int8"]
    assert (r["status"], r["min_ratio"], r["min_case"]) == ("PASS", pytest.approx(2.5),
                                                            "conformer-small T=16 2 thr")
    r = rec["encoder-2thr-T100-vs-ort-int8"]
    assert r["status"] == "MISS" and r["min_ratio"] == pytest.approx(12 / 9)
    r = rec["encoder-scaling-T100"]
    assert r["status"] == "PASS" and r["min_ratio"] == pytest.approx(16 / 9)
    r = rec["streams-4x640ms"]
    assert (r["status"], len(r["cases"]), r["min_ratio"]) == ("MISS", 1, pytest.approx(5 / 3))
    text = "\n".join(T.format_summary(T.evaluate(rows, [], {}, streams)))
    assert "2 threads, conformer-small T=100" in text


def test_threads_option_is_parsed():
    from denseshift_speech.errors import UserError
    assert harness.parse_threads(None) == list(harness.DEFAULT_THREADS) == [1, 2]
    assert harness.parse_threads("2") == [2]
    assert harness.parse_threads(" 1, 2,4,2") == [1, 2, 4]
    for bad in ("0", "1,x", "", "-1"):
        with pytest.raises(UserError, match="--threads"):
            harness.parse_threads(bad)


# ------------------------------------------------------------------ bench --training ---------

def test_bench_training_quick(tmp_path, capsys):
    """`bench --training --quick`: the tiny conformer, fp32 / fused / reference DenseShift,
    each in its own process; the table, the JSON, identical losses fused vs reference."""
    from denseshift_speech.benchmarks import training as TR

    out = tmp_path / "t.json"
    text = _run_inprocess(["--training", "--quick", "--json", str(out)], capsys)
    for head in ("## training step", "## phases", "## peak memory", "## bytes per quantized"):
        assert head in text, text
    data = json.loads(out.read_text())
    assert data["mode"] == "training" and data["threads"] == 2 and data["bits"] == 3
    assert (data["steps"], data["warmup"], data["batch"]) == (2, 1, 2)
    rows = data["rows"]
    assert [(r["geometry"], r["config"], r["adamw"]) for r in rows] == [
        ("tiny", "fp32", "plain"), ("tiny", "ds3-fused", "plain"),
        ("tiny", "ds3-reference", "plain")]
    for r in rows:
        assert len(r["step_ms_all"]) == 2 and r["step_ms"] > 0 and len(r["losses"]) == 3
        assert r["peak_rss_mib"] >= r["rss_before_mib"] > 0
        assert set(r["phases_ms"]) == {"forward", "backward", "optimizer"}
    fp, fused, ref = rows
    assert fp["quantized_weights"] == 0 and fused["quantized_weights"] > 0
    assert fused["losses"] == ref["losses"]  # the fused node computes the reference's function
    s, = data["summary"]
    assert s["same_losses"] is True
    assert s["fused_over_fp32"] == pytest.approx(fused["step_ms"] / fp["step_ms"])
    assert s["reference_over_fused"] == pytest.approx(ref["step_ms"] / fused["step_ms"])
    # 3 bits: 4 float latents (16 B) + two AdamW moments each (32 B) per weight, plus the
    # per-channel log2 alpha; fp32: 4 B + 8 B
    ds, f32 = s["bytes_per_weight"]["denseshift"], s["bytes_per_weight"]["fp32"]
    assert 16 < ds["latents"] < 16.5 and 32 < ds["adamw_state"] < 33
    assert ds["grads"] == ds["latents"]
    assert (f32["latents"], f32["adamw_state"], f32["grads"]) == (4, 8, 4)
    assert ds["weights"] == f32["weights"] == fused["quantized_weights"]


def test_training_summary_and_tables():
    from denseshift_speech.benchmarks import training as TR

    def row(config, step, losses, adamw="plain"):
        bpw = {"weights": 10, "latents": 16.0, "grads": 16.0, "adamw_state": 32.0,
               "latents_plus_adamw": 48.0}
        return {"geometry": "demo", "config": config, "adamw": adamw,
                "bits": None if config == "fp32" else 3, "threads": 2, "batch": 8,
                "seconds": 3.0, "frames": 301, "steps": 3, "warmup": 1, "step_ms": step,
                "phases_ms": {"forward": 1.0, "backward": 2.0, "optimizer": 3.0},
                "losses": losses, "peak_rss_mib": 900.0, "rss_before_mib": 800.0,
                "bytes_per_weight": bpw}

    rows = [row("fp32", 100.0, [1.0]), row("ds3-fused", 110.0, [2.0]),
            row("ds3-reference", 160.0, [2.0 + 1e-3])]
    s, = TR.summarize(rows)
    assert s["fused_over_fp32"] == pytest.approx(1.1)
    assert s["reference_over_fp32"] == pytest.approx(1.6)
    assert s["reference_over_fused"] == pytest.approx(160 / 110)
    assert s["same_losses"] is False and s["train_rss_mib"]["fp32"] == 100.0
    text = "\n".join(TR.tables(rows, [s]))
    assert "1.10" in text and "1.45" in text and "NO" in text
    assert "latents 16.0 + AdamW state 32.0 = 48.0 B" in text


def test_bench_training_rejects_bad_options(capsys):
    parser = argparse.ArgumentParser()
    bench_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["bench", "--training", "--steps", "0", "--json", ""])
    from denseshift_speech.errors import UserError
    with pytest.raises(UserError, match="--steps"):
        args.func(args)
    args = parser.parse_args(["bench", "--training", "--threads", "1,2", "--json", ""])
    with pytest.raises(UserError, match="one thread count"):
        args.func(args)

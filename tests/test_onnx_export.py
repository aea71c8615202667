"""ONNX export for stock onnxruntime (issue 14, item 6): packed DenseShift -> ONNX with the
MatMuls as int8 MatMulInteger + per-channel scales (denseshift_speech.packed.onnx_export),
and the ASR model file -> ONNX verb (`export --onnx`, integrations/speechbrain/onnx_export).

Tolerances (measured on a 2-layer d=48 conformer, T=37, batch 2):

* the int8 pattern itself is exact: one layer against a numpy emulation of onnxruntime's
  DynamicQuantizeLinear (uint8, per tensor) + integer dot products + per-channel scale
  agrees to float rounding (rtol 1e-5);
* whole encoder vs the packed model's exact path: relative L2 error about 0.0095 (3-bit and
  4-bit alike), the int8 rounding of the activations, which onnxruntime quantizes per
  tensor where the packed int8 path quantizes per row (that path is itself 0.008-0.009
  from exact).  Bound: 0.03 vs exact, 0.04 vs the packed int8 path (measured 0.013);
* the fp32 twin (no DenseShift weight) exports as plain fp32: 1e-5.
"""
import copy
import json
import os

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, numpy_helper  # noqa: E402

from denseshift_speech import DenseShiftConfig, kernels, pack_, quantize_  # noqa: E402
from denseshift_speech.onnx_runtime import ort_session  # noqa: E402
from denseshift_speech.kernels.codes import decode  # noqa: E402
from denseshift_speech.kernels.layout import unpack_codes  # noqa: E402
from denseshift_speech.packed import PackedLinear, set_path_  # noqa: E402
from denseshift_speech.packed.onnx_export import (export_onnx, quantized_weights,  # noqa: E402
                                                  size_report)

needs_native = pytest.mark.skipif(not kernels.native_available(), reason="native kernel not built")


def _session(path):
    return ort_session(path, threads=1)


def _run(path, x):
    s = _session(path)
    return s.run(None, {s.get_inputs()[0].name: np.ascontiguousarray(x, np.float32)})[0]


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


class Encoder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.encode(x, None)


def small_conformer():
    from speechbrain.lobes.models.transformer.TransformerASR import TransformerASR
    torch.manual_seed(0)
    return TransformerASR(input_size=20, tgt_vocab=16, d_model=48, nhead=4, num_encoder_layers=2,
                          num_decoder_layers=0, d_ffn=96, encoder_module="conformer",
                          attention_type="RelPosMHAXL", normalize_before=True, causal=False,
                          kernel_size=7, dropout=0.0).eval()


@pytest.fixture(scope="module", params=[3, 4], ids=["3bit", "4bit"])
def exported(request, tmp_path_factory):
    bits = request.param
    model = small_conformer()
    quantize_(model, DenseShiftConfig(bits=bits, init="from_float", keep_first=False,
                                      keep_last=False))
    pack_(model, path="exact")
    path = tmp_path_factory.mktemp("onnx") / f"ds{bits}.onnx"
    report = export_onnx(Encoder(model), torch.randn(1, 16, 20), path)
    return bits, model, path, report


def _inits(path):
    return {i.name: i for i in onnx.load(str(path)).graph.initializer}


def test_checker_and_int8_weights_replace_fp32(exported):
    bits, model, path, report = exported
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    ops = [n.op_type for n in proto.graph.node]
    weights = quantized_weights(Encoder(model))  # names as in the exported module
    # every linear, the attention in-projection and the pointwise conv: int8; the two
    # depthwise convs stay exact fp32 Conv weights
    depthwise = [w.name for w in weights if "convolution_module.conv." in w.name]
    assert sorted(report.missing) == sorted(depthwise) and len(depthwise) == 2
    assert len(report.int8) + len(report.split) == len(weights) - 2 and not report.kept_fp32
    if bits == 4:  # +-128 somewhere in every layer: all split lo + hi
        assert report.split and not report.int8
    else:
        assert report.int8 and not report.split
    assert ops.count("MatMulInteger") == len(report.int8) + 2 * len(report.split)
    assert "MatMul" in ops  # attention score products stay float
    inits = _inits(path)
    int8 = [i for i in inits.values() if i.data_type == TensorProto.INT8 and len(i.dims) == 2]
    assert len(int8) == len(report.int8) + 2 * len(report.split)
    # no fp32 copy of an int8-stored weight is left (as W or as W^T)
    floats = {numpy_helper.to_array(i).tobytes() for i in inits.values()
              if i.data_type == TensorProto.FLOAT}
    for w in weights:
        if w.name in report.int8 + report.split:
            wt = w.weight()
            assert wt.tobytes() not in floats and np.ascontiguousarray(wt.T).tobytes() not in floats
    meta = {p.key: p.value for p in proto.metadata_props}
    assert "int8" in meta["denseshift.onnx"]


def test_int8_initializers_decode_exactly_to_the_packed_codes(exported):
    bits, model, path, report = exported
    inits = {k: numpy_helper.to_array(v) for k, v in _inits(path).items()}
    checked = 0
    for name, module in Encoder(model).named_modules():
        if not isinstance(module, PackedLinear):
            continue
        base = f"{name}.weight".replace(".", "/")
        parts = [inits[k].astype(np.int64) for k in (f"{base}_int8", f"{base}_int8_lo",
                                                      f"{base}_int8_hi") if k in inits]
        assert parts and all(np.abs(p).max() <= (64 if len(parts) == 2 else 127) for p in parts)
        q = decode(unpack_codes(module.packed, bits, module.in_features), bits,
                   torch.float64).long().numpy()
        np.testing.assert_array_equal(sum(parts).T, q)
        np.testing.assert_array_equal(inits[f"{base}_scale"], module.alpha.numpy())
        assert not inits[f"{base}_zero_point"].any()
        checked += 1
    assert checked >= 10


@needs_native
def test_onnxruntime_matches_packed_model(exported):
    bits, model, path, _ = exported
    m = copy.deepcopy(model)
    x = torch.randn(2, 37, 20, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        set_path_(m, "exact")
        exact = m.encode(x, None).numpy()
        set_path_(m, "int8")
        int8 = m.encode(x, None).numpy()
    y = _run(path, x.numpy())
    assert y.shape == exact.shape
    assert 1e-5 < _rel(y, exact) < 0.03
    assert _rel(y, int8) < 0.04
    y16 = _run(path, x[:1, :16].numpy())  # another time length: dynamic axes
    with torch.no_grad():
        set_path_(m, "exact")
        assert _rel(y16, m.encode(x[:1, :16], None).numpy()) < 0.03


def _dynamic_quantize_linear(x):
    """numpy of ONNX DynamicQuantizeLinear (uint8; round half to even)."""
    lo, hi = min(0.0, float(x.min())), max(0.0, float(x.max()))
    s = np.float32((hi - lo) / 255.0)
    zp = np.clip(np.rint(-lo / s), 0, 255)
    return np.clip(np.rint(x / s) + zp, 0, 255), s, zp


@pytest.mark.parametrize("bits,split_sum", [(2, "int32"), (3, "int32"), (4, "int32"),
                                            (4, "float")])
def test_int8_pattern_is_exact_for_one_layer(bits, split_sum, tmp_path):
    torch.manual_seed(bits)
    lin = torch.nn.Linear(80, 24)
    model = torch.nn.Sequential(lin)
    quantize_(model, DenseShiftConfig(bits=bits, init="from_float", keep_first=False,
                                      keep_last=False))
    pack_(model)
    path = tmp_path / "lin.onnx"
    report = export_onnx(model, torch.randn(1, 5, 80), path, split_sum=split_sum)
    assert len(report.int8) + len(report.split) == 1
    w = quantized_weights(model)[0]
    x = torch.randn(1, 7, 80).numpy()
    xq, s, zp = _dynamic_quantize_linear(x)
    acc = (xq - zp).astype(np.int64) @ w.q.T
    ref = acc.astype(np.float32) * (s * w.alpha) + model[0].bias.numpy()
    np.testing.assert_allclose(_run(path, x), ref, rtol=1e-5, atol=1e-6)


def test_fp32_twin_exports_as_plain_fp32(tmp_path):
    model = small_conformer()
    path = tmp_path / "fp32.onnx"
    report = export_onnx(Encoder(model), torch.randn(1, 16, 20), path)
    assert not (report.int8 or report.split or report.missing)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "MatMulInteger" not in ops and "DynamicQuantizeLinear" not in ops
    x = torch.randn(1, 23, 20)
    with torch.no_grad():
        ref = model.encode(x, None).numpy()
    assert _rel(_run(path, x.numpy()), ref) < 1e-5


# ------------------------------------------------------------ the ASR file and the verb ----

@needs_native
def test_export_verb_on_a_model_file_and_wer(tmp_path, capsys):
    """A tiny recipe conformer (as tests/test_streaming.py builds it) -> model.dsp ->
    `export model.dsp --onnx --wer manifest`: metadata, log-probs vs the packed model,
    the WER line."""
    import types

    import sentencepiece as spm
    import soundfile as sf

    from denseshift_speech.cli import main as cli_main
    from denseshift_speech.integrations.speechbrain import recipe
    from denseshift_speech.streaming import load_model
    from test_streaming import ROOT, WORDS, _signal

    rng = np.random.default_rng(0)
    (tmp_path / "text.txt").write_text("\n".join(" ".join(rng.choice(WORDS, 6)).upper()
                                                 for _ in range(200)))
    spm.SentencePieceTrainer.train(input=str(tmp_path / "text.txt"),
                                   model_prefix=str(tmp_path / "tok"), vocab_size=40,
                                   model_type="unigram", character_coverage=1.0, bos_id=-1,
                                   eos_id=-1, unk_id=0, minloglevel=2)
    overrides = {"d_model": 32, "nhead": 2, "num_encoder_layers": 2, "d_ffn": 64,
                 "kernel_size": 7, "n_mels": 40, "vocab_size": 40, "dropout": 0.0,
                 "output_folder": str(tmp_path / "run")}
    hparams, text_yaml = recipe.load_hparams(os.path.join(ROOT, "hparams", "conformer_ds.yaml"),
                                             overrides)
    recipe.save_resolved_hparams(str(tmp_path / "run"), text_yaml)
    norm = hparams["normalize"]
    feats = hparams["compute_features"](_signal(2.0, 99).unsqueeze(0))
    norm.glob_mean, norm.glob_std = feats[0].mean(0), feats[0].std(0) + 1.0
    summary = recipe.apply_denseshift(hparams["modules"], hparams)
    dsp = recipe.export_packed(hparams, summary, "asr",
                               types.SimpleNamespace(prefix_model_file=str(tmp_path / "tok")))

    rows = ["ID,duration,wav,spk_id,wrd"]
    for i in range(3):
        f = tmp_path / f"u{i}.flac"
        sf.write(str(f), _signal(1.2 + 0.4 * i, i + 3).numpy(), 16000)
        rows.append(f"u{i},1.5,{f},spk,HELLO WORLD")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "asr.onnx"
    assert cli_main(["export", dsp, "--onnx", "--out", str(out),
                     "--wer", str(tmp_path / "m.csv")]) == 0
    text = capsys.readouterr().out
    assert "MatMuls as int8" in text and "greedy CTC WER packed" in text and "ONNX" in text

    proto = onnx.load(str(out))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["features"])["n_mels"] == 40 and meta["blank_index"] == "0"
    assert len(json.loads(meta["normalize"])["glob_mean"]) == 40
    assert meta["tokenizer.model.base64"] and "log_probs" in meta["io"]
    assert any(n.op_type == "MatMulInteger" for n in proto.graph.node)

    m = load_model(dsp)
    wav = _signal(1.9, 7).reshape(1, -1)
    with torch.no_grad():
        f = m.compute_features(wav)
        src = m.CNN(m.normalize(f, torch.ones(1)))
        enc = m.Transformer.encode(src.reshape(1, src.shape[1], -1), torch.ones(1))
        ref = torch.log_softmax(m.ctc_lin(enc), -1).numpy()
    y = _run(out, f.numpy())
    assert y.shape == ref.shape
    assert np.abs(y - ref).max() < 0.1 * max(1.0, np.abs(ref).max())
    assert "packed file" in size_report(out, dsp)

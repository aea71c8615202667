"""The benchmark's alternatives (torch / onnxruntime, fp32 / dynamic int8) compute the network.

Error bounds for the int8 twins, from measurement (relative error = ||y - y_fp32|| / ||y_fp32||):
the whole demo-geometry encoder (2 and 4 layers, T = 16, 37, 100) gave 1.5-1.7 % for
onnxruntime int8 and 2.0-2.3 % for torch int8; the 12-layer conformer-small gave 2.3 % for
both. Per-tensor 8-bit weights and activations each add a uniform rounding error of about
0.3-0.6 % of a layer's output, and the errors of a few dozen layers add up to this. The bound
here, 5 %, leaves twice that, and is still far below what a broken twin produces (a wrong
scale or zero point gives errors of order 100 %). A single random linear layer gives about
0.7-1 %; its bound is 3 %.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from denseshift_speech.benchmarks import baselines as B

pytestmark = pytest.mark.skipif(not B.available(), reason=B.available().message)


def rel(y, ref):
    y, ref = np.asarray(y, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return float(np.linalg.norm(y - ref) / np.linalg.norm(ref))


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    """The demo geometry with 2 layers (fast), exported once, and its int8 twins."""
    torch.set_num_threads(1)
    return B.encoder_baselines("demo", str(tmp_path_factory.mktemp("onnx")), num_layers=2)


def test_geometries():
    demo, small = B.GEOMETRIES["demo"], B.GEOMETRIES["conformer-small"]
    assert (demo["d_model"], demo["nhead"], demo["num_encoder_layers"], demo["d_ffn"],
            demo["kernel_size"], demo["input_size"]) == (96, 4, 4, 384, 15, 40 // 4 * 32)
    assert (small["d_model"], small["nhead"], small["num_encoder_layers"], small["d_ffn"],
            small["kernel_size"], small["input_size"]) == (144, 4, 12, 1024, 31, 80 // 4 * 32)
    for g in (demo, small):
        assert g["attention_type"] == "RelPosMHAXL" and g["normalize_before"]
        assert not g["causal"] and g["dropout"] == 0 and g["num_decoder_layers"] == 0
    m = B.build_encoder("demo", num_layers=1)
    assert not m.training and len(m.encoder.layers) == 1
    # seeded, and the global RNG is left alone
    state = torch.random.get_rng_state()
    a, b = B.build_encoder("demo", num_layers=1, seed=5), B.build_encoder("demo", num_layers=1,
                                                                         seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(p, q), n
    with pytest.raises(ValueError, match="unknown geometry"):
        B.build_encoder("nope")


@pytest.mark.parametrize("frames", [16, 100])
def test_onnx_encoder_matches_torch_at_any_length(encoder, frames):
    """One export (traced at T=16) runs at T=16 and T=100 and equals torch's output."""
    x = B.example_input("demo", frames, seed=frames)
    ref = encoder["torch-fp32"](x).numpy()
    assert ref.shape == (1, frames, 96)
    y = encoder["ort-fp32"](x)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=2e-5)
    # a batch of two, a numpy input and a non-contiguous one take the same path
    x2 = B.example_input("demo", frames, batch=2, seed=frames + 1)
    np.testing.assert_allclose(encoder["ort-fp32"](x2.numpy()), encoder["torch-fp32"](x2).numpy(),
                               rtol=1e-4, atol=2e-5)
    xt = torch.cat([x, x], dim=-1)[..., :x.shape[-1]]
    assert not xt.is_contiguous()
    np.testing.assert_allclose(encoder["ort-fp32"](xt), ref, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("frames", [16, 100])
def test_int8_encoders_close_to_fp32(encoder, frames):
    x = B.example_input("demo", frames, seed=10 + frames)
    ref = encoder["torch-fp32"](x).numpy()
    e_ort = rel(encoder["ort-int8"](x), ref)
    e_torch = rel(encoder["torch-int8"](x).numpy(), ref)
    assert 1e-4 < e_ort < 0.05, e_ort  # quantized (not a copy of fp32), and close
    assert 1e-4 < e_torch < 0.05, e_torch


def test_int8_onnx_ops(encoder):
    """MatMul weights quantized (activations on the fly), Conv and activation matmuls not."""
    fp32, int8 = B.op_counts(encoder["onnx_fp32"]), B.op_counts(encoder["onnx_int8"])
    assert "MatMulInteger" not in fp32
    # 2 layers x (2 FFN x 2 + in-proj + linear_pos + out_proj + conv after-linear) + input
    assert int8["MatMulInteger"] == 2 * 8 + 1
    assert int8["DynamicQuantizeLinear"] >= 1
    assert int8["MatMul"] == 2 * 3  # scores (content, position) and context stay fp32
    assert "ConvInteger" not in int8 and int8["Conv"] == fp32["Conv"]


def test_torch_int8_encoder_quantizes_linears(encoder):
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    wrapper = encoder["module"]
    q = B.torch_dynamic_int8(wrapper)
    n_fp32 = sum(isinstance(m, torch.nn.Linear) for m in wrapper.modules())
    n_q = sum(isinstance(m, QLinear) for m in q.modules())
    assert n_q == n_fp32 > 0
    assert not any(isinstance(m, QLinear) for m in wrapper.modules())  # original untouched


SHAPES = [(432, 144), (144, 1024), (37, 61)]


@pytest.mark.parametrize("out_f,in_f", SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_layer_baselines_match_linear(out_f, in_f, bias):
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(out_f * 7 + in_f)
    w = torch.randn(out_f, in_f, generator=g) / in_f ** 0.5
    b = torch.randn(out_f, generator=g) if bias else None
    fns = B.layer_baselines(w, b)
    assert set(fns) == {"torch-fp32", "torch-int8", "ort-fp32", "ort-int8"}
    for m in (1, 16, 100):
        x = torch.randn(m, in_f, generator=g)
        ref = F.linear(x, w, b).numpy()
        torch.testing.assert_close(fns["torch-fp32"](x), F.linear(x, w, b), rtol=0, atol=0)
        y = fns["ort-fp32"](x)
        assert y.shape == (m, out_f) and y.dtype == np.float32
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(fns["ort-fp32"](x.numpy()), y, rtol=0, atol=0)
        e_ort = rel(fns["ort-int8"](x), ref)
        e_torch = rel(fns["torch-int8"](x).numpy(), ref)
        assert 1e-5 < e_ort < 0.03, (m, e_ort)
        assert 1e-5 < e_torch < 0.03, (m, e_torch)
        # repeat calls do not share or clobber output buffers
        y2 = fns["ort-int8"](x)
        np.testing.assert_array_equal(y2, fns["ort-int8"](x))


def test_layer_int8_matches_its_own_quantization():
    """The onnxruntime int8 layer is what its recipe says: symmetric per-tensor int8 weights,
    asymmetric per-tensor uint8 activations, exact integer accumulation."""
    g = torch.Generator().manual_seed(3)
    w = torch.randn(24, 40, generator=g)
    x = torch.randn(5, 40, generator=g)
    y = B.ort_linear_int8(w, None)(x).astype(np.float64)
    ws = w.abs().max().item() / 127.0
    wq = torch.clamp(torch.round(w / ws), -127, 127).double()
    lo, hi = min(x.min().item(), 0.0), max(x.max().item(), 0.0)
    xs = (hi - lo) / 255.0
    zp = float(np.clip(np.round(-lo / xs), 0, 255))
    xq = torch.clamp(torch.round(x / xs) + zp, 0, 255).double()
    ref = ((xq - zp) @ wq.T * (xs * ws)).numpy()
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_per_channel_option():
    g = torch.Generator().manual_seed(4)
    w = torch.randn(64, 32, generator=g) * torch.logspace(-2, 0, 64).unsqueeze(1)
    x = torch.randn(8, 32, generator=g)
    ref = F.linear(x, w).numpy()
    e_tensor = rel(B.ort_linear_int8(w)(x), ref)
    e_channel = rel(B.ort_linear_int8(w, per_channel=True)(x), ref)
    assert e_channel < e_tensor  # rows of very different scale: per channel is better


def test_available_reports_versions():
    a = B.available()
    assert a and a.ok and "onnxruntime" in a.message

"""Packing round trips, packed inference modules, and the packed model file."""
import os

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from denseshift_speech import DenseShiftConfig, quantize_
from denseshift_speech.kernels import layout as packing
from denseshift_speech.core import quant
from denseshift_speech.packed import fileformat
from denseshift_speech.packed import (PackedConv1d, PackedFileError, PackedLinear, load_packed,
                                      pack_, read_packed_metadata, save_packed)
from denseshift_speech.core.nn import DenseShiftWeight


@pytest.mark.parametrize("bits", range(2, 9))
def test_pack_roundtrip_and_size(bits):
    gen = torch.Generator().manual_seed(bits)
    for n, k in [(1, 1), (3, 5), (4, 64), (7, 65), (2, 200), (5, 31)]:
        codes = torch.randint(0, 2 ** bits, (n, k), dtype=torch.uint8, generator=gen)
        packed = packing.pack_codes(codes, bits)
        kp = -(-k // 64) * 64
        assert packed.shape == (n, kp * bits // 8)  # exactly b bits per (padded) code
        assert torch.equal(packing.unpack_codes(packed, bits, k), codes)
    codes = torch.randint(0, 2 ** bits, (6, 3, 5), dtype=torch.uint8, generator=gen)
    packed, alpha = packing.pack_weight(codes, torch.tensor([0.5]), bits)
    w = packing.decode_packed(packed, alpha, bits, codes.shape)
    assert torch.equal(w, 0.5 * quant.decode(codes, bits))


def test_three_bit_layout_is_dense_and_documented():
    # code t of a block: exponent crumb at byte t % 16, bit 2 * (t // 16); sign at bit t of
    # the 8-byte bitmap that follows the 16 crumb bytes.
    for t in (0, 5, 16, 37, 63):
        codes = torch.zeros(1, 64, dtype=torch.uint8)
        codes[0, t] = 0b110  # neg=1, e=2
        p = packing.pack_codes(codes, 3)[0]
        assert p.numel() == 24
        expect = torch.zeros(24, dtype=torch.uint8)
        expect[t % 16] = 2 << (2 * (t // 16))
        expect[16 + t // 8] = 1 << (t % 8)
        assert torch.equal(p, expect), t


def test_pack_rejects_bad_codes():
    with pytest.raises(ValueError, match="out of range"):
        packing.pack_codes(torch.tensor([[8]], dtype=torch.uint8), 3)
    with pytest.raises(TypeError):
        packing.pack_codes(torch.tensor([[1]]), 3)


def _ds(layer, bits=3, name="weight"):
    parametrize.register_parametrization(layer, name, DenseShiftWeight(bits=bits, init="from_float"))
    return layer


def linear_stack(bits=3):
    torch.manual_seed(0)
    return nn.Sequential(_ds(nn.Linear(20, 70), bits), nn.ReLU(), _ds(nn.Linear(70, 33, bias=False), bits),
                         nn.Tanh(), _ds(nn.Linear(33, 5), bits)).eval()


@pytest.mark.parametrize("path", ["shift", "exact", "int8"])
@pytest.mark.parametrize("bits", [2, 3, 4])
def test_packed_linear_stack_matches_quantized(bits, path):
    model = linear_stack(bits)
    x = torch.randn(9, 20)
    with torch.no_grad():
        ref = model(x)
        summary = pack_(model, path=path)
        y = model(x)
    assert len(summary.entries) == 3
    assert all(isinstance(model[i], PackedLinear) and model[i].path == path for i in (0, 2, 4))
    if path == "int8":  # three layers of per-row int8 activations: ~1 % of the output scale
        assert float((y - ref).abs().max()) <= 0.03 * float(ref.abs().max())
    else:
        torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)


def test_pack_rejects_unknown_path():
    with pytest.raises(ValueError, match="kernel path must be one of int8, exact, shift"):
        pack_(linear_stack(3), path="fast")


def test_packed_conv1d_modes():
    torch.manual_seed(1)
    convs = {
        "pointwise": nn.Conv1d(12, 20, 1),
        "depthwise": nn.Conv1d(12, 12, 31, padding=15, groups=12),
        "unfold": nn.Conv1d(12, 8, 3, stride=2, padding=1, dilation=2),
        "dense": nn.Conv1d(12, 8, 3, groups=2),
    }
    x = torch.randn(2, 12, 40)
    for mode, conv in convs.items():
        parent = nn.Sequential(_ds(conv)).eval()
        with torch.no_grad():
            ref = parent(x)
            pack_(parent, path="exact")
            y = parent(x)
        assert isinstance(parent[0], PackedConv1d) and parent[0].mode == mode
        torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5, msg=mode)


class AttnLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.rnn = nn.LSTM(16, 8, batch_first=True)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        a, _ = self.attn(x, x, x)
        return self.out(self.rnn(a)[0])


def test_raw_projections_are_decoded_once_and_saved(tmp_path):
    torch.manual_seed(2)
    model = AttnLSTM()
    quantize_(model, DenseShiftConfig(bits=3, init="from_float", keep_first=False, keep_last=False))
    model.eval()
    x = torch.randn(2, 6, 16)
    with torch.no_grad():
        ref = model(x)
        summary = pack_(model, path="exact")
        y = model(x)
    kinds = {e.name: e.kind for e in summary.entries}
    assert kinds["attn.in_proj_weight"] == "dense" and kinds["rnn.weight_ih_l0"] == "dense"
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    path = tmp_path / "m.dsp"
    save_packed(model, path)
    fresh = AttnLSTM().eval()
    load_packed(fresh, path)
    with torch.no_grad():
        assert torch.equal(fresh(x), y)


def conformer(layers=1, d_ffn=576):
    from speechbrain.lobes.models.transformer.TransformerASR import TransformerASR

    torch.manual_seed(0)
    return TransformerASR(input_size=40, tgt_vocab=50, d_model=144, nhead=4, num_encoder_layers=layers,
                          num_decoder_layers=0, d_ffn=d_ffn, encoder_module="conformer",
                          attention_type="RelPosMHAXL", normalize_before=True, kernel_size=31, causal=False,
                          dropout=0.0).eval()


@pytest.fixture(scope="module")
def packed_conformer(tmp_path_factory):
    model = conformer()
    quantize_(model, DenseShiftConfig(bits=3, keep_first=False, keep_last=False))
    model.eval()
    x = torch.randn(2, 30, 40)
    with torch.no_grad():
        ref = model.encode(x, None)
        pack_(model, path="exact")
        y = model.encode(x, None)
    path = tmp_path_factory.mktemp("packed") / "conformer.dsp"
    sizes = save_packed(model, path, metadata={"recipe": "test", "note": "ü"},
                        blobs={"hparams.yaml": "d_model: 144\n", "tokenizer.model": bytes(range(256)),
                               "empty": b""},
                        config=DenseShiftConfig(bits=3))
    return model, x, ref, y, path, sizes


def test_packed_conformer_matches_quantized(packed_conformer):
    model, x, ref, y, _, _ = packed_conformer
    layer = model.encoder.layers[0]
    assert isinstance(layer.convolution_module.conv, PackedConv1d)
    assert layer.convolution_module.conv.mode == "depthwise"
    assert layer.convolution_module.bottleneck[0].mode == "pointwise"
    assert isinstance(layer.ffn_module1[1].ffn[0], PackedLinear)
    torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-4)


def test_packed_conformer_paths_and_saved_path(packed_conformer, tmp_path):
    """int8 stays within a few percent of the exact path; shift equals it; the path is saved."""
    from denseshift_speech.packed import set_path_
    model, x, ref, y, _, _ = packed_conformer
    try:
        with torch.no_grad():
            set_path_(model, "shift")
            torch.testing.assert_close(model.encode(x, None), y, rtol=1e-4, atol=1e-4)
            set_path_(model, "int8")
            y8 = model.encode(x, None)
        rel = float((y8 - y).norm() / y.norm())
        assert 1e-6 < rel < 0.05, rel  # really quantized, and close
        save_packed(model, tmp_path / "int8.dsp")
        fresh = conformer()
        load_packed(fresh, tmp_path / "int8.dsp")
        paths = {m.path for m in fresh.modules() if isinstance(m, (PackedLinear, PackedConv1d))}
        assert paths == {"int8"}
    finally:
        set_path_(model, "exact")


def test_conformer_file_roundtrip_and_size(packed_conformer):
    model, x, _, y, path, sizes = packed_conformer
    fresh = conformer()
    info = load_packed(fresh, path)
    with torch.no_grad():
        assert torch.equal(fresh.encode(x, None), y)
    a, b = model.state_dict(), fresh.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert info.metadata == {"recipe": "test", "note": "ü"}
    assert info.blobs["tokenizer.model"] == bytes(range(256))
    assert info.blobs["hparams.yaml"] == b"d_model: 144\n" and info.blobs["empty"] == b""
    assert info.config["config"]["bits"] == 3
    meta = read_packed_metadata(path)
    assert meta["format_version"] == fileformat.FORMAT_VERSION
    assert meta["sizes"]["file_bytes"] == os.path.getsize(path) == sizes["file_bytes"]
    ratio = sizes["quantized_fp32_bytes"] / sizes["quantized_packed_bytes"]
    assert ratio >= 8.0, ratio
    # loading twice (into an already packed model) works too
    load_packed(fresh, path)


def _rewrite(path, out, fn):
    data = bytearray(open(path, "rb").read())
    open(out, "wb").write(fn(data))
    return out


def test_corrupt_files_give_one_clear_error(packed_conformer, tmp_path):
    _, _, _, _, path, _ = packed_conformer
    n = os.path.getsize(path)
    header_len = int.from_bytes(open(path, "rb").read(8), "little")
    cases = {
        "truncated": (lambda d: d[: n // 2], "truncated or corrupt"),
        "flipped data byte": (lambda d: d[:n - 100] + bytes([d[n - 100] ^ 0x10]) + d[n - 99:],
                              "integrity check failed"),
        "flipped header byte": (lambda d: d[:8 + header_len // 2] + b"#" + d[9 + header_len // 2:],
                                None),
        "empty": (lambda d: b"", "truncated or corrupt"),
    }
    for what, (fn, msg) in cases.items():
        bad = _rewrite(path, tmp_path / f"{what}.dsp", fn)
        with pytest.raises(PackedFileError, match=msg or None) as err:
            load_packed(conformer(), bad)
        assert str(bad) in str(err.value), what
    with pytest.raises(PackedFileError, match="no such"):
        load_packed(conformer(), tmp_path / "missing.dsp")


def test_wrong_version_and_architecture(packed_conformer, tmp_path, monkeypatch):
    model, _, _, _, path, _ = packed_conformer
    monkeypatch.setattr(fileformat, "FORMAT_VERSION", 99)
    future = tmp_path / "future.dsp"
    save_packed(model, future)
    monkeypatch.undo()
    with pytest.raises(PackedFileError, match="format version '99' is not supported"):
        load_packed(conformer(), future)
    with pytest.raises(PackedFileError, match="architecture mismatch"):
        load_packed(conformer(d_ffn=256), path)
    with pytest.raises(PackedFileError, match="architecture mismatch"):
        load_packed(conformer(layers=2), path)
    with pytest.raises(PackedFileError, match="architecture mismatch"):
        load_packed(linear_stack(), path)


def test_save_requires_packed_model(tmp_path):
    with pytest.raises(ValueError, match="pack_"):
        save_packed(linear_stack(), tmp_path / "x.dsp")


def test_packing_a_deepcopy_leaves_the_original_intact():
    """deepcopy shares the generated Parametrized<Class>; pack_ must not edit it."""
    import copy

    torch.manual_seed(3)
    model = AttnLSTM()
    quantize_(model, DenseShiftConfig(bits=3, keep_first=False, keep_last=False))
    model.eval()
    x = torch.randn(1, 4, 16)
    with torch.no_grad():
        ref = model(x)
        first = copy.deepcopy(model)
        pack_(first)
        torch.testing.assert_close(model(x), ref)  # original still parametrized and working
        second = copy.deepcopy(model)
        pack_(second)
        torch.testing.assert_close(second(x), first(x))


def test_rebuilt_buffers_are_left_out_and_rebuilt(packed_conformer, tmp_path):
    model, x, _, y, path, sizes = packed_conformer
    lean = tmp_path / "lean.dsp"
    lean_sizes = save_packed(model, lean, rebuilt_buffers=["*positional_encoding*.pe"])
    pe = [n for n, _ in model.named_buffers() if n.endswith(".pe")]
    assert pe, "the conformer should have sinusoidal buffers"
    pe_bytes = sum(b.numel() * 4 for n, b in model.named_buffers() if n in pe)
    assert lean_sizes["file_bytes"] <= sizes["file_bytes"] - pe_bytes + 4096
    fresh = conformer()
    load_packed(fresh, lean)
    with torch.no_grad():
        assert torch.equal(fresh.encode(x, None), y)


# ---- format version 2: dense code streams in the file, block layout in memory ----------

def _naive_stream(codes, bits):
    """The dense stream written out bit by bit: code i at stream bits [i*b, (i+1)*b)."""
    stream = [(int(v) >> j) & 1 for v in codes.reshape(-1) for j in range(bits)]
    stream += [0] * (-len(stream) % 8)
    return [sum(stream[8 * i + j] << j for j in range(8)) for i in range(len(stream) // 8)]


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
def test_dense_stream_roundtrip(bits):
    gen = torch.Generator().manual_seed(10 + bits)
    for n, k in [(1, 1), (3, 7), (17, 65), (2, 64), (5, 31)]:
        codes = torch.randint(0, 2 ** bits, (n, k), dtype=torch.uint8, generator=gen)
        stream = packing.pack_dense(codes, bits)
        assert stream.dtype == torch.uint8 and stream.dim() == 1
        assert stream.numel() == -(-n * k * bits // 8) == packing.dense_bytes(n * k, bits)
        assert stream.tolist() == _naive_stream(codes, bits), (n, k)
        assert torch.equal(packing.unpack_dense(stream, bits, n, k), codes), (n, k)
        # the block layout rebuilt at load time is exactly pack_codes'
        assert torch.equal(packing.pack_codes_u8(codes, bits), packing.pack_codes(codes, bits))
    conv = torch.randint(0, 2 ** bits, (6, 3, 5), dtype=torch.uint8, generator=gen)  # row-major
    assert torch.equal(packing.pack_dense(conv, bits), packing.pack_dense(conv.reshape(6, 15), bits))
    assert torch.equal(packing.pack_codes_u8(conv, bits), packing.pack_codes(conv, bits))


def test_dense_stream_three_bit_order_and_errors():
    # code i at stream bits 3i..3i+2, lowest bit first; stream bit j = byte j // 8, bit j % 8
    codes = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 0]], dtype=torch.uint8)
    assert packing.pack_dense(codes, 3).tolist() == [
        1 | 2 << 3 | (3 << 6) & 0xFF,            # codes 0, 1 and the low 2 bits of code 2
        3 >> 2 | 4 << 1 | 5 << 4 | (6 << 7) & 0xFF,  # high bit of 2, codes 3, 4, low bit of 5
        6 >> 1 | 7 << 2 | 0 << 5]                # high 2 bits of code 5, codes 6, 7
    assert packing.pack_dense(torch.zeros(0, 4, dtype=torch.uint8), 3).numel() == 0
    stream = packing.pack_dense(torch.full((3, 7), 5, dtype=torch.uint8), 3)  # 63 bits: 8 bytes
    with pytest.raises(ValueError, match="has 7 bytes, expected 8 for 3x7 codes of 3 bits"):
        packing.unpack_dense(stream[:7], 3, 3, 7)
    with pytest.raises(ValueError, match="has 8 bytes, expected 9 for 3x8 codes"):
        packing.unpack_dense(stream, 3, 3, 8)
    with pytest.raises(ValueError, match="1-D torch.uint8"):
        packing.unpack_dense(stream.to(torch.int16), 3, 3, 7)
    with pytest.raises(ValueError, match="1-D torch.uint8"):
        packing.unpack_dense(stream.reshape(2, 4), 3, 3, 7)
    bad = stream.clone()
    bad[-1] |= 0x80  # the one padding bit after 63 bits of codes
    with pytest.raises(ValueError, match="non-zero padding bits"):
        packing.unpack_dense(bad, 3, 3, 7)
    with pytest.raises(ValueError, match="out of range"):
        packing.pack_dense(torch.tensor([8], dtype=torch.uint8), 3)
    with pytest.raises(TypeError, match="uint8"):
        packing.pack_dense(torch.tensor([1]), 3)
    with pytest.raises(ValueError, match="bits"):
        packing.pack_dense(codes, 9)


def test_dense_stream_is_fast():
    """Files hold millions of weights: both directions are vectorized (10M codes well under 1 s)."""
    import time

    codes = torch.randint(0, 8, (10_000, 1_000), dtype=torch.uint8)
    t0 = time.perf_counter()
    stream = packing.pack_dense(codes, 3)
    back = packing.unpack_dense(stream, 3, 10_000, 1_000)
    elapsed = time.perf_counter() - t0
    assert torch.equal(back, codes)
    assert elapsed < 3.0, elapsed  # about 0.3 s on one core; generous for loaded CI machines


def _tensor_ranges(path):
    """{tensor name: (start, end)} byte ranges of a safetensors file's data."""
    import json

    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    return {k: (8 + n + v["data_offsets"][0], 8 + n + v["data_offsets"][1])
            for k, v in header.items() if k != "__metadata__"}


def test_v2_file_stores_dense_streams_and_roundtrips(packed_conformer, tmp_path):
    from safetensors import safe_open

    model, x, _, y, path, sizes = packed_conformer
    assert fileformat.FORMAT_VERSION == 2 and read_packed_metadata(path)["format_version"] == 2
    layers = read_packed_metadata(path)["layers"]
    assert {rec["kind"] for rec in layers} == {"linear", "conv1d", "dense"}
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        assert not any(k.endswith(".packed") for k in keys)
        code_bytes = 0
        for rec in layers:
            n, k = rec["shape"][0], 1
            for s in rec["shape"][1:]:
                k *= s
            stream = f.get_tensor(f"q.{rec['name']}.codes")
            assert stream.dtype == torch.uint8 and stream.numel() == -(-n * k * rec["bits"] // 8)
            code_bytes += stream.numel()
    alpha_bytes = sum(4 * rec["shape"][0] for rec in layers)
    assert sizes["quantized_packed_bytes"] == code_bytes + alpha_bytes
    fresh = conformer()
    load_packed(fresh, path)
    with torch.no_grad():
        assert torch.equal(fresh.encode(x, None), y)
    a, b = model.state_dict(), fresh.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # block layout rebuilt
    # a v2 file written from a model loaded from a v2 file is the same file
    again = save_packed(fresh, tmp_path / "again.dsp", metadata={"recipe": "test", "note": "ü"},
                        blobs={"hparams.yaml": "d_model: 144\n", "tokenizer.model": bytes(range(256)),
                               "empty": b""}, config=DenseShiftConfig(bits=3))
    assert again["file_bytes"] == sizes["file_bytes"]


def test_tampered_code_stream_and_version_3_are_refused(packed_conformer, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    _, _, _, _, path, _ = packed_conformer
    ranges = _tensor_ranges(path)
    name = next(k for k in sorted(ranges) if k.endswith(".codes"))
    start, end = ranges[name]
    mid = (start + end) // 2
    bad = _rewrite(path, tmp_path / "tampered.dsp",
                   lambda d: d[:mid] + bytes([d[mid] ^ 0x04]) + d[mid + 1:])
    with pytest.raises(PackedFileError, match="integrity check failed") as err:
        load_packed(conformer(), bad)
    assert str(bad) in str(err.value)
    # a file that claims version 3 (otherwise intact) is refused before anything else
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["format_version"] = "3"
    v3 = tmp_path / "v3.dsp"
    save_file(tensors, str(v3), metadata=meta)
    for read in (lambda p: load_packed(conformer(), p), read_packed_metadata):
        with pytest.raises(PackedFileError, match="format version '3' is not supported") as err:
            read(v3)
        assert str(v3) in str(err.value)


def _v1_fixture():
    import importlib.util

    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "make_v1_fixture.py")
    spec = importlib.util.spec_from_file_location("make_v1_fixture", here)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_version1_fixture_still_loads(tmp_path):
    """tests/data/v1_linear_conv.dsp was written by the version-1 code (block layout in the
    file); it loads as before and reproduces the output recorded when it was made."""
    import json

    fx = _v1_fixture()
    meta = read_packed_metadata(fx.FIXTURE)
    assert meta["format_version"] == 1
    assert [rec["bits"] for rec in meta["layers"]] == list(fx.BITS)
    expected = json.load(open(fx.EXPECTED))
    want = torch.tensor(expected["output"]).reshape(expected["shape"])
    x = fx.fixed_input()
    model = fx.architecture()
    info = load_packed(model, fx.FIXTURE)
    assert info.metadata == {"fixture": "v1_linear_conv"}
    assert [type(m) for m in model] == [PackedLinear, nn.ReLU, PackedLinear, PackedConv1d]
    assert model[3].mode == "unfold" and {m.path for m in (model[0], model[2], model[3])} == {"exact"}
    with torch.no_grad():
        y = model(x)
        # pure-PyTorch reference from the decoded weights
        ws = [packing.decode_packed(m.packed, m.alpha, m.bits, m.weight_shape)
              for m in (model[0], model[2], model[3])]
        h = torch.relu(nn.functional.linear(x, ws[0], model[0].bias))
        h = nn.functional.linear(h, ws[1], model[2].bias)
        ref = nn.functional.conv1d(h, ws[2], model[3].bias, padding=1)
    torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ref, want, rtol=1e-5, atol=1e-6)
    # re-saved, it becomes a version-2 file with the same weights and output
    sizes = save_packed(model, tmp_path / "v2.dsp")
    assert read_packed_metadata(tmp_path / "v2.dsp")["format_version"] == 2
    assert sizes["file_bytes"] < os.path.getsize(fx.FIXTURE)
    again = fx.architecture()
    load_packed(again, tmp_path / "v2.dsp")
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with torch.no_grad():
        assert torch.equal(again(x), y)

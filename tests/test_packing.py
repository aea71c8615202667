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

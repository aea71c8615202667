"""Tiled kernels (int8 and exact paths), the tiled layout, the fused conformer layer and
the standalone C++ driver: every path this CPU runs against its reference."""
import copy
import os
import shutil
import subprocess

import pytest
import torch

from denseshift_speech import DenseShiftConfig, kernels, pack_, quantize_
from denseshift_speech.kernels import codes, layout, reference
from denseshift_speech.packed import set_path_, unfuse_

NATIVE = kernels.native_available()
ISAS = kernels.tiled_paths() if NATIVE else []
CSRC = os.path.join(os.path.dirname(kernels.__file__), "csrc")
needs_native = pytest.mark.skipif(not NATIVE, reason="native kernel not built")


def make(n, k, bits, gen):
    c = torch.randint(0, 2 ** bits, (n, k), dtype=torch.uint8, generator=gen)
    packed = layout.pack_codes(c, bits)
    alpha = torch.rand(n, generator=gen) + 0.25
    bias = torch.randn(n, generator=gen)
    tiles, sums = kernels.repack(packed, bits=bits, in_features=k)
    return c, packed, tiles, sums, alpha, bias


@needs_native
def test_layout_constants_agree_between_cpp_and_python():
    c = kernels._C
    assert c.BLOCK == layout.BLOCK
    assert (c.TILE_LANES, c.TILE_GROUP_K, c.TILE_GROUP_BYTES, c.TILE_QUAD, c.TILE_MAX_BITS, c.INT8_MAX_K,
            c.TILE_HEADER_BYTES) == \
        (layout.TILE_LANES, layout.TILE_GROUP_K, layout.TILE_GROUP_BYTES, layout.TILE_QUAD,
         layout.TILE_MAX_BITS, layout.INT8_MAX_K, layout.TILE_HEADER_BYTES)


@needs_native
@pytest.mark.parametrize("bits", [2, 3, 4])
@pytest.mark.parametrize("n,k", [(1, 1), (15, 7), (17, 65), (33, 144), (144, 1024)])
def test_repack_matches_python_layout_and_round_trips(bits, n, k):
    gen = torch.Generator().manual_seed(n * k + bits)
    c, packed, tiles, sums, _, _ = make(n, k, bits, gen)
    t_ref, s_ref = layout.repack(packed, bits, k)
    assert torch.equal(tiles, t_ref) and torch.equal(sums, s_ref)
    assert torch.equal(layout.untile_codes(tiles, n, k), c)
    lo, hi = layout.int8_parts(bits)
    assert int((lo.abs().max())) <= 64 and int(hi.abs().max()) <= 64
    assert torch.equal(lo + hi, codes.decode(torch.arange(2 ** bits, dtype=torch.uint8), bits,
                                             torch.float64).long())


@needs_native
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("bits", [2, 3, 4])
@pytest.mark.parametrize("m", [0, 1, 3, 8, 17])
def test_int8_path_is_bit_equal_to_reference(isa, bits, m):
    gen = torch.Generator().manual_seed(100 * bits + m)
    n, k = 37, 150
    _, _, tiles, sums, alpha, bias = make(n, k, bits, gen)
    x = torch.randn(m, k, generator=gen) * torch.rand(m, 1, generator=gen) * 3
    if m >= 3:
        x[1] = 0.0  # an all-zero row: output = bias
    y = kernels.linear_tiled(x, tiles, sums, alpha, bias, bits=bits, in_features=k, path="int8", isa=isa)
    ref = reference.linear_tiled(x, tiles, sums, alpha, bias, bits, k, "int8")
    assert torch.equal(y, ref)
    if m >= 3:
        assert torch.equal(y[1], bias)


@needs_native
@pytest.mark.parametrize("isa", ISAS)
def test_int8_error_bound_and_nonfinite_rows(isa):
    """|int8 - exact| <= 0.5 * xscale * alpha * sum|w| (+ float rounding); rows holding
    inf/NaN take the exact path (IEEE results) instead of a meaningless scale."""
    gen = torch.Generator().manual_seed(7)
    n, k, bits = 50, 300, 3
    c, _, tiles, sums, alpha, bias = make(n, k, bits, gen)
    x = torch.randn(9, k, generator=gen)
    x[4, 10] = float("inf")
    x[6, 3] = float("nan")
    y8 = kernels.linear_tiled(x, tiles, sums, alpha, bias, bits=bits, in_features=k, path="int8", isa=isa)
    ye = kernels.linear_tiled(x, tiles, sums, alpha, bias, bits=bits, in_features=k, path="exact", isa=isa)
    assert torch.equal(y8[4].isinf() | y8[4].isnan(), ye[4].isinf() | ye[4].isnan())
    assert bool(y8[6].isnan().all())
    fin = [i for i in range(9) if i not in (4, 6)]
    w = codes.decode(c, bits, torch.float32).abs().sum(1)
    xscale = x[fin].abs().amax(1) / 127
    bound = 0.5 * xscale[:, None] * alpha[None] * w[None] + 1e-4 * ye[fin].abs() + 1e-5
    assert bool(((y8[fin] - ye[fin]).abs() <= bound).all())
    assert float((y8[fin] - ye[fin]).abs().max()) > 0  # it really is quantized


@needs_native
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("bits", [2, 3, 4])
def test_exact_path_is_ieee_on_edge_values(isa, bits):
    from test_kernel import assert_close_ieee, ref_linear64
    gen = torch.Generator().manual_seed(bits)
    n, k = 19, 70
    c, _, tiles, sums, alpha, bias = make(n, k, bits, gen)
    x = torch.randn(6, k, generator=gen)
    specials = torch.tensor([0.0, -0.0, 1e-40, -1e-40, 3e38, -3e38, float("inf"), float("-inf"),
                             float("nan")])
    x[1, :9] = specials
    x[3, 20:29] = specials.flip(0)
    x[5] = 1e-42
    y = kernels.linear_tiled(x, tiles, sums, alpha, bias, bits=bits, in_features=k, path="exact", isa=isa)
    ref, scale = ref_linear64(x, c, alpha, bias, bits)
    assert_close_ieee(y, ref, scale, f"exact {isa} {bits}-bit")


@needs_native
@pytest.mark.parametrize("path", ["int8", "exact"])
def test_batch_shapes_and_noncontiguous_input(path):
    gen = torch.Generator().manual_seed(3)
    n, k, bits = 20, 40, 3
    _, _, tiles, sums, alpha, bias = make(n, k, bits, gen)
    x = torch.randn(3, 5, 2 * k, generator=gen)[..., ::2]  # non-contiguous (stride 2)
    y = kernels.linear_tiled(x, tiles, sums, alpha, bias, bits=bits, in_features=k, path=path)
    ref = reference.linear_tiled(x.contiguous(), tiles, sums, alpha, bias, bits, k, path)
    assert y.shape == (3, 5, n)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)


@needs_native
def test_argument_checks_name_what_is_wrong():
    gen = torch.Generator().manual_seed(0)
    _, packed, tiles, sums, alpha, bias = make(16, 32, 3, gen)
    op = torch.ops.denseshift.linear_tiled
    x = torch.randn(2, 32)
    with pytest.raises(RuntimeError, match="must end with in_features=32"):
        op(torch.randn(2, 31), tiles, sums, alpha, bias, 3, 32, "int8", "auto")
    with pytest.raises(RuntimeError, match="tiles must be 1-D uint8"):
        op(torch.randn(2, 40), tiles, sums, alpha, bias, 3, 40, "int8", "auto")  # disagrees with the rows
    with pytest.raises(RuntimeError, match="row_sums must be 1-D int32"):
        op(x, tiles, sums.float(), alpha, bias, 3, 32, "int8", "auto")
    with pytest.raises(RuntimeError, match="bits must be 2, 3 or 4"):
        op(x, tiles, sums, alpha, bias, 5, 32, "int8", "auto")
    with pytest.raises(RuntimeError, match="x must be a float32"):
        op(x.double(), tiles, sums, alpha, bias, 3, 32, "int8", "auto")
    with pytest.raises(RuntimeError, match="unknown path 'fast'"):
        op(x, tiles, sums, alpha, bias, 3, 32, "fast", "auto")
    with pytest.raises(RuntimeError, match="isa 'neon' is not available"):
        op(x, tiles, sums, alpha, bias, 3, 32, "int8", "neon")
    # in_features that disagrees with the rows but pads to the same size (30 vs 32 codes)
    with pytest.raises(RuntimeError, match="repacked for 16 rows of 32 codes at 3 bits, but the call says "
                                           "16 rows \\(alpha\\) of in_features=30"):
        op(torch.randn(2, 30), tiles, sums, alpha, bias, 3, 30, "int8", "auto")
    with pytest.raises(RuntimeError, match="at 3 bits, but the call says .* at 2 bits"):
        op(x, tiles, sums, alpha, bias, 2, 32, "int8", "auto")
    with pytest.raises(RuntimeError, match="tile header"):
        op(x, torch.zeros_like(tiles), sums, alpha, bias, 3, 32, "int8", "auto")
    with pytest.raises(RuntimeError, match="repack: in_features=32 disagrees with the packed rows: 32 codes "
                                           "of 3 bits take 24 bytes a row, the rows have 12"):
        torch.ops.denseshift.repack(packed[:, :12], 3, 32)


@pytest.mark.parametrize("repack", [torch.ops.denseshift.repack, reference.repack], ids=["native", "reference"])
def test_repack_refuses_rows_packed_for_more_inputs(repack):
    """Rows of 48 codes pad to the width of rows of 47; the code at index 47 tells them apart."""
    c = make(16, 48, 3, torch.Generator().manual_seed(1))[0]
    c[:, 47] = 0  # the pad code
    c[3, 47] = 6
    with pytest.raises((RuntimeError, ValueError), match="in_features=47 disagrees with the packed rows: they hold "
                       "at least 48 codes a row \\(row 3 has a code other than the pad code 0 at index 47\\)"):
        repack(layout.pack_codes(c, 3), 3, 47)
    c[3, 47] = 0  # now these are the rows of 47 codes
    tiles, sums = repack(layout.pack_codes(c, 3), 3, 47)
    assert layout.read_tiled_header(tiles) == (16, 47, 3)


def test_reference_linear_tiled_checks_x():
    _, _, tiles, sums, alpha, bias = make(16, 32, 3, torch.Generator().manual_seed(2))
    with pytest.raises(ValueError, match="x must end with in_features=32 features, got shape \\[2, 16\\]"):
        reference.linear_tiled(torch.randn(2, 16), tiles, sums, alpha, bias, 3, 32, "int8")  # not 1 row of 32


@needs_native
def test_opcheck_tiled_ops():
    gen = torch.Generator().manual_seed(0)
    _, packed, tiles, sums, alpha, bias = make(24, 40, 3, gen)
    torch.library.opcheck(torch.ops.denseshift.repack.default, (packed, 3, 40))
    for path in ("int8", "exact"):
        torch.library.opcheck(torch.ops.denseshift.linear_tiled.default,
                              (torch.randn(5, 40), tiles, sums, alpha, bias, 3, 40, path, "auto"))


# ---------------------------------------------------------------------------- threads --

@pytest.fixture
def split_everything():
    """Every stage split over as many threads as it has parts (the work-size threshold off,
    so small test shapes take the multi-thread code); threshold and threads restored after."""
    before, threads = kernels.parallel_min_ns(0), torch.get_num_threads()
    yield
    kernels.parallel_min_ns(before)
    torch.set_num_threads(threads)


def on_threads(fn, counts=(1, 2, 3)):
    out = []
    for n in counts:
        torch.set_num_threads(n)
        out.append(fn())
    return out


@needs_native
def test_parallel_min_ns_is_settable_and_restored():
    before = kernels.parallel_min_ns()
    assert before >= 0
    assert kernels.parallel_min_ns(123.0) == before
    assert kernels.parallel_min_ns() == 123.0
    kernels.parallel_min_ns(before)
    with pytest.raises(RuntimeError, match=">= 0"):
        kernels._C.parallel_min_ns(float("nan"))


@needs_native
@pytest.mark.parametrize("path", ["int8", "exact"])
@pytest.mark.parametrize("bits", [2, 3, 4])
@pytest.mark.parametrize("n,k,m", [(1, 7, 5), (37, 150, 1), (37, 150, 2), (37, 150, 17), (144, 144, 100),
                                   (300, 1000, 3)])
def test_linear_tiled_is_bit_identical_on_any_thread_count(split_everything, path, bits, n, k, m):
    """Output tiles split over 1, 2, 3 threads (odd tile counts: uneven ranges); non-finite
    rows of the int8 path take the exact path tile range by tile range."""
    gen = torch.Generator().manual_seed(n + k + m + bits)
    _, _, tiles, sums, alpha, bias = make(n, k, bits, gen)
    x = torch.randn(m, k, generator=gen) * 2
    if m >= 3:
        x[1, k // 2] = float("inf")
        x[2] = 0.0
    ys = on_threads(lambda: kernels.linear_tiled(x, tiles, sums, alpha, bias, bits=bits, in_features=k,
                                                 path=path))
    for y in ys[1:]:
        assert torch.equal(y, ys[0])
    if path == "int8":
        assert torch.equal(ys[0], reference.linear_tiled(x, tiles, sums, alpha, bias, bits, k, "int8"))


# ---------------------------------------------------------------- fused conformer layer --

def small_conformer(layers=2, d=48, kernel_size=7):
    from speechbrain.lobes.models.transformer.TransformerASR import TransformerASR
    torch.manual_seed(0)
    return TransformerASR(input_size=20, tgt_vocab=16, d_model=d, nhead=4, num_encoder_layers=layers,
                          num_decoder_layers=0, d_ffn=96, encoder_module="conformer",
                          attention_type="RelPosMHAXL", normalize_before=True, causal=False,
                          kernel_size=kernel_size, dropout=0.0).eval()


@pytest.fixture(scope="module")
def packed_small():
    model = small_conformer()
    quantize_(model, DenseShiftConfig(bits=3, init="from_float", keep_first=False, keep_last=False))
    pack_(model, path="exact")
    return model


@needs_native
def test_pack_fuses_every_conformer_layer(packed_small):
    from denseshift_speech.packed.fused import FusedConformerLayer
    assert all(isinstance(layer, FusedConformerLayer) for layer in packed_small.encoder.layers)
    keys = set(packed_small.state_dict())
    assert not any("_ds_fused" in key for key in keys)


@needs_native
@pytest.mark.parametrize("path", ["exact", "int8"])
def test_fused_layer_equals_unfused(packed_small, path):
    model = copy.deepcopy(packed_small)
    set_path_(model, path)
    x = torch.randn(2, 23, 20)
    lengths = torch.tensor([1.0, 0.7])
    with torch.no_grad():
        fused = model.encode(x, None), model.encode(x, lengths)
        unfuse_(model)
        if path == "int8":  # unfused, the attention in-projection is a decoded float weight
            return
        plain = model.encode(x, None), model.encode(x, lengths)
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@needs_native
def test_fused_int8_close_to_exact(packed_small):
    model = copy.deepcopy(packed_small)
    x = torch.randn(1, 30, 20)
    with torch.no_grad():
        exact = model.encode(x, None)
        set_path_(model, "int8")
        y8 = model.encode(x, None)
    rel = float((y8 - exact).norm() / exact.norm())
    assert 1e-6 < rel < 0.05


def fused_op_inputs(model, T, valid):
    """Inputs of the first layer's conformer_layer op: two sequences of T frames (the
    second padded after ``valid``), relative positions, the mask, the layer's arguments."""
    x = torch.randn(2, T, 48)
    pos = torch.randn(1, 2 * T - 1, 48)
    kpm = torch.tensor([[False] * T, [False] * valid + [True] * (T - valid)])
    return (x, pos, kpm, *model.encoder.layers[0]._ds_fused.args())


@needs_native
def test_native_fused_op_matches_python_reference(packed_small):
    x, pos, kpm, slots, ints, params, eps, conf = fused_op_inputs(packed_small, 11, 7)
    for stages in ("ffn1", "attention", "conv", "ffn2", "ffn1,attention,conv,ffn2"):
        y = torch.ops.denseshift.conformer_layer(x, pos, kpm, slots, ints, params, eps, conf, stages, "exact",
                                                 "auto")
        ref = reference.conformer_layer(x, pos, kpm, slots, ints, params, eps, conf, stages, "exact", "auto")
        torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-4, msg=stages)
    torch.library.opcheck(torch.ops.denseshift.conformer_layer.default,
                          (x, pos, kpm, slots, ints, params, eps, conf, "ffn1,attention,conv,ffn2", "exact",
                           "auto"))


@needs_native
@pytest.mark.parametrize("path", ["int8", "exact"])
def test_layer_plan_runs_the_op_bit_for_bit(packed_small, path):
    """The plan a packed layer keeps (its op arguments checked and prepared once) gives the
    op's own output, every stage set, both paths; a wrong d_model is refused by name."""
    x, pos, kpm, slots, ints, params, eps, conf = fused_op_inputs(packed_small, 11, 7)
    plan = kernels._C.ConformerLayerPlan(slots, ints, params, eps, conf, path, "auto")
    for stages in ("ffn1", "attention", "conv", "ffn2", "ffn1,attention,conv,ffn2"):
        y = torch.ops.denseshift.conformer_layer(x, pos, kpm, slots, ints, params, eps, conf, stages, path, "auto")
        assert torch.equal(plan.run(x, pos, kpm, stages), y), stages
    with pytest.raises(RuntimeError, match="x has 40 features but the layer's parameters are for d_model 48"):
        plan.run(x[..., :40].contiguous(), pos, kpm, "ffn1")
    with pytest.raises(RuntimeError, match="unknown path 'fast'"):
        kernels._C.ConformerLayerPlan(slots, ints, params, eps, conf, "fast", "auto")


@needs_native
def test_fused_layer_plan_follows_path_changes_and_copies(packed_small):
    """A fused layer's kept plan is rebuilt when the packed modules' path changes, and a
    copy of the model (plans are not copied) computes what the original does."""
    model = copy.deepcopy(packed_small)
    x = torch.randn(1, 12, 20)
    with torch.no_grad():
        exact = model.encode(x, None)
        set_path_(model, "int8")
        int8 = model.encode(x, None)
        twin = copy.deepcopy(model)
        assert torch.equal(twin.encode(x, None), int8)
        set_path_(model, "exact")
        assert torch.equal(model.encode(x, None), exact)
    assert not torch.equal(exact, int8)


@needs_native
def test_fused_streaming_equals_unfused_streaming(packed_small):
    from speechbrain.utils.dynamic_chunk_training import DynChunkTrainConfig
    cfg = DynChunkTrainConfig(chunk_size=4, left_context_size=2)
    model = copy.deepcopy(packed_small)
    x = torch.randn(1, 24, 20)

    def stream(m):
        ctx = m.make_streaming_context(cfg)
        with torch.no_grad():
            return torch.cat([m.encode_streaming(x[:, i:i + 8], ctx) for i in range(0, 24, 8)], dim=1)

    fused = stream(model)
    unfuse_(model)
    torch.testing.assert_close(fused, stream(model), rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------- standalone driver --

@pytest.mark.skipif(shutil.which("g++") is None, reason="no C++ compiler")
def test_standalone_driver_native(tmp_path):
    """The torch-free kernel core, built on its own: every SIMD path against the scalar
    reference (int8 bit-equal, exact and attention within fp32 tolerance)."""
    exe = tmp_path / "driver"
    import glob
    import platform
    arch = "arm" if platform.machine().lower() in ("aarch64", "arm64") else "x86"
    srcs = [os.path.join(CSRC, "tests", "driver.cpp"), os.path.join(CSRC, "core", "tiled_scalar.cpp"),
            os.path.join(CSRC, "core", "cpu_features.cpp")] + \
        sorted(glob.glob(os.path.join(CSRC, "arch", arch, "tiled_*.cpp")) +
               glob.glob(os.path.join(CSRC, "arch", arch, "neon*.cpp")))
    subprocess.run(["g++", "-O2", "-std=c++17", "-ffp-contract=off", "-fno-math-errno", "-fopenmp",
                    "-w", "-I", os.path.join(CSRC, "core"), "-o", str(exe), *srcs], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:]
    assert out.stdout.strip().splitlines()[-1].endswith(" 0 failed")


@needs_native
def test_positional_encoding_is_cached_and_equal(packed_small):
    from speechbrain.nnet.attention import RelPosEncXL
    pe = packed_small.positional_encoding
    assert type(pe).__name__ == "CachedRelPosEncXL"
    fresh = RelPosEncXL(48)
    for t in (5, 9, 5, 30):
        x = torch.zeros(1, t, 48)
        with torch.no_grad():
            assert torch.equal(pe(x), fresh(x))
    assert len(pe._ds_pe_cache) == 3


@needs_native
def test_float_twin_of_a_fused_model_computes_in_float(packed_small):
    from denseshift_speech.packed import PackedConv1d, PackedLinear, decode_to_float_
    from denseshift_speech.packed.fused import FusedConformerLayer
    model = copy.deepcopy(packed_small)
    set_path_(model, "int8")
    x = torch.randn(1, 19, 20)
    with torch.no_grad():
        y8 = model.encode(x, None)
        set_path_(model, "exact")
        exact = model.encode(x, None)
        assert decode_to_float_(model) > 0
        twin = model.encode(x, None)
    assert not any(isinstance(m, (PackedLinear, PackedConv1d, FusedConformerLayer)) for m in model.modules())
    torch.testing.assert_close(twin, exact, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(twin, y8, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------- fused layer: threads and streams --

def causal_conformer():
    from speechbrain.lobes.models.transformer.TransformerASR import TransformerASR
    torch.manual_seed(1)
    model = TransformerASR(input_size=20, tgt_vocab=16, d_model=48, nhead=4, num_encoder_layers=1,
                           num_decoder_layers=0, d_ffn=96, encoder_module="conformer",
                           attention_type="RelPosMHAXL", normalize_before=True, causal=True,
                           kernel_size=5, dropout=0.0).eval()
    for layer in model.encoder.layers:  # the fused op covers the causal convolution, not future masking
        layer.mha_layer.mask_pos_future = False
    quantize_(model, DenseShiftConfig(bits=4, init="from_float", keep_first=False, keep_last=False))
    pack_(model, path="int8")
    return model


def fused_call(layer, x, kpm, path, stages="ffn1,attention,conv,ffn2"):
    slots, ints, params, eps, conf = layer._ds_fused.args()
    t = x.shape[1]
    pos = torch.randn(1, 2 * t - 1, x.shape[2], generator=torch.Generator().manual_seed(t))
    return torch.ops.denseshift.conformer_layer(x, pos, kpm, slots, ints, params, eps, conf, stages, path, "auto")


@needs_native
@pytest.mark.parametrize("path", ["int8", "exact"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("b,t", [(1, 1), (1, 7), (3, 13), (2, 2)])
def test_fused_layer_is_bit_identical_on_any_thread_count(packed_small, split_everything, path, causal, b, t):
    """Linears by rows or output tiles, attention by sequence or head, GLU + depthwise by sequence or channel,
    post-ops by rows: the same bits on 1, 2 and 3 threads, both kernel paths."""
    layer = (causal_conformer() if causal else packed_small).encoder.layers[0]
    gen = torch.Generator().manual_seed(10 * b + t)
    x = torch.randn(b, t, 48, generator=gen)
    kpm = None
    if b == 3:  # padded keys: a shorter sequence, and one padded everywhere
        kpm = torch.zeros(b, t, dtype=torch.bool)
        kpm[1, t // 2:] = True
        kpm[2, :] = True
    ys = on_threads(lambda: fused_call(layer, x, kpm, path))
    for y in ys[1:]:
        assert torch.equal(y, ys[0])
    assert torch.isfinite(ys[0]).all()


@needs_native
def test_fused_layer_rows_split_keeps_bits_and_non_finite_rows(packed_small, split_everything):
    """Enough rows for every thread (the int8 linears then split by rows: each thread
    quantizes its rows and computes all their outputs), one frame holding inf: the same
    bits on 1, 2 and 3 threads, the non-finite rows included (through the exact path)."""
    layer = packed_small.encoder.layers[0]
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 41, 48, generator=gen)
    x[1, 17, 5] = float("inf")
    ys = on_threads(lambda: fused_call(layer, x, None, "int8"))
    for y in ys[1:]:
        torch.testing.assert_close(y, ys[0], rtol=0, atol=0, equal_nan=True)
    assert torch.isfinite(ys[0][0]).all() and not torch.isfinite(ys[0][1]).all()


@needs_native
@pytest.mark.parametrize("path", ["int8", "exact"])
def test_fused_layer_batch_of_streams_equals_one_by_one(packed_small, split_everything, path):
    """Several independent sequences in one call (the linears see all rows at once, so each
    weight tile is decoded once for every stream) give each sequence's own output: bit for
    bit on the int8 path (per-row quantization, integer sums), within fp32 summation order
    on the exact path."""
    layer = packed_small.encoder.layers[1]
    gen = torch.Generator().manual_seed(5)
    for t in (1, 9):
        x = torch.randn(4, t, 48, generator=gen)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            together = fused_call(layer, x, None, path)
            alone = torch.cat([fused_call(layer, x[i:i + 1], None, path) for i in range(4)])
            if path == "int8":
                assert torch.equal(together, alone)
            else:
                torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


@needs_native
def test_opcheck_fused_layer_on_two_threads(packed_small, split_everything):
    x, pos, kpm, slots, ints, params, eps, conf = fused_op_inputs(packed_small, 9, 5)
    torch.set_num_threads(2)
    for path in ("int8", "exact"):
        torch.library.opcheck(torch.ops.denseshift.conformer_layer.default,
                              (x, pos, kpm, slots, ints, params, eps, conf, "ffn1,attention,conv,ffn2", path,
                               "auto"))
        y = torch.ops.denseshift.conformer_layer(x, pos, kpm, slots, ints, params, eps, conf,
                                                 "ffn1,attention,conv,ffn2", path, "auto")
        ref = reference.conformer_layer(x, pos, kpm, slots, ints, params, eps, conf, "ffn1,attention,conv,ffn2",
                                        path, "auto")
        tol = 1e-4 if path == "exact" else 2e-2
        torch.testing.assert_close(y, ref, rtol=tol, atol=tol, msg=path)


@needs_native
@pytest.mark.parametrize("path", ["int8", "exact"])
def test_packed_encoder_is_bit_identical_on_one_and_two_threads(packed_small, path):
    """The whole packed encoder at the default work-size threshold (small calls stay on one
    thread, larger ones split) and with every stage split: the same output."""
    model = copy.deepcopy(packed_small)
    set_path_(model, path)
    x = torch.randn(2, 37, 20)
    lengths = torch.tensor([1.0, 0.6])
    before, threads = kernels.parallel_min_ns(), torch.get_num_threads()
    try:
        outs = []
        for least in (before, 0):
            kernels.parallel_min_ns(least)
            with torch.no_grad():
                outs += on_threads(lambda: model.encode(x, lengths), (1, 2))
    finally:
        kernels.parallel_min_ns(before)
        torch.set_num_threads(threads)
    for y in outs[1:]:
        assert torch.equal(y, outs[0])

"""The file-layout ops (kernels.linear_file_layout, depthwise_conv1d_file_layout): every path
against float64, edge cases, the checks of sizes, opcheck, dispatch."""
import os

import pytest
import torch

from denseshift_speech import kernels
from denseshift_speech.kernels import layout as packing
from denseshift_speech.core import quant
from denseshift_speech.kernels import reference

FLT_MAX = torch.finfo(torch.float32).max


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _paths():
    isas = kernels.supported_isas() if kernels.native_available() else []
    paths = [(isa, m) for isa in isas for m in kernels.METHODS]
    return paths + [("reference", "add")]


PATHS = _paths()


def run_linear(path, x, packed, alpha, bias, bits, k):
    isa, method = path
    if isa == "reference":
        return reference.linear(x, packed, alpha, bias, bits, k)
    return kernels.linear_file_layout(x, packed, alpha, bias, bits=bits, in_features=k, isa=isa, method=method)


def run_dw(path, x, packed, alpha, bias, bits, k, pad, dil):
    isa, method = path
    if isa == "reference":
        return reference.depthwise_conv1d(x, packed, alpha, bias, bits, k, pad, dil)
    return kernels.depthwise_conv1d_file_layout(x, packed, alpha, bias, bits=bits, kernel_size=k,
                                    padding=pad, dilation=dil, isa=isa, method=method)


def ref_linear64(x, codes, alpha, bias, bits):
    """float64 sum of the IEEE float32 products x * (s 2^e), then alpha and bias."""
    q = quant.decode(codes, bits, torch.float64)
    x2 = x.reshape(-1, x.shape[-1]).double()
    prods = (x2[:, None, :] * q[None]).float().double()  # exact, or inf when fp32 overflows
    s = prods.sum(-1)
    y = (alpha * s.float()).double()  # the scale multiply is a float32 op (may overflow)
    if bias is not None:
        y = y + bias.double()
    scale = (x2.abs()[:, None, :] * q.abs()[None]).float().double().sum(-1) * alpha.double().abs()
    return y.reshape(*x.shape[:-1], -1), scale.reshape(*x.shape[:-1], -1)


def assert_close_ieee(y, ref, scale, what):
    y = y.double()
    assert y.shape == ref.shape, what
    assert torch.equal(torch.isnan(y), torch.isnan(ref)), f"{what}: NaN positions differ"
    inf = torch.isinf(ref)
    assert torch.equal(torch.isinf(y), inf), f"{what}: inf positions differ"
    assert torch.equal(y[inf], ref[inf]), f"{what}: inf signs differ"
    fin = torch.isfinite(ref)
    tol = 2e-6 * scale[fin].nan_to_num(posinf=0.0) + 1e-30
    err = (y[fin] - ref[fin]).abs()
    assert bool((err <= tol).all()), f"{what}: max error {float(err.max())} (tol {float(tol.max())})"


def make_layer(n, k, bits, gen, bias=True):
    codes = torch.randint(0, 2 ** bits, (n, k), dtype=torch.uint8, generator=gen)
    alpha = torch.rand(n, generator=gen) + 0.25
    packed, alpha = packing.pack_weight(codes, alpha, bits)
    b = torch.randn(n, generator=gen) if bias else None
    return codes, packed, alpha, b


# ---------------------------------------------------------------------------

def test_native_kernel_is_present_here():
    """CI must not silently run the fallback: the compiled op is loaded on this machine."""
    assert kernels.native_available(), f"native kernel missing: {kernels.NATIVE_ERROR}"
    isas = kernels.supported_isas()
    assert "scalar" in isas
    flags = _cpu_flags()
    if {"avx2", "fma"} <= flags:
        assert "avx2" in isas
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        assert "avx512" in isas
    assert kernels.selected_isa() == isas[0] or os.environ.get("DENSESHIFT_ISA")


def test_isa_forcing_and_errors(monkeypatch):
    assert kernels.native_available()
    monkeypatch.setenv("DENSESHIFT_ISA", "scalar")
    assert kernels.selected_isa() == "scalar"
    assert kernels.selected_isa("avx2" if "avx2" in kernels.supported_isas() else "scalar") != ""
    monkeypatch.delenv("DENSESHIFT_ISA")
    with pytest.raises(RuntimeError, match="unknown isa"):
        kernels.selected_isa("sse9")
    gen = torch.Generator().manual_seed(0)
    _, packed, alpha, bias = make_layer(4, 10, 3, gen)
    with pytest.raises(RuntimeError, match="unknown method"):
        kernels.linear_file_layout(torch.randn(2, 10), packed, alpha, bias, bits=3, in_features=10, method="mul")
    with pytest.raises(RuntimeError, match="the rows have 23 \\(not a whole number of 24-byte blocks\\)"):
        kernels.linear_file_layout(torch.randn(2, 10), packed[:, :-1].contiguous(), alpha, bias, bits=3,
                                   in_features=10)


# What the file-layout ops say to an in_features (kernel_size) that disagrees with rows
# packed for 48 codes of 3 bits (24 bytes a row, which 1..64 codes pad to).
DISAGREE = [
    (47, "=47 disagrees with the packed rows: they hold at least 48 codes a row "
         "\\(row 0 has a code other than the pad code 0 at index 47\\)"),
    (20, "=20 disagrees with the packed rows: they hold at least 48 codes a row"),
    (65, "=65 disagrees with the packed rows: 65 codes of 3 bits take 48 bytes a row, "
         "the rows have 24 \\(1..64 codes\\)"),
]
NATIVE_AND_REFERENCE = {"native": (torch.ops.denseshift.linear, torch.ops.denseshift.depthwise_conv1d),
                        "reference": (reference.linear, reference.depthwise_conv1d)}


def rows_of_48(gen):
    codes = torch.randint(0, 8, (5, 48), dtype=torch.uint8, generator=gen)
    codes[:, 47] = 5  # not the pad code, in every row
    return packing.pack_weight(codes, torch.rand(5, generator=gen) + 0.5, 3)


@pytest.mark.parametrize("impl", NATIVE_AND_REFERENCE)
@pytest.mark.parametrize("k,words", DISAGREE, ids=[str(k) for k, _ in DISAGREE])
def test_file_layout_ops_refuse_a_size_that_disagrees_with_the_rows(impl, k, words):
    linear, dw = NATIVE_AND_REFERENCE[impl]
    packed, alpha = rows_of_48(torch.Generator().manual_seed(k))
    with pytest.raises((RuntimeError, ValueError), match="in_features" + words):
        linear(torch.randn(2, k), packed, alpha, None, 3, k)
    with pytest.raises((RuntimeError, ValueError), match="in_features" + words):
        linear(torch.randn(2, 48), packed, alpha, None, 3, k)  # whatever x is
    with pytest.raises((RuntimeError, ValueError), match="kernel_size" + words):
        dw(torch.randn(1, 5, 80), packed, alpha, None, 3, k, k // 2, 1)


@pytest.mark.parametrize("impl", NATIVE_AND_REFERENCE)
def test_file_layout_ops_check_x_and_take_what_fits(impl):
    linear, dw = NATIVE_AND_REFERENCE[impl]
    gen = torch.Generator().manual_seed(7)
    packed, alpha = rows_of_48(gen)
    with pytest.raises((RuntimeError, ValueError),
                       match="x must end with in_features=48 features, got shape \\[2, 47\\]"):
        linear(torch.randn(2, 47), packed, alpha, None, 3, 48)
    with pytest.raises((RuntimeError, ValueError), match="x must be \\(batch, 5, time\\), got \\[1, 4, 80\\]"):
        dw(torch.randn(1, 4, 80), packed, alpha, None, 3, 48, 0, 1)
    assert linear(torch.randn(2, 48), packed, alpha, None, 3, 48).shape == (2, 5)
    # rows whose codes past 47 are the pad code 0 are the rows of 47 codes, byte for byte
    codes = torch.randint(0, 8, (5, 48), dtype=torch.uint8, generator=gen)
    codes[:, 47] = 0
    p48, _ = packing.pack_weight(codes, alpha, 3)
    assert torch.equal(p48, packing.pack_codes(codes[:, :47].contiguous(), 3))
    assert linear(torch.randn(2, 47), p48, alpha, None, 3, 47).shape == (2, 5)
    assert dw(torch.randn(1, 5, 80), p48, alpha, None, 3, 47, 23, 1).shape == (1, 5, 80)


@pytest.mark.parametrize("bits", range(2, 9))
def test_pad_codes_are_checked_in_every_plane(bits):
    """One set bit past k, in each bit plane in turn: the native op and the reference both
    find it (and name the same index); cleared, the rows are rows of k codes."""
    gen = torch.Generator().manual_seed(bits)
    alpha = torch.ones(3)
    for k in (1, 15, 16, 17, 40, 63, 100):
        kp = packing.padded_length(k)
        codes = torch.zeros(3, kp, dtype=torch.uint8)
        codes[:, :k] = torch.randint(0, 2 ** bits, (3, k), generator=gen)
        for j in sorted({k, (k + kp) // 2, kp - 1}):
            codes[2, j] = 1 << (j % bits)
            packed = packing.pack_codes(codes, bits)
            for linear in (torch.ops.denseshift.linear, reference.linear):
                with pytest.raises((RuntimeError, ValueError),
                                   match=f"in_features={k} disagrees with the packed rows: they hold at least "
                                         f"{j + 1} codes a row \\(row 2 has a code other than the pad code 0 "
                                         f"at index {j}\\)"):
                    linear(torch.randn(1, k), packed, alpha, None, bits, k)
            codes[2, j] = 0
        packed = packing.pack_codes(codes, bits)
        for linear in (torch.ops.denseshift.linear, reference.linear):
            assert linear(torch.randn(1, k), packed, alpha, None, bits, k).shape == (1, 3)


def test_fake_kernels_check_the_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    packed, alpha = rows_of_48(torch.Generator().manual_seed(8))
    with FakeTensorMode() as mode:
        p, a = mode.from_tensor(packed), mode.from_tensor(alpha)
        with pytest.raises(RuntimeError, match="in_features" + DISAGREE[2][1]):
            torch.ops.denseshift.linear(mode.from_tensor(torch.randn(2, 65)), p, a, None, 3, 65)
        with pytest.raises(RuntimeError, match="x must end with in_features=48 features, got shape \\[2, 47\\]"):
            torch.ops.denseshift.linear(mode.from_tensor(torch.randn(2, 47)), p, a, None, 3, 48)
        with pytest.raises(RuntimeError, match="kernel_size" + DISAGREE[2][1]):
            torch.ops.denseshift.depthwise_conv1d(mode.from_tensor(torch.randn(1, 5, 80)), p, a, None,
                                                  3, 65, 32, 1)


SHAPES = [(1, 1, 1), (1, 7, 5), (3, 17, 64), (2, 33, 130), (5, 4, 200), (8, 9, 16),
          (13, 6, 257), (1, 40, 144), (4, 5, 15)]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: "-".join(p))
@pytest.mark.parametrize("bits", [2, 3, 4, 5])
def test_linear_matches_float64(path, bits):
    gen = torch.Generator().manual_seed(bits)
    for m, n, k in SHAPES:
        codes, packed, alpha, bias = make_layer(n, k, bits, gen, bias=(k % 2 == 0))
        x = torch.randn(m, k, generator=gen) * 3
        y = run_linear(path, x, packed, alpha, bias, bits, k)
        ref, scale = ref_linear64(x, codes, alpha, bias, bits)
        assert_close_ieee(y, ref, scale, f"{path} b={bits} {m}x{n}x{k}")


def special_activations(k, bits, gen):
    """Rows of activations full of IEEE edge cases (k >= 8)."""
    emax = 2 ** (bits - 1) - 1
    rows = []
    base = lambda: torch.randn(k, generator=gen)  # noqa: E731
    r = base(); r[::3] = 0.0; r[1::5] = -0.0; rows.append(r)                 # zeros
    r = base(); r[::2] = 1e-40; r[1::4] = -3e-42; r[3] = 1.2e-38; rows.append(r)  # subnormals
    r = base(); r[2] = 3e38; rows.append(r)                                  # overflow
    r = base(); r[1] = -3e38; r[5] = 2.0 ** (127 - emax) * 1.5; rows.append(r)
    r = base(); r[4] = 2.0 ** (128 - emax); rows.append(r)                   # at the edge
    r = base(); r[3] = float("inf"); rows.append(r)
    r = base(); r[0] = float("-inf"); r[7] = float("inf"); rows.append(r)
    r = base(); r[6] = float("nan"); rows.append(r)
    r = torch.zeros(k); rows.append(r)                                       # all zeros
    r = torch.full((k,), -0.0); rows.append(r)
    r = base() * 1e-39; rows.append(r)                                       # all subnormal
    return torch.stack(rows)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: "-".join(p))
@pytest.mark.parametrize("bits", [2, 3, 4])
def test_linear_ieee_edge_cases(path, bits):
    gen = torch.Generator().manual_seed(10 + bits)
    for n, k in [(5, 9), (19, 70), (3, 130)]:
        codes, packed, alpha, bias = make_layer(n, k, bits, gen)
        x = special_activations(k, bits, gen)
        y = run_linear(path, x, packed, alpha, bias, bits, k)
        ref, scale = ref_linear64(x, codes, alpha, bias, bits)
        assert_close_ieee(y, ref, scale, f"{path} b={bits} special {n}x{k}")
        for i in range(x.shape[0]):  # M = 1 with the same rows
            y1 = run_linear(path, x[i:i + 1], packed, alpha, bias, bits, k)
            assert_close_ieee(y1, ref[i:i + 1], scale[i:i + 1], f"{path} b={bits} row {i}")


@pytest.mark.parametrize("path", PATHS, ids=lambda p: "-".join(p))
def test_linear_batch_shapes_and_strides(path):
    gen = torch.Generator().manual_seed(3)
    codes, packed, alpha, bias = make_layer(11, 37, 3, gen)
    empty = run_linear(path, torch.zeros(0, 37), packed, alpha, bias, 3, 37)
    assert empty.shape == (0, 11)
    x3 = torch.randn(2, 5, 37, generator=gen)
    y3 = run_linear(path, x3, packed, alpha, bias, 3, 37)
    ref, scale = ref_linear64(x3, codes, alpha, bias, 3)
    assert_close_ieee(y3, ref, scale, "3-D input")
    big = torch.randn(6, 80, generator=gen)
    xs = big[:, 3:3 + 2 * 37:2]           # non-contiguous columns
    xt = torch.randn(37, 4, generator=gen).t()  # transposed
    for x in (xs, xt):
        assert not x.is_contiguous()
        y = run_linear(path, x, packed, alpha, bias, 3, 37)
        ref, scale = ref_linear64(x, codes, alpha, bias, 3)
        assert_close_ieee(y, ref, scale, "non-contiguous")


def test_threads_give_identical_results():
    gen = torch.Generator().manual_seed(4)
    _, packed, alpha, bias = make_layer(300, 200, 3, gen)
    x = torch.randn(7, 200, generator=gen)
    saved = torch.get_num_threads()
    try:
        outs = {}
        for nt in (1, 2):
            torch.set_num_threads(nt)
            outs[nt] = [kernels.linear_file_layout(x, packed, alpha, bias, bits=3, in_features=200, method=m)
                        for m in kernels.METHODS]
    finally:
        torch.set_num_threads(saved)
    for a, b in zip(outs[1], outs[2]):
        assert torch.equal(a, b)


def ref_dw64(x, codes, alpha, bias, bits, pad, dil):
    q = quant.decode(codes, bits, torch.float64)  # (C, k)
    c, k = q.shape
    xp = torch.nn.functional.pad(x.double(), (pad, pad))
    tout = xp.shape[2] - dil * (k - 1)
    s = torch.zeros(x.shape[0], c, tout, dtype=torch.float64)
    mag = torch.zeros_like(s)
    for j in range(k):
        seg = xp[:, :, j * dil: j * dil + tout]
        s = s + (seg * q[None, :, j, None]).float().double()
        mag = mag + (seg.abs() * q[None, :, j, None].abs()).float().double()
    y = (alpha[None, :, None] * s.float()).double()
    if bias is not None:
        y = y + bias.double()[None, :, None]
    return y, mag * alpha.double().abs()[None, :, None]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: "-".join(p))
@pytest.mark.parametrize("bits", [2, 3, 4])
def test_depthwise_matches_float64(path, bits):
    gen = torch.Generator().manual_seed(20 + bits)
    for (b, c, t, k, pad, dil) in [(1, 3, 25, 31, 15, 1), (2, 5, 40, 31, 30, 1), (1, 4, 7, 3, 1, 2),
                                   (2, 2, 1, 1, 0, 1), (1, 3, 70, 5, 2, 1)]:
        codes, packed, alpha, bias = make_layer(c, k, bits, gen, bias=(c % 2 == 1))
        x = torch.randn(b, c, t, generator=gen)
        if t >= 8:
            x[0, 0, 1] = float("inf")
            x[-1, -1, 2] = 0.0
            x[0, -1, 3] = 1e-41
            x[-1, 0, 5] = float("nan")
            x[0, 1 % c, 6] = 3e38
        y = run_dw(path, x, packed, alpha, bias, bits, k, pad, dil)
        ref, scale = ref_dw64(x, codes, alpha, bias, bits, pad, dil)
        assert_close_ieee(y, ref, scale, f"{path} dw b={bits} {(b, c, t, k, pad, dil)}")
    x = torch.randn(3, 2, 9, generator=gen).transpose(0, 1)  # non-contiguous (2, 3, 9)
    codes, packed, alpha, bias = make_layer(3, 5, bits, gen)
    y = run_dw(path, x, packed, alpha, bias, bits, 5, 2, 1)
    ref, scale = ref_dw64(x, codes, alpha, bias, bits, 2, 1)
    assert_close_ieee(y, ref, scale, "dw non-contiguous")
    assert run_dw(path, torch.zeros(0, 3, 9), packed, alpha, bias, bits, 5, 2, 1).shape == (0, 3, 9)


@pytest.mark.parametrize("method", kernels.METHODS)
def test_opcheck(method):
    gen = torch.Generator().manual_seed(5)
    _, packed, alpha, bias = make_layer(9, 70, 3, gen)
    for x, b in ((torch.randn(4, 70, generator=gen), bias), (torch.randn(2, 3, 70, generator=gen), None)):
        torch.library.opcheck(torch.ops.denseshift.linear.default,
                              (x, packed, alpha, b, 3, 70, "auto", method))
    _, packed, alpha, bias = make_layer(6, 31, 3, gen)
    torch.library.opcheck(torch.ops.denseshift.depthwise_conv1d.default,
                          (torch.randn(2, 6, 20, generator=gen), packed, alpha, bias, 3, 31, 15, 1,
                           "auto", method))


def test_fake_impl_under_compile_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    gen = torch.Generator().manual_seed(6)
    _, packed, alpha, bias = make_layer(9, 70, 4, gen)
    with FakeTensorMode() as mode:
        x = mode.from_tensor(torch.randn(5, 70))
        y = torch.ops.denseshift.linear(x, mode.from_tensor(packed), mode.from_tensor(alpha),
                                        mode.from_tensor(bias), 4, 70)
        assert tuple(y.shape) == (5, 9)


def test_reference_fallback_when_native_missing():
    """Without the compiled module the package warns and registers the reference ops."""
    import subprocess
    import sys

    code = (
        "import sys, warnings\n"
        "sys.modules['denseshift_speech.kernels._C'] = None  # simulate a failed build\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    from denseshift_speech import kernels\n"
        "    from denseshift_speech.kernels import layout as packing\n"
        "assert not kernels.native_available()\n"
        "assert any('native shift kernel' in str(x.message) for x in w), [str(x.message) for x in w]\n"
        "import torch\n"
        "codes = torch.randint(0, 8, (5, 9), dtype=torch.uint8)\n"
        "p, a = packing.pack_weight(codes, torch.ones(5), 3)\n"
        "x = torch.randn(2, 9)\n"
        "y = kernels.linear_file_layout(x, p, a, None, bits=3, in_features=9)\n"
        "from denseshift_speech.core import quant\n"
        "torch.testing.assert_close(y, x @ quant.decode(codes, 3).T)\n"
        "torch.library.opcheck(torch.ops.denseshift.linear.default, (x, p, a, None, 3, 9, 'auto', 'add'))\n"
        "print('ok')\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root,
                         timeout=120)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-2000:]

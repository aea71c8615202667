"""The DenseShift math: value sets, codes, binarizers, surrogate gradients, initializers."""
import math

import pytest
import torch
from torch.nn.utils import parametrize

from denseshift_speech.core import quant
from denseshift_speech.core.nn import DenseShiftWeight, codes_and_scale, latents

ALL_BITS = range(2, 9)


@pytest.mark.parametrize("bits", ALL_BITS)
def test_value_set_is_zero_free_powers_of_two(bits):
    values = quant.value_set(bits, torch.float64)
    E = 2 ** (bits - 1)
    expected = sorted([s * 2.0**e for s in (-1, 1) for e in range(E)])
    assert sorted(values.tolist()) == expected
    assert len(set(values.tolist())) == 2**bits
    assert (values != 0).all()


@pytest.mark.parametrize("bits", ALL_BITS)
def test_encode_decode_round_trip(bits):
    codes = torch.arange(2**bits, dtype=torch.uint8)
    values = quant.decode(codes, bits, torch.float64)
    assert torch.equal(quant.encode(values, bits), codes)
    # sign is the top bit, exponent the low bits
    for c, v in zip(codes.tolist(), values.tolist()):
        assert v == (-1 if c >> (bits - 1) else 1) * 2.0 ** (c & (2 ** (bits - 1) - 1))


@pytest.mark.parametrize("bad", [0.0, 3.0, 0.5, float("nan"), 256.0])
def test_encode_rejects_non_denseshift_values(bad):
    with pytest.raises(ValueError, match="not a 4-bit DenseShift value"):
        quant.encode(torch.tensor([1.0, bad]), 4)


@pytest.mark.parametrize("bits", [1, 9, 3.0, "3", True])
def test_bits_out_of_range_rejected(bits):
    with pytest.raises(ValueError, match="2..8"):
        quant.check_bits(bits)


@pytest.mark.parametrize("bits", ALL_BITS)
def test_every_code_reachable_from_latents(bits):
    codes = torch.arange(2**bits, dtype=torch.uint8)
    sign_latent, thermo = quant.latents_for_codes(codes, bits, margin=1e-3)
    w = quant.sign_scale_weight(sign_latent, thermo)
    assert torch.equal(w, quant.decode(codes, bits))
    assert torch.equal(quant.latent_codes(sign_latent, thermo, bits), codes)


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_quantized_weight_is_alpha_times_power_of_two(bits):
    torch.manual_seed(0)
    layer = torch.nn.Linear(256, 64)
    parametrize.register_parametrization(layer, "weight", DenseShiftWeight(bits=bits))
    w = layer.weight.detach()
    codes, alpha = codes_and_scale(layer, "weight")
    assert torch.equal(w, alpha[:, None] * quant.decode(codes, bits))
    ratio = (w / alpha[:, None]).abs()
    exponent = torch.log2(ratio)
    assert (w != 0).all()
    assert torch.equal(exponent, exponent.round())
    assert exponent.min() >= 0 and exponent.max() <= 2 ** (bits - 1) - 1
    # low-variance random latents reach every code
    assert len(torch.unique(codes)) == 2**bits


def _hand_gradients(sign, thermo, g, alpha):
    """Per-element gradients of L = sum(g * alpha * w), by hand from docs/METHOD.md section 2."""
    grad_sign, grad_t = [], []
    n_t = len(thermo)
    for i in range(len(sign)):
        b = [1.0 if thermo[k][i] > 0 else 0.0 for k in range(n_t)]
        S = []
        for k in range(n_t):
            S.append(b[0] if k == 0 else (S[k - 1] + 1) * b[k])
        e = S[-1]
        s = 1.0 if sign[i] >= 0 else -1.0
        dw = g[i] * alpha
        grad_sign.append(dw * math.sqrt(e + 1))          # d/ds of s*sqrt(e+1)
        de = dw * s * 0.5 / math.sqrt(e + 1)            # d/de of s*sqrt(e+1)
        # dS_k/dT_k = S_{k-1}+1 (S_0 := 0), dS_k/dS_{k-1} = B(T_k)
        upstream = de
        gt = [0.0] * n_t
        for k in reversed(range(n_t)):
            gt[k] = upstream * ((S[k - 1] + 1) if k > 0 else 1.0)
            upstream *= b[k]
        grad_t.append(gt)
    return grad_sign, [[grad_t[i][k] for i in range(len(sign))] for k in range(n_t)]


def test_surrogate_gradient_matches_hand_computation():
    sign = torch.tensor([0.3, -0.2, 0.1, -0.4, 0.5, 0.0], requires_grad=True)
    thermo = torch.tensor([[0.1, -0.1, 0.2, 0.3, -0.2, 0.4],
                           [0.2, 0.3, -0.1, 0.1, 0.1, 0.2],
                           [0.3, 0.2, 0.1, -0.3, 0.2, 0.1]], requires_grad=True)
    g = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0, 0.25])
    alpha = 0.7
    w = quant.sign_scale_weight(sign, thermo)
    # forward is exact: e = run of positive latents ending at T_3
    assert w.tolist() == [8.0, -4.0, 2.0, -1.0, 4.0, 8.0]
    (g * alpha * w).sum().backward()
    gs, gt = _hand_gradients(sign.tolist(), thermo.tolist(), g.tolist(), alpha)
    assert torch.allclose(sign.grad, torch.tensor(gs))
    assert torch.allclose(thermo.grad, torch.tensor(gt))
    # the fused node (what DenseShiftWeight trains with) agrees with the hand computation
    s2, t2 = sign.detach().clone().requires_grad_(), thermo.detach().clone().requires_grad_()
    w2 = quant.fused_weight(s2, t2, torch.zeros(1))
    assert w2.tolist() == w.tolist()
    (g * alpha * w2).sum().backward()
    assert torch.allclose(s2.grad, torch.tensor(gs)) and torch.allclose(t2.grad, torch.tensor(gt))


def test_alpha_and_latents_receive_gradients_through_layer():
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 4)
    parametrize.register_parametrization(layer, "weight", DenseShiftWeight(bits=3))
    x = torch.randn(5, 8)
    layer(x).pow(2).sum().backward()
    sign, thermo, log_alpha = latents(layer, "weight")
    alpha = torch.exp2(log_alpha.detach())
    w_unscaled = layer.weight.detach() / alpha[:, None]
    # dL/dalpha_j = sum_i dL/dW_ji * (s 2^e)_ji with dL/dW = 2 y^T x; alpha = 2^log_alpha
    y = torch.nn.functional.linear(x, layer.weight.detach(), layer.bias.detach())
    dW = 2 * y.t() @ x
    expected = (dW * w_unscaled).sum(1) * alpha * math.log(2)
    assert torch.allclose(log_alpha.grad, expected, rtol=1e-4, atol=1e-5)
    assert sign.grad.abs().sum() > 0 and thermo.grad.abs().sum() > 0


@pytest.mark.parametrize("bits", [2, 3])
def test_tiny_model_overfits_fixed_batch(bits):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    for layer in (model[0], model[2]):
        parametrize.register_parametrization(layer, "weight", DenseShiftWeight(bits=bits))
        # trained through the fused node, the default parametrization
        assert type(layer.weight.grad_fn).__name__ == "_FusedWeightBackward"
    x, target = torch.randn(32, 16), torch.randint(0, 4, (32,))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(300):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0], (losses[0], losses[-1])


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_from_float_init_beats_naive_rounding(bits):
    torch.manual_seed(0)
    w = torch.randn(64, 128) * torch.linspace(0.01, 0.2, 64)[:, None]  # channel scales differ
    layer = torch.nn.Linear(128, 64)
    with torch.no_grad():
        layer.weight.copy_(w)
    parametrize.register_parametrization(layer, "weight", DenseShiftWeight(bits=bits, init="from_float"))
    ours = quant.relative_error(w, layer.weight)
    naive = quant.relative_error(w, quant.naive_pow2_rounding(w, bits))
    print(f"{bits}-bit relative error: from_float {ours:.4f}, naive per-tensor pow2 {naive:.4f}")
    assert ours < naive
    # codes sit a margin away from thresholds: they equal the nearest codes
    codes, alpha = codes_and_scale(layer, "weight")
    assert torch.equal(codes, quant.nearest_codes(w, alpha[:, None], bits))


def test_fit_alpha_minimizes_error_over_scales():
    torch.manual_seed(1)
    w = torch.randn(4, 256)
    alpha = quant.fit_alpha(w, 3)
    def err(a):
        q = quant.decode(quant.nearest_codes(w, a[:, None], 3), 3)
        return ((w - a[:, None] * q) ** 2).sum(1)
    base = err(alpha)
    for f in (0.8, 0.9, 1.1, 1.25):
        assert (base <= err(alpha * f) + 1e-6).all()


def test_pow2_scale_is_power_of_two():
    layer = torch.nn.Linear(32, 8)
    p = DenseShiftWeight(bits=3, pow2_scale=True)
    parametrize.register_parametrization(layer, "weight", p)
    _, alpha = codes_and_scale(layer, "weight")
    assert torch.equal(torch.log2(alpha), torch.log2(alpha).round())


def test_eval_mode_caches_weight_until_latents_change():
    layer = torch.nn.Linear(16, 8)
    parametrize.register_parametrization(layer, "weight", DenseShiftWeight(bits=3))
    layer.eval()
    with torch.no_grad():
        w1 = layer.weight
        assert layer.weight is w1          # computed once, cached
        sign, _, _ = latents(layer, "weight")
        sign.neg_()                        # an optimizer step / load_state_dict changes latents
        w2 = layer.weight
    assert w2 is not w1 and torch.equal(w2, -w1)
    layer.train()
    assert layer.weight is not layer.weight  # training: rebuilt each forward

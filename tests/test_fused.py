"""The fused training parametrization (``quant.fused_weight``) against the op-by-op reference
(``quant.reference_weight``): forward values, gradients, edge cases, old checkpoints."""
import importlib.util
import os

import pytest
import torch
from torch.nn.utils import parametrize

from denseshift_speech import DenseShiftConfig, quantize_
from denseshift_speech.core import quant
from denseshift_speech.core.nn import DenseShiftWeight, latents, set_impl_

HERE = os.path.dirname(os.path.abspath(__file__))


def _fixture_module():
    spec = importlib.util.spec_from_file_location(
        "make_latents_fixture", os.path.join(HERE, "data", "make_latents_fixture.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _latents(shape, bits, per_channel, seed=0):
    """Random latents (some large, some tiny) with exact +0.0 and -0.0 sprinkled in."""
    gen = torch.Generator().manual_seed(seed)
    E = 2 ** (bits - 1)
    sign = torch.randn(shape, generator=gen) * 1e-3
    thermo = torch.randn((E - 1, *shape), generator=gen)
    sign.view(-1)[::5] = 0.0
    sign.view(-1)[1::7] = -0.0
    thermo.view(-1)[::4] = 0.0
    thermo.view(-1)[2::9] = -0.0
    log_alpha = torch.randn(shape[0] if per_channel else 1, generator=gen) * 3 - 6
    return sign, thermo, log_alpha


def _assert_same_grads(grads, grads_ref):
    """The latents' gradients bit for bit; alpha's, a sum over the row, to float rounding
    (the CPU kernel sums in double, in its own order; a row's terms can cancel, so the
    tolerance is relative to the largest gradient)."""
    for name, a, b in zip(("sign", "thermo", "log_alpha"), grads, grads_ref):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        if name == "log_alpha":
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4 * float(b.abs().max()))
        else:
            assert torch.equal(a, b), (name, (a - b).abs().max())


def _run(fn, sign, thermo, log_alpha, pow2, upstream):
    leaves = [t.clone().requires_grad_() for t in (sign, thermo, log_alpha)]
    w = fn(*leaves, pow2)
    grads = torch.autograd.grad(w, leaves, upstream)
    return w.detach(), grads


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("pow2", [False, True])
@pytest.mark.parametrize("shape", [(7, 5), (6, 1, 3), (4, 3, 2, 2)])
def test_fused_equals_reference(bits, per_channel, pow2, shape):
    """Same forward values and the same latent gradients, bit for bit (the fused backward
    rounds every product as the reference's autograd chain does)."""
    sign, thermo, log_alpha = _latents(shape, bits, per_channel, seed=bits)
    upstream = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    w_ref, g_ref = _run(quant.reference_weight, sign, thermo, log_alpha, pow2, upstream)
    w, g = _run(quant.fused_weight, sign, thermo, log_alpha, pow2, upstream)
    assert torch.equal(w, w_ref)
    _assert_same_grads(g, g_ref)


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_fused_equals_reference_through_a_linear_layer(bits):
    """The weight gradient as a layer hands it over (the linear's arrives transposed)."""
    sign, thermo, log_alpha = _latents((144, 96), bits, True, seed=3)
    x, gy = torch.randn(20, 96), torch.randn(20, 144)

    def grads(fn):
        leaves = [t.clone().requires_grad_() for t in (sign, thermo, log_alpha)]
        y = torch.nn.functional.linear(x, fn(*leaves, False))
        return torch.autograd.grad((y * gy).sum(), leaves)

    _assert_same_grads(grads(quant.fused_weight), grads(quant.reference_weight))


@pytest.mark.parametrize("bits", [3, 5])
def test_binarizers_at_exactly_zero(bits):
    """The reference's convention at t == 0: B01(0) = 0 (t > 0), Bpm(0) = Bpm(-0.0) = +1
    (t >= 0); the gradients still flow straight through."""
    E = 2 ** (bits - 1)
    sign = torch.tensor([0.0, -0.0, -1e-3, 0.0])
    thermo = torch.zeros(E - 1, 4)
    thermo[:, 2] = 1.0        # every level on: e = E-1
    thermo[-1, 3] = 0.5       # only the last level on: e = 1
    thermo[0, 3] = -0.0
    expected = torch.tensor([1.0, 1.0, -2.0 ** (E - 1), 2.0])
    w_ref, g_ref = _run(quant.reference_weight, sign, thermo, torch.zeros(1), False,
                        torch.ones(4))
    w, g = _run(quant.fused_weight, sign, thermo, torch.zeros(1), False, torch.ones(4))
    assert torch.equal(w_ref, expected) and torch.equal(w, expected)
    _assert_same_grads(g, g_ref)
    assert (g[0] != 0).all() and (g[1][-1] != 0).all()  # straight through at 0 too


def test_float64_latents():
    sign, thermo, log_alpha = (t.double() for t in _latents((5, 4), 3, True))
    upstream = torch.randn(5, 4, dtype=torch.float64)
    w_ref, g_ref = _run(quant.reference_weight, sign, thermo, log_alpha, False, upstream)
    w, g = _run(quant.fused_weight, sign, thermo, log_alpha, False, upstream)
    assert w.dtype == torch.float64 and torch.equal(w, w_ref)
    assert all(torch.equal(a, b) for a, b in zip(g, g_ref))


@pytest.mark.parametrize("bits", [3, 5])
def test_nan_latent_gives_nan_weight(bits):
    """A diverged latent shows up as a NaN weight, as in the reference (no index error)."""
    sign, thermo, log_alpha = _latents((4, 3), bits, True)
    thermo[1, 2, 1] = float("nan")
    sign[0, 0] = float("nan")
    w = quant.fused_weight(sign, thermo, log_alpha)
    ref = quant.reference_weight(sign, thermo, log_alpha)
    assert torch.isnan(w[2, 1]) and torch.isnan(w[0, 0]) and torch.isnan(ref[2, 1])
    finite = ~torch.isnan(w)
    assert finite.sum() == 10 and torch.equal(w[finite], ref[finite])


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="do not match"):
        quant.fused_weight(torch.zeros(3, 2), torch.zeros(3, 3, 3), torch.zeros(3))
    with pytest.raises(ValueError, match="do not match"):  # 2 levels: not 2**(b-1) - 1
        quant.fused_weight(torch.zeros(3, 2), torch.zeros(2, 3, 2), torch.zeros(3))


def test_fused_saves_less_for_backward_than_reference():
    """What the forward keeps for the backward: a 2-byte index per weight and alpha; the
    reference keeps its per-level intermediates."""
    sign, thermo, log_alpha = (t.requires_grad_() for t in _latents((64, 32), 3, True))

    def saved_bytes(fn):
        seen = {}

        def pack(t):
            seen[t.data_ptr()] = t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            w = fn(sign, thermo, log_alpha)
        seen.pop(w.data_ptr(), None)  # the output itself
        for t in (sign, thermo, log_alpha):  # inputs are held by the module anyway
            seen.pop(t.data_ptr(), None)
        return sum(seen.values())

    fused, ref = saved_bytes(quant.fused_weight), saved_bytes(quant.reference_weight)
    assert fused <= 2 * sign.numel() + 4 * 64
    assert ref > 4 * fused


def test_parametrization_uses_fused_node_and_can_switch():
    layer = torch.nn.Linear(8, 4)
    parametrize.register_parametrization(layer, "weight", DenseShiftWeight(bits=3))
    assert type(layer.weight.grad_fn).__name__ == "_FusedWeightBackward"
    w_fused = layer.weight.detach()
    assert set_impl_(layer, "reference") == 1
    assert type(layer.weight.grad_fn).__name__ != "_FusedWeightBackward"
    assert torch.equal(layer.weight.detach(), w_fused)
    with pytest.raises(ValueError, match="impl"):
        set_impl_(layer, "fast")
    with pytest.raises(ValueError, match="impl"):
        DenseShiftWeight(impl="fast")
    assert "impl" not in str(layer.state_dict().keys())


@pytest.mark.parametrize("bits", [2, 3])
def test_training_with_fused_equals_training_with_reference(bits):
    """Twenty AdamW steps of a small model: the same losses and latents either way, to the
    float rounding of alpha's gradient (a sum the CPU kernel takes in its own order)."""
    def train(impl):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.ReLU(),
                                    torch.nn.Conv1d(4, 6, 3), torch.nn.Flatten(),
                                    torch.nn.Linear(36, 3))
        quantize_(model, DenseShiftConfig(bits=bits, keep_first=False, keep_last=False,
                                          scale="channel", pow2_scale=(bits == 2)))
        set_impl_(model, impl)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        x, y = torch.randn(16, 4, 12), torch.randint(0, 3, (16,))
        losses = []
        for _ in range(20):
            opt.zero_grad()
            h = model[1](model[0](x))                         # (16, 4, 32)
            loss = torch.nn.functional.cross_entropy(model[4](model[3](model[2](h)[..., ::5])), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses, [p.detach().clone() for p in model.parameters()]

    (l_fused, p_fused), (l_ref, p_ref) = train("fused"), train("reference")
    torch.testing.assert_close(l_fused, l_ref, rtol=1e-5, atol=0)
    for a, b in zip(p_fused, p_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert l_fused[-1] < l_fused[0]


def test_old_checkpoint_loads_with_same_weights_and_gradients():
    """tests/data/latents_v1.pt was written by the parametrization before the fused node
    (see tests/data/make_latents_fixture.py).  The state-dict layout is unchanged, so it
    loads strictly; the weights are bit for bit the stored ones, the gradients equal to
    float rounding (a conv's weight gradient, which reaches the latents, is summed in an
    order that follows the thread count: the full suite runs it with another one)."""
    fx = _fixture_module()
    saved = torch.load(fx.FIXTURE, map_location="cpu", weights_only=True)
    model = fx.architecture(seed=123)  # other random latents: loading must replace them all
    assert type(model.layers[0].weight.grad_fn).__name__ == "_FusedWeightBackward"
    model.load_state_dict(saved["state_dict"], strict=True)
    for name, w in saved["weights"].items():  # "layers.<i>.weight"
        assert torch.equal(model.get_submodule(name.rsplit(".", 1)[0]).weight.detach(), w), name
    loss = fx.loss(model)
    assert loss.item() == saved["loss"]
    loss.backward()
    state_params = dict(model.named_parameters())
    for key, g in saved["grads"].items():
        torch.testing.assert_close(state_params[key].grad, g, rtol=1e-5, atol=1e-9, msg=key)


def test_quantize_tags_and_grads_through_fused_path():
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
    quantize_(model, DenseShiftConfig(bits=4, keep_first=False, keep_last=False))
    model(torch.randn(3, 8)).sum().backward()
    for layer in model:
        sign, thermo, log_alpha = latents(layer, "weight")
        assert thermo.shape == (7, *layer.weight.shape)
        assert sign.grad is not None and thermo.grad is not None and log_alpha.grad is not None


# ---- the ops behind it: denseshift::latent_weight[_backward], C++ against reference ----

def _op_args(bits, rows=37, cols=29, per_channel=True, seed=0):
    sign, thermo, log_alpha = _latents((rows, cols), bits, per_channel, seed=seed)
    sign.view(-1)[3] = float("nan")
    value, grads = quant._pattern_tables(thermo.shape[0], torch.float32, "cpu")
    return sign, thermo, torch.exp2(log_alpha), value, grads


@pytest.mark.parametrize("bits", [2, 3, 4])
@pytest.mark.parametrize("per_channel", [True, False])
def test_native_ops_equal_their_reference(bits, per_channel):
    from denseshift_speech import kernels
    if not kernels.NATIVE:
        pytest.skip("the native kernel is not built here (test_kernel checks it is in CI)")
    sign, thermo, alpha, value, grads = _op_args(bits, per_channel=per_channel)
    w, index = torch.ops.denseshift.latent_weight(sign, thermo, alpha, value)
    w_ref, index_ref = kernels.reference.latent_weight(sign, thermo, alpha, value)
    assert index.dtype == torch.int16 and torch.equal(index, index_ref)
    assert torch.equal(w.nan_to_num(7.0), w_ref.nan_to_num(7.0))
    g = torch.randn_like(w)
    out = torch.ops.denseshift.latent_weight_backward(g, index, alpha, grads, value, True, True)
    ref = kernels.reference.latent_weight_backward(g, index, alpha, grads, value, True, True)
    for a, b in zip(out[:2], ref[:2]):
        assert torch.equal(a.nan_to_num(7.0), b.nan_to_num(7.0))
    torch.testing.assert_close(out[2], ref[2], rtol=1e-5, equal_nan=True,
                               atol=1e-4 * float(ref[2].nan_to_num(0.0).abs().max()))
    only_alpha = torch.ops.denseshift.latent_weight_backward(g, index, alpha, grads, value, False, True)
    assert only_alpha[0].numel() == only_alpha[1].numel() == 0
    assert torch.equal(only_alpha[2].nan_to_num(7.0), out[2].nan_to_num(7.0))


def test_native_ops_give_the_same_result_on_any_thread_count():
    sign, thermo, alpha, value, grads = _op_args(3, rows=300, cols=200)
    g = torch.randn(300, 200)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            w, index = torch.ops.denseshift.latent_weight(sign, thermo, alpha, value)
            results.append((w, *torch.ops.denseshift.latent_weight_backward(
                g, index, alpha, grads, value, True, True)))
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*results):
        assert torch.equal(a.nan_to_num(7.0), b.nan_to_num(7.0))


@pytest.mark.parametrize("bits", [2, 4])
def test_opcheck_latent_weight_ops(bits):
    sign, thermo, alpha, value, grads = _op_args(bits, rows=6, cols=5)
    sign.view(-1)[3] = 0.5
    torch.library.opcheck(torch.ops.denseshift.latent_weight.default, (sign, thermo, alpha, value))
    _, index = torch.ops.denseshift.latent_weight(sign, thermo, alpha, value)
    g = torch.randn(6, 5)
    for need in ((True, True), (True, False), (False, True)):
        torch.library.opcheck(torch.ops.denseshift.latent_weight_backward.default,
                              (g, index, alpha, grads, value, *need))


def test_latent_weight_ops_refuse_bad_arguments():
    from denseshift_speech import kernels
    if not kernels.NATIVE:
        pytest.skip("the native kernel is not built here")
    sign, thermo, alpha, value, grads = _op_args(3, rows=4, cols=3)
    with pytest.raises(RuntimeError, match="float32 CPU"):
        torch.ops.denseshift.latent_weight(sign.half(), thermo, alpha, value)
    with pytest.raises(RuntimeError, match="do not match a sign latent"):
        torch.ops.denseshift.latent_weight(sign, thermo[:, :3], alpha, value)
    with pytest.raises(RuntimeError, match="one value per row"):
        torch.ops.denseshift.latent_weight(sign, thermo, alpha[:2], value)
    with pytest.raises(RuntimeError, match="matches no thermometer width"):
        torch.ops.denseshift.latent_weight(sign, thermo, alpha, value[:10])
    _, index = torch.ops.denseshift.latent_weight(sign, thermo, alpha, value)
    with pytest.raises(RuntimeError, match="index must be the int16"):
        torch.ops.denseshift.latent_weight_backward(torch.ones(4, 3), index.int(), alpha, grads,
                                                     value, True, True)

"""Pure-PyTorch reference of every ``denseshift::*`` op (same name, signature, semantics).

File-layout ops (``kernels.linear_file_layout`` / ``depthwise_conv1d_file_layout``):
``linear``: ``y = alpha * (x @ Q^T) + bias`` where ``Q = s * 2**e`` is decoded from the
packed codes (float32, exact) and every product ``x * Q`` is the IEEE float32 product.
``depthwise_conv1d``: the same per channel, a stride-1 depthwise convolution with zero
padding.  ``isa`` and ``method`` are accepted and ignored (one path).  Packed rows that
are not rows of ``in_features`` (``kernel_size``) codes are refused as the kernels refuse
them (:func:`.layout.unpack_codes`).  Then the tiled ops (``repack``, ``linear_tiled``,
``conformer_layer``) and the training ops.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import codes, layout


def _decoded(packed, bits, k, name):
    return codes.decode(layout.unpack_codes(packed, bits, k, name), bits, torch.float32)


def x_features_error(x, in_features) -> str:
    """The kernels' words when x does not end with ``in_features`` (the linears' check)."""
    return f"x must end with in_features={in_features} features, got shape {list(x.shape)}"


def _check_x(x, in_features):
    if x.dim() < 1 or x.shape[-1] != in_features:
        raise ValueError(x_features_error(x, in_features))


def linear(x, packed, alpha, bias, bits, in_features, isa="auto", method="add"):
    q = _decoded(packed, bits, in_features, "in_features")
    _check_x(x, in_features)
    y = F.linear(x, q) * alpha
    if bias is not None:
        y = y + bias
    return y


def depthwise_conv1d(x, packed, alpha, bias, bits, kernel_size, padding, dilation,
                     isa="auto", method="add"):
    q = _decoded(packed, bits, kernel_size, "kernel_size").unsqueeze(1)
    if x.dim() != 3 or x.shape[1] != packed.shape[0]:
        raise ValueError(f"x must be (batch, {packed.shape[0]}, time), got {list(x.shape)}")
    y = F.conv1d(x, q, None, 1, padding, dilation, groups=x.shape[1]) * alpha.reshape(1, -1, 1)
    if bias is not None:
        y = y + bias.reshape(1, -1, 1)
    return y


# --------------------------------------------------------------------------- tiled ops --
def repack(packed, bits, in_features):
    return layout.repack(packed, bits, in_features)


def quantize_rows(x2):
    """Per-row symmetric int8 quantization of (M, K) float32 rows, as the kernels do it.

    Returns (q int64 in [-127, 127], xscale float32 (M,), finite bool (M,)); rows that are
    all zero or hold inf/NaN get q = 0 and xscale = 0.
    """
    finite = torch.isfinite(x2).all(-1)
    amax = x2.abs().amax(-1) if x2.shape[-1] else x2.new_zeros(x2.shape[0])
    ok = finite & (amax > 0)
    safe = torch.where(ok, amax, torch.ones_like(amax))
    inv = torch.full_like(safe, 127.0).div(safe)  # (not 127.0 / t: that is a reciprocal-multiply)
    q = torch.round(x2 * inv[:, None]).clamp(-127, 127)
    q = torch.where(ok[:, None], q, torch.zeros_like(q)).to(torch.int64)
    xscale = torch.where(ok, amax.div(127.0), torch.zeros_like(amax))
    return q, xscale, finite


def linear_tiled(x, tiles, row_sums, alpha, bias, bits, in_features, path="int8", isa="auto"):
    """``path='exact'``: IEEE products, fp32 sums (order differs from the kernels, so
    results agree within summation tolerance).  ``path='int8'``: bit-equal to the kernels:
    ``float(q @ W^T) * (xscale * alpha) + bias``, rows holding inf/NaN take the exact path.
    """
    n = alpha.shape[0]
    _check_x(x, in_features)
    packed_bits = layout.read_tiled_header(tiles)[2]
    if packed_bits != bits:
        raise ValueError(f"the tiles were repacked at {packed_bits} bits, not {bits}")
    codes_ = layout.untile_codes(tiles, n, in_features)
    x2 = x.reshape(-1, in_features).float()
    wf = codes.decode(codes_, bits, torch.float32)
    exact = F.linear(x2, wf) * alpha
    if bias is not None:
        exact = exact + bias
    if path == "exact":
        return exact.reshape(*x.shape[:-1], n)
    if path != "int8":
        raise ValueError(f"unknown path {path!r} (expected int8 or exact)")
    q, xscale, finite = quantize_rows(x2)
    lo, hi = layout.int8_parts(bits)
    wi = (lo + hi)[codes_.long()]
    acc = q @ wi.t()
    y = acc.float() * (xscale[:, None] * alpha[None, :])
    if bias is not None:
        y = y + bias
    y = torch.where(finite[:, None], y, exact)
    return y.reshape(*x.shape[:-1], n)


def _slot_linear(slots, slot_ints, s, x, path, isa):
    tiles, sums, alpha, bias, weight = slots[5 * s:5 * s + 5]
    if weight is not None:
        return F.linear(x, weight, bias)
    return linear_tiled(x, tiles, sums, alpha, bias, slot_ints[2 * s], slot_ints[2 * s + 1], path, isa)


def conformer_layer(x, pos_embs, key_padding_mask, slots, slot_ints, params, eps, conf, stages,
                    path="int8", isa="auto"):
    """One SpeechBrain conformer layer (RelPosMHAXL), as kernels/csrc/torch/ops_fused.cpp."""
    heads, kernel, padding, dilation = conf
    lin = lambda s, v: _slot_linear(slots, slot_ints, s, v, path, isa)  # noqa: E731
    norm = lambda n, v: F.layer_norm(v, v.shape[-1:], params[2 * n], params[2 * n + 1], eps[n])  # noqa: E731

    def ffn(first, n, v):
        return lin(first + 1, F.silu(lin(first, norm(n, v))))

    b, t, c = x.shape
    d = c // heads
    kpm = key_padding_mask
    if "ffn1" in stages:
        x = x + 0.5 * ffn(0, 0, x)
    if "attention" in stages:
        h = norm(1, x)
        q, k, v = lin(2, h).view(b, t, heads, 3 * d).chunk(3, dim=-1)
        pk = lin(3, pos_embs).view(1, -1, heads, d)
        scale = 1 / c ** 0.5
        qu = (q + params[12].view(1, 1, heads, d)).transpose(1, 2)
        qv = (q + params[13].view(1, 1, heads, d)).transpose(1, 2)
        ac = torch.matmul(qu * scale, k.permute(0, 2, 3, 1))
        bd = torch.matmul(qv * scale, pk.permute(0, 2, 3, 1))
        p = bd.shape[3]
        bd = F.pad(bd, (1, 0)).view(b, heads, -1, t)[:, :, 1:].reshape(b, heads, t, p)[..., :p // 2 + 1]
        score = ac + bd
        if kpm is not None:
            score = score.masked_fill(kpm.view(b, 1, 1, t), float("-inf"))
        score = F.softmax(score, dim=-1)
        if kpm is not None:
            score = score.masked_fill(kpm.view(b, 1, 1, t), 0.0)
        o = torch.matmul(score, v.transpose(1, 2)).transpose(1, 2).reshape(b, t, c)
        x = x + lin(4, o)
    if "conv" in stages:
        g = F.glu(lin(5, norm(2, x)), dim=-1).transpose(1, 2)
        w = params[14].t().unsqueeze(1)  # (C, 1, k)
        h = F.conv1d(g, w, params[15], padding=padding, dilation=dilation, groups=c).transpose(1, 2)
        h = h[:, :t]
        h = lin(6, F.silu(norm(3, h)))
        if kpm is not None:
            h = h.masked_fill(kpm.unsqueeze(-1), 0.0)
        x = x + h
    if "ffn2" in stages:
        x = norm(5, x + 0.5 * ffn(7, 4, x))
    return x


# ------------------------------------------------------------------------ training ops --
def latent_weight(sign_latent, thermo, alpha, value):
    """``(alpha * s 2**e, index)`` of 2-4-bit latents: the table index of each value
    (``positive * 2**levels + sum_k 2**k B01(T_k)``, the table's last entry where a latent is
    NaN; int16) and the weight (``alpha`` per row of dim 0, or one value)."""
    levels, shape, n = thermo.shape[0], sign_latent.shape, sign_latent.numel()
    place = (2.0 ** torch.arange(levels, dtype=sign_latent.dtype, device=sign_latent.device))
    # In float arithmetic, which measured faster here than comparisons producing bools:
    # B01(t) = 1 iff t > 0 is ceil(clamp(t, 0, 1)); positive (s >= 0) is
    # floor(clamp(s, -1, 0)) + 1; both keep a NaN, and a NaN index reads the NaN entry.
    on = thermo.reshape(levels, n).clamp(0, 1).ceil_()
    positive = sign_latent.reshape(1, n).clamp(-1, 0).floor_().add_(1)
    index = torch.addmm(positive, place.reshape(1, -1), on, beta=2 ** levels)
    index = index.nan_to_num_(nan=value.numel() - 1).to(torch.int32).reshape(n)
    w = _per_row(alpha, shape) * value.index_select(0, index).reshape(shape)
    return w, index.to(torch.int16).reshape(shape)


def latent_weight_backward(grad, index, alpha, grads, value, need_latents, need_alpha):
    """``(dL/dsign, dL/dthermo, sum_row dL/dw s 2**e)`` from the index ``latent_weight``
    returned: ``ga = grad alpha``; ``dsign = ga sqrt(e+1)``; ``dT_k = grads[k] (ga /
    sqrt(e+1))``; the last is alpha's gradient before the factor ``alpha ln 2`` (per row, or
    one sum).  Gradients not asked for are empty."""
    shape, n, levels = grad.shape, grad.numel(), grads.shape[0] - 1
    idx = index.reshape(n).to(torch.int32)
    empty = grad.new_empty((0,))
    g_sign = g_thermo = g_alpha = empty
    if need_latents:
        ga = (grad * _per_row(alpha, shape)).reshape(n)
        picked = grads.index_select(1, idx)
        sq = picked[0]
        g_sign = (ga * sq).reshape(shape)
        g_thermo = (picked[1:] * (ga / sq)).reshape(levels, *shape)
    if need_alpha:
        rows = alpha.shape[0]
        g_alpha = (grad * value.index_select(0, idx).reshape(shape)).reshape(rows, -1).sum(1)
    return g_sign, g_thermo, g_alpha


def _per_row(alpha, shape):
    return alpha.reshape(-1, *([1] * (len(shape) - 1)))

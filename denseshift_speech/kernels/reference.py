"""Pure-PyTorch reference of every ``denseshift::*`` op (same name, signature, semantics).

File-layout ops (``kernels.linear_file_layout`` / ``depthwise_conv1d_file_layout``):
``linear``: ``y = alpha * (x @ Q^T) + bias`` where ``Q = s * 2**e`` is decoded from the
packed codes (float32, exact) and every product ``x * Q`` is the IEEE float32 product.
``depthwise_conv1d``: the same per channel, a stride-1 depthwise convolution with zero
padding.  ``isa`` and ``method`` are accepted and ignored (one path).  Packed rows that
are not rows of ``in_features`` (``kernel_size``) codes are refused as the kernels refuse
them (:func:`.layout.unpack_codes`).  Then the tiled ops (``repack``, ``linear_tiled``,
``conformer_layer``, ``xvector``) and the training ops.
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


# denseshift::xvector: a program of records, one int each: the kind in the low XV_KIND_BITS
# bits, then up to XV_FIELDS fields of XV_FIELD_BITS bits (xv_record; the fields of each
# kind: kernels/csrc/torch/ops_xvector.cpp); the F.pad modes a CONV record's code names
XV_KIND_BITS, XV_FIELD_BITS, XV_FIELDS = 4, 10, 6
XV_CONV, XV_LEAKY, XV_NORM, XV_POOL, XV_LINEAR, XV_LOG_SOFTMAX, XV_EMIT = range(7)
XV_PAD_MODES = ("constant", "reflect", "replicate")


def xv_record(kind: int, *fields: int) -> int:
    """One program record (fields past those given are 0)."""
    if len(fields) > XV_FIELDS or not 0 <= kind < 1 << XV_KIND_BITS:
        raise ValueError(f"a record is a kind and at most {XV_FIELDS} fields, got {kind}, {fields}")
    out = kind
    for i, f in enumerate(fields):
        if not 0 <= f < 1 << XV_FIELD_BITS:
            raise ValueError(f"record field {f} out of range 0..{(1 << XV_FIELD_BITS) - 1}")
        out |= int(f) << (XV_KIND_BITS + i * XV_FIELD_BITS)
    if out >= 1 << 63:
        raise ValueError("the last record field must stay below 512 (int64)")
    return out


def _records(program):
    """[kind, field 0, ..., field 5] of every record."""
    if not len(program):
        raise ValueError("the program is empty")
    mask = (1 << XV_FIELD_BITS) - 1
    return [[int(r) & ((1 << XV_KIND_BITS) - 1)]
            + [(int(r) >> (XV_KIND_BITS + i * XV_FIELD_BITS)) & mask for i in range(XV_FIELDS)]
            for r in program]


def xvector_shapes(slots, features, program):
    """(embedding width, output width) of ``xvector`` on ``features`` input features."""
    c, emit = int(features), 0
    for kind, a, *_ in _records(program):
        if kind in (XV_CONV, XV_LINEAR):
            weight, alpha = slots[5 * a + 4], slots[5 * a + 2]
            c = int(weight.shape[0] if weight is not None else alpha.shape[0])
        elif kind == XV_POOL:
            c = 2 * c
        elif kind == XV_EMIT:
            emit = c
    return emit, c


def xvector(x, mean_noise, slots, slot_ints, params, floats, program, path="int8", isa="auto"):
    """A SpeechBrain x-vector network as kernels/csrc/torch/ops_xvector.cpp runs it, each
    step as the SpeechBrain module computes it (frames kept channel-major, as there), so
    that on the int8 path the result is the module path's bit for bit.  Packed conv slots
    hold tap-major codes (in_features index = tap * C_in + channel)."""
    h = x.float()      # (B, T, C) while frames, then (B, C)
    frames, emit = True, None
    for kind, a, b, c, d, e, _ in _records(program):
        if kind == XV_CONV:
            tiles, sums, alpha, bias, weight = slots[5 * a:5 * a + 5]
            xt = h.transpose(1, 2)
            if d:
                xt = F.pad(xt, (d, d), mode=XV_PAD_MODES[e])
            if weight is not None:
                h = F.conv1d(xt, weight, bias, 1, 0, c).transpose(1, 2)
            else:
                tout = xt.shape[2] - c * (b - 1)
                if tout < 1:
                    raise ValueError(f"{xt.shape[2]} padded frames are fewer than the kernel's "
                                     f"span {c * (b - 1) + 1}")
                taps = torch.stack([xt[:, :, j * c:j * c + tout] for j in range(b)], 1)
                rows = taps.permute(0, 3, 1, 2).reshape(xt.shape[0], tout, -1)  # tap-major
                y = linear_tiled(rows, tiles, sums, alpha, bias, slot_ints[2 * a],
                                 slot_ints[2 * a + 1], path, isa)
                h = y.transpose(1, 2).contiguous().transpose(1, 2)
        elif kind == XV_LEAKY:
            h = F.leaky_relu(h, floats[a])
        elif kind == XV_NORM:
            mean, var, weight, bias = params[4 * a:4 * a + 4]
            v = h.transpose(1, 2) if frames else h.unsqueeze(2)
            v = F.batch_norm(v, mean, var, weight, bias, False, 0.0, floats[b])
            h = v.transpose(1, 2) if frames else v.squeeze(2)
        elif kind == XV_POOL:
            if not frames:
                raise ValueError("a second pooling")
            mean = h.mean(dim=1)
            if mean_noise is not None:
                mean = mean + mean_noise.reshape(mean.shape)
            h = torch.cat((mean, h.std(dim=1) + floats[a]), dim=1)
            frames = False
        elif kind == XV_LINEAR:
            tiles, sums, alpha, bias, weight = slots[5 * a:5 * a + 5]
            if weight is not None:
                h = F.linear(h.unsqueeze(1), weight, bias).squeeze(1)
            else:
                h = linear_tiled(h, tiles, sums, alpha, bias, slot_ints[2 * a],
                                 slot_ints[2 * a + 1], path, isa)
        elif kind == XV_LOG_SOFTMAX:
            h = F.log_softmax(h, dim=-1)
        elif kind == XV_EMIT:
            emit = h.clone()
        else:
            raise ValueError(f"unknown record kind {kind}")
    if frames:
        raise ValueError("the program has no pooling")
    if emit is None:
        emit = h.new_empty((h.shape[0], 0))
    return emit, h.contiguous()


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

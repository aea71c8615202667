"""Pure-PyTorch reference of the fused shift ops (same signature and semantics).

``linear``: ``y = alpha * (x @ Q^T) + bias`` where ``Q = s * 2**e`` is decoded from the
packed codes (float32, exact) and every product ``x * Q`` is the IEEE float32 product.
``depthwise_conv1d``: the same per channel, a stride-1 depthwise convolution with zero
padding.  ``isa`` and ``method`` are accepted and ignored (one path).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import codes, layout


def _decoded(packed, bits, k):
    return codes.decode(layout.unpack_codes(packed, bits, k), bits, torch.float32)


def linear(x, packed, alpha, bias, bits, in_features, isa="auto", method="add"):
    q = _decoded(packed, bits, in_features)
    y = F.linear(x, q) * alpha
    if bias is not None:
        y = y + bias
    return y


def depthwise_conv1d(x, packed, alpha, bias, bits, kernel_size, padding, dilation,
                     isa="auto", method="add"):
    q = _decoded(packed, bits, kernel_size).unsqueeze(1)
    y = F.conv1d(x, q, None, 1, padding, dilation, groups=x.shape[1]) * alpha.reshape(1, -1, 1)
    if bias is not None:
        y = y + bias.reshape(1, -1, 1)
    return y


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

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

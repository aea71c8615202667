"""The DenseShift code format: what a b-bit code means (the facts the kernels and the
quantizer share; :mod:`denseshift_speech.core.quant` re-exports them).

A b-bit DenseShift value is ``s * 2**e`` with ``s in {-1, +1}``, ``e in {0, ..., E-1}``,
``E = 2**(b-1)``; its code is ``(neg << (b-1)) | e`` where ``neg = 1`` for ``s = -1``
(the sign is the top bit, the exponent the low ``b-1`` bits).  Codes are stored as
``torch.uint8``; all ``2**b`` codes are valid values.
"""
from __future__ import annotations

import torch

MIN_BITS = 2
MAX_BITS = 8


def check_bits(bits) -> int:
    """Return ``bits`` as int, or raise ValueError naming the accepted range."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(
            f"DenseShift bits must be an integer in {MIN_BITS}..{MAX_BITS}, got {bits!r}"
        )
    return bits


def num_exponents(bits: int) -> int:
    """E = 2**(bits-1): how many exponents a b-bit DenseShift weight can take."""
    return 2 ** (check_bits(bits) - 1)


def value_set(bits: int, dtype=torch.float32) -> torch.Tensor:
    """All 2**bits DenseShift values, indexed by code: ``value_set(b)[code]``."""
    return decode(torch.arange(2 ** check_bits(bits), dtype=torch.uint8), bits, dtype)


def decode(codes: torch.Tensor, bits: int, dtype=torch.float32) -> torch.Tensor:
    """Codes (uint8) -> values ``s * 2**e`` (no scale)."""
    check_bits(bits)
    if codes.dtype != torch.uint8:
        raise TypeError(f"DenseShift codes must be torch.uint8, got {codes.dtype}")
    c = codes.to(torch.int64)
    e = c & ((1 << (bits - 1)) - 1)
    neg = (c >> (bits - 1)) & 1
    if (c >> bits).any():
        raise ValueError(f"code out of range for {bits}-bit DenseShift (max {2**bits - 1})")
    mag = torch.ldexp(torch.ones((), dtype=dtype), e.to(dtype))
    return torch.where(neg.bool(), -mag, mag)

"""b-bit packing of DenseShift codes, laid out for the fused CPU kernel.

Codes follow :mod:`denseshift_speech.kernels.codes`: ``code = (neg << (b-1)) | e`` and the
weight is ``alpha[row] * s * 2**e``.  A weight of shape ``(N, *rest)`` is packed as
``N`` rows of ``K = prod(rest)`` codes (a conv kernel ``(out, in/groups, k)`` flattens
like ``weight.reshape(N, -1)``).

Layout of one row (what the kernel reads, see ``kernels/csrc/common.h``):

* The row is padded to ``Kp = ceil(K / 64) * 64`` codes with code 0 (``+1``; the kernel
  pads the activations with ``+0.0``, which makes the padded products exactly zero).
* It is stored as ``Kp / 64`` blocks of ``8 * b`` bytes: exactly ``b`` bits per code,
  3-bit codes included (no byte per code).
* A block is split into bit planes of widths taken greedily from 8, 4, 2, 1, low bits
  first: b=2 -> [2], b=3 -> [2, 1], b=4 -> [4], b=5 -> [4, 1], b=6 -> [4, 2],
  b=7 -> [4, 2, 1], b=8 -> [8].  Plane p of width f occupies ``8 * f`` consecutive
  bytes.  For b=3 the 2-bit plane holds the exponent and the 1-bit plane the sign.
* Inside a block, code ``t = 16 * c + l`` (chunk ``c`` = 0..3, lane ``l`` = 0..15) is at
  ``byte l + 16 * (c // (8 // f)), bit f * (c % (8 // f))`` for f in {2, 4, 8}; a 1-bit
  plane is a plain little-endian bitmap (``byte t // 8, bit t % 8``).  So one 16-byte
  load, zero-extended to 16 lanes, serves every chunk after a shift, and the sign
  plane of b=3 is a ready-made AVX-512 lane mask.

Bytes per weight: ``b / 8`` (times ``Kp / K`` for the padding) plus one float32 scale
per row.
"""
from __future__ import annotations

import functools

import torch

from .codes import check_bits, decode

BLOCK = 64


def planes(bits: int):
    """[(width, bit shift in the code, byte offset in the block)] for b-bit codes."""
    check_bits(bits)
    out, rem, shift, off = [], bits, 0, 0
    for w in (8, 4, 2, 1):
        if rem >= w:
            out.append((w, shift, off))
            rem -= w
            shift += w
            off += 8 * w
    return out


def padded_length(k: int) -> int:
    return -(-int(k) // BLOCK) * BLOCK


def row_bytes(k: int, bits: int) -> int:
    """Packed bytes of one row of ``k`` codes."""
    return padded_length(k) // BLOCK * 8 * check_bits(bits)


@functools.lru_cache(maxsize=None)
def _positions(width: int):
    """(byte, bit) of code t = 0..63 in a plane of the given width (as int64 tensors)."""
    t = torch.arange(BLOCK)
    if width == 1:
        return t // 8, t % 8
    r = 8 // width
    c, lane = t // 16, t % 16
    return lane + 16 * (c // r), width * (c % r)


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """uint8 codes of shape (N, *rest) -> packed uint8 of shape (N, row_bytes(K, bits))."""
    check_bits(bits)
    if codes.dtype != torch.uint8:
        raise TypeError(f"pack_codes expects torch.uint8 codes, got {codes.dtype}")
    if codes.dim() < 1:
        raise ValueError("pack_codes expects at least one dimension (rows)")
    c = codes.reshape(codes.shape[0], -1).to(torch.int64).cpu()
    if c.numel() and int(c.max()) >= 2 ** bits:
        raise ValueError(f"code out of range for {bits}-bit DenseShift (max {2 ** bits - 1})")
    n, k = c.shape
    kp = padded_length(k)
    nblk = kp // BLOCK
    if kp != k:
        c = torch.cat([c, c.new_zeros(n, kp - k)], dim=1)
    c = c.reshape(n, nblk, BLOCK)
    out = torch.zeros(n, nblk, 8 * bits, dtype=torch.int64)
    for width, shift, off in planes(bits):
        byte, bit = _positions(width)
        field = (c >> shift) & ((1 << width) - 1)
        contrib = field << bit  # (n, nblk, 64); bits of different codes never overlap
        out[:, :, off:off + 8 * width].index_add_(2, byte, contrib)
    return out.reshape(n, nblk * 8 * bits).to(torch.uint8)


def unpack_codes(packed: torch.Tensor, bits: int, k: int) -> torch.Tensor:
    """Inverse of :func:`pack_codes`: packed (N, row_bytes) -> uint8 codes (N, k)."""
    check_bits(bits)
    if packed.dtype != torch.uint8 or packed.dim() != 2:
        raise TypeError(f"unpack_codes expects a 2-D uint8 tensor, got {packed.dtype} {tuple(packed.shape)}")
    if packed.shape[1] != row_bytes(k, bits):
        raise ValueError(f"packed rows have {packed.shape[1]} bytes, expected {row_bytes(k, bits)} "
                         f"for {k} codes of {bits} bits")
    n = packed.shape[0]
    nblk = padded_length(k) // BLOCK
    p = packed.reshape(n, nblk, 8 * bits).to(torch.int64)
    code = torch.zeros(n, nblk, BLOCK, dtype=torch.int64)
    for width, shift, off in planes(bits):
        byte, bit = _positions(width)
        field = (p[:, :, off + byte] >> bit) & ((1 << width) - 1)
        code |= field << shift
    return code.reshape(n, nblk * BLOCK)[:, :k].to(torch.uint8)


def pack_weight(codes: torch.Tensor, alpha: torch.Tensor, bits: int):
    """(codes shaped like the weight, alpha (N,) or (1,)) -> (packed, alpha (N,) float32)."""
    n = codes.shape[0]
    alpha = alpha.detach().float().reshape(-1).cpu()
    if alpha.numel() == 1 and n != 1:
        alpha = alpha.expand(n)
    if alpha.numel() != n:
        raise ValueError(f"alpha has {alpha.numel()} entries for {n} rows")
    return pack_codes(codes, bits), alpha.contiguous().clone()


def decode_packed(packed: torch.Tensor, alpha: torch.Tensor, bits: int, shape) -> torch.Tensor:
    """Dense float32 weight ``alpha * s * 2**e`` of the given shape from packed codes."""
    shape = tuple(int(s) for s in shape)
    k = 1
    for s in shape[1:]:
        k *= s
    q = decode(unpack_codes(packed, bits, k), bits, torch.float32)
    return (alpha.reshape(-1, 1).float() * q).reshape(shape)

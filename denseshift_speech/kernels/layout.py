"""b-bit packing of DenseShift codes, laid out for the fused CPU kernel.

Codes follow :mod:`denseshift_speech.kernels.codes`: ``code = (neg << (b-1)) | e`` and the
weight is ``alpha[row] * s * 2**e``.  A weight of shape ``(N, *rest)`` is packed as
``N`` rows of ``K = prod(rest)`` codes (a conv kernel ``(out, in/groups, k)`` flattens
like ``weight.reshape(N, -1)``).

Layout of one row (what the kernel reads, see ``kernels/csrc/core/common.h``):

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


def row_width_error(width: int, bits: int, k: int, name: str = "k") -> str | None:
    """Why packed rows of ``width`` bytes are not rows of ``k`` codes of ``bits`` bits (the
    message; ``name`` is k's argument name), or None when the width fits."""
    want = row_bytes(k, bits)
    if width == want:
        return None
    block = 8 * bits
    if width == 0:
        held = "0 codes"
    elif width % block:
        held = f"not a whole number of {block}-byte blocks"
    else:
        held = f"{width // block * BLOCK - BLOCK + 1}..{width // block * BLOCK} codes"
    return (f"{name}={k} disagrees with the packed rows: {k} codes of {bits} bits take {want} "
            f"bytes a row, the rows have {width} ({held})")


def unpack_codes(packed: torch.Tensor, bits: int, k: int, name: str = "k") -> torch.Tensor:
    """Inverse of :func:`pack_codes`: packed (N, row_bytes) -> uint8 codes (N, k).

    ValueError when the rows are not rows of ``k`` codes: another width, or a code past
    ``k`` other than the pad code 0 (rows packed for more codes that pad to the same
    width).  ``name`` is k's argument name in the message; the kernels refuse the same
    rows with the same words (``check_rows``, kernels/csrc/torch/ops_file_layout.cpp).
    """
    check_bits(bits)
    if packed.dtype != torch.uint8 or packed.dim() != 2:
        raise TypeError(f"unpack_codes expects a 2-D uint8 tensor, got {packed.dtype} {tuple(packed.shape)}")
    wrong = row_width_error(packed.shape[1], bits, k, name)
    if wrong:
        raise ValueError(wrong)
    n = packed.shape[0]
    nblk = padded_length(k) // BLOCK
    p = packed.reshape(n, nblk, 8 * bits).to(torch.int64)
    code = torch.zeros(n, nblk, BLOCK, dtype=torch.int64)
    for width, shift, off in planes(bits):
        byte, bit = _positions(width)
        field = (p[:, :, off + byte] >> bit) & ((1 << width) - 1)
        code |= field << shift
    code = code.reshape(n, nblk * BLOCK)
    past = code[:, k:] != 0
    if bool(past.any()):
        row = int(past.any(1).nonzero()[0])
        index = k + int(past[row].nonzero()[-1])
        raise ValueError(f"{name}={k} disagrees with the packed rows: they hold at least {index + 1} "
                         f"codes a row (row {row} has a code other than the pad code 0 at index {index})")
    return code[:, :k].to(torch.uint8)


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


# ---------------------------------------------------------------------------
# Tiled run-time layout (what the tiled kernels read; kernels/csrc/core/tiled.h).
# Each packed layer is repacked once at load time (``torch.ops.denseshift.repack``);
# files keep the compact layout above.  Rows form tiles of TILE_LANES output channels
# (N padded to a multiple), K is padded to a multiple of TILE_GROUP_K with code 0, and
# the 64-byte group (tile t, k-group g) sits at byte (t * Kq / 8 + g) * 64 with
#     byte 4 * lane + j = code(16t + lane, 8g + j) | code(16t + lane, 8g + 4 + j) << 4.
# ---------------------------------------------------------------------------
TILE_LANES = 16
TILE_GROUP_K = 8
TILE_GROUP_BYTES = 64
TILE_QUAD = 4
TILE_MAX_BITS = 4
INT8_MAX_K = 1 << 16
# The tensors the ops pass around start with a 64-byte header: b"DSTL", u32 version 1,
# i64 N, i64 K, i32 bits, zeros; so a call with another shape or width is refused.
TILE_HEADER_BYTES = 64
TILE_HEADER_VERSION = 1


def tiled_rows(n: int) -> int:
    return -(-int(n) // TILE_LANES) * TILE_LANES


def tiled_k(k: int) -> int:
    return -(-int(k) // TILE_GROUP_K) * TILE_GROUP_K


def tiled_bytes(n: int, k: int) -> int:
    return tiled_rows(n) // TILE_LANES * tiled_k(k) // TILE_GROUP_K * TILE_GROUP_BYTES


def _tiled_index(n: int, k: int):
    """(byte index, nibble shift) of every code of an (n, k) padded weight, as tensors."""
    rows = torch.arange(n).reshape(-1, 1)
    cols = torch.arange(k).reshape(1, -1)
    kq = k
    byte = ((rows // TILE_LANES) * (kq // TILE_GROUP_K * TILE_GROUP_BYTES)
            + (cols // TILE_GROUP_K) * TILE_GROUP_BYTES + TILE_QUAD * (rows % TILE_LANES)
            + cols % TILE_QUAD)
    shift = torch.where(cols % TILE_GROUP_K >= TILE_QUAD, 4, 0).expand(n, k)
    return byte, shift


def int8_parts(bits: int):
    """(lo, hi) int64 tables code -> int8 weight parts: w = lo + hi, |lo|, |hi| <= 64.

    Only 4-bit codes (+-128) have a non-zero ``hi``: int8 cannot hold +128.
    """
    v = decode(torch.arange(2 ** check_bits(bits), dtype=torch.uint8), bits, torch.float64).long()
    lo = v.sign() * v.abs().clamp(max=64)
    return lo, v - lo


def tile_codes(codes: torch.Tensor):
    """uint8 codes (N, K), bits <= 4 -> (tiles uint8 (tiled_bytes,), padded code matrix)."""
    n, k = codes.shape
    np_, kq = tiled_rows(n), tiled_k(k)
    full = torch.zeros(np_, kq, dtype=torch.int64)  # padding: code 0
    full[:n, :k] = codes.to(torch.int64)
    byte, shift = _tiled_index(np_, kq)
    tiles = torch.zeros(tiled_bytes(n, k), dtype=torch.int64)
    tiles.index_add_(0, byte.reshape(-1), (full << shift).reshape(-1))
    return tiles.to(torch.uint8), full


def tiled_header(n: int, k: int, bits: int) -> torch.Tensor:
    """The 64-byte header of a repacked layer (what it was repacked for)."""
    import struct
    raw = struct.pack("<4sIqqi", b"DSTL", TILE_HEADER_VERSION, int(n), int(k), int(bits))
    return torch.frombuffer(bytearray(raw.ljust(TILE_HEADER_BYTES, b"\0")), dtype=torch.uint8)


def read_tiled_header(tiles: torch.Tensor):
    """(n, k, bits) from a repacked layer's header; ValueError when there is none."""
    import struct
    if tiles.dtype != torch.uint8 or tiles.dim() != 1 or tiles.numel() < TILE_HEADER_BYTES:
        raise ValueError(f"tiles must be a 1-D uint8 tensor with a {TILE_HEADER_BYTES}-byte header")
    magic, version, n, k, bits = struct.unpack_from("<4sIqqi", bytes(tiles[:32].tolist()))
    if magic != b"DSTL" or version != TILE_HEADER_VERSION:
        raise ValueError("tiles do not start with a version-1 tile header (not made by repack?)")
    return n, k, bits


def repack(packed: torch.Tensor, bits: int, k: int):
    """Reference of ``denseshift::repack``: packed file rows -> (header + tiles, row sums)."""
    if check_bits(bits) > TILE_MAX_BITS:
        raise ValueError(f"the tiled layout holds at most {TILE_MAX_BITS}-bit codes, got {bits}")
    tiles, full = tile_codes(unpack_codes(packed, bits, k, "in_features"))
    lo, hi = int8_parts(bits)
    sums = (lo + hi)[full].sum(1).to(torch.int32)
    return torch.cat([tiled_header(packed.shape[0], k, bits), tiles]), sums


def untile_codes(tiles: torch.Tensor, n: int, k: int) -> torch.Tensor:
    """Inverse of :func:`repack`'s layout: uint8 codes (n, k) from header + tiled bytes."""
    hn, hk, _ = read_tiled_header(tiles)
    if (hn, hk) != (n, k):
        raise ValueError(f"the tiles were repacked for {hn} rows of {hk} codes, not {n} x {k}")
    tiles = tiles[TILE_HEADER_BYTES:]
    if tiles.dtype != torch.uint8 or tiles.dim() != 1 or tiles.numel() != tiled_bytes(n, k):
        raise ValueError(f"tiles must be 1-D uint8 of {tiled_bytes(n, k)} bytes for {n}x{k} codes, "
                         f"got {tiles.dtype} {tuple(tiles.shape)}")
    np_, kq = tiled_rows(n), tiled_k(k)
    byte, shift = _tiled_index(np_, kq)
    codes = (tiles.to(torch.int64)[byte] >> shift) & 15
    return codes[:n, :k].to(torch.uint8)


# ---------------------------------------------------------------------------
# Dense code stream (what packed files store since format version 2; see
# packed/fileformat.py).  All N*K codes of a weight, row-major, b bits each, back to
# back with no per-row padding: code i occupies stream bits [i*b, (i+1)*b), its lowest
# bit first, and stream bit j is bit j % 8 of byte j // 8 (little-endian bit order).
# Only the very end is padded, with zero bits, to a whole byte: ceil(N*K*b / 8) bytes.
# Eight codes fill exactly b bytes, so both directions work on groups of eight codes
# (packing: held in one int64, 8 * b <= 56 bits for b <= 7; b = 8 is the codes themselves).
# ---------------------------------------------------------------------------
def dense_bytes(count: int, bits: int) -> int:
    """Bytes of the dense stream of ``count`` codes of ``bits`` bits: ceil(count*bits/8)."""
    return -(-int(count) * check_bits(bits) // 8)


def pack_dense(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """uint8 codes of any shape -> 1-D uint8 dense stream of ``dense_bytes(numel, bits)``."""
    check_bits(bits)
    if not isinstance(codes, torch.Tensor) or codes.dtype != torch.uint8:
        raise TypeError(f"pack_dense expects torch.uint8 codes, got "
                        f"{getattr(codes, 'dtype', type(codes).__name__)}")
    c = codes.detach().reshape(-1).cpu()
    m = c.numel()
    if m and int(c.max()) >= 2 ** bits:
        raise ValueError(f"code out of range for {bits}-bit DenseShift (max {2 ** bits - 1})")
    if bits == 8:
        return c.contiguous().clone()
    groups = -(-m // 8)
    g = torch.zeros(groups * 8, dtype=torch.int64)
    g[:m] = c
    shifts = torch.arange(8, dtype=torch.int64) * bits
    # bits of different codes never overlap, so a sum is an OR
    word = (g.reshape(groups, 8) << shifts).sum(1, keepdim=True)
    out = (word >> (torch.arange(bits, dtype=torch.int64) * 8)) & 0xFF
    return out.to(torch.uint8).reshape(-1)[:dense_bytes(m, bits)].contiguous()


def unpack_dense(buf: torch.Tensor, bits: int, n: int, k: int) -> torch.Tensor:
    """Inverse of :func:`pack_dense`: a dense stream -> uint8 codes of shape (n, k).

    Raises ValueError unless ``buf`` is 1-D uint8 of exactly ``dense_bytes(n*k, bits)``
    bytes whose padding bits (after the last code) are zero.
    """
    check_bits(bits)
    n, k = int(n), int(k)
    if n < 0 or k < 0:
        raise ValueError(f"unpack_dense: negative shape ({n}, {k})")
    if not isinstance(buf, torch.Tensor) or buf.dtype != torch.uint8 or buf.dim() != 1:
        raise ValueError(f"unpack_dense expects a 1-D torch.uint8 stream, got "
                         f"{getattr(buf, 'dtype', type(buf).__name__)} "
                         f"{tuple(getattr(buf, 'shape', ()))}")
    m = n * k
    want = dense_bytes(m, bits)
    if buf.numel() != want:
        raise ValueError(f"dense code stream has {buf.numel()} bytes, expected {want} "
                         f"for {n}x{k} codes of {bits} bits")
    b = buf.cpu()
    if bits == 8:
        return b.reshape(n, k).clone()
    tail = m * bits % 8
    if tail and int(b[-1]) >> tail:
        raise ValueError(f"dense code stream has non-zero padding bits after its {m} codes "
                         f"of {bits} bits")
    # code j of a group of eight starts at bit j*b of the group's b bytes and spans at
    # most two of them: read those two bytes as one int16 and shift
    groups = -(-m // 8)
    flat = torch.zeros(groups * bits, dtype=torch.uint8)
    flat[:want] = b
    p = torch.zeros(groups, bits + 1, dtype=torch.int16)
    p[:, :bits] = flat.reshape(groups, bits)
    out = torch.empty(groups, 8, dtype=torch.uint8)
    mask = (1 << bits) - 1
    for j in range(8):  # positions in a group (not codes): vectorized over all groups
        lo, off = j * bits // 8, j * bits % 8
        v = p[:, lo] if off + bits <= 8 else p[:, lo] | (p[:, lo + 1] << 8)
        out[:, j] = ((v >> off) & mask).to(torch.uint8)
    return out.reshape(-1)[:m].reshape(n, k)


def pack_codes_u8(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Same bytes as :func:`pack_codes`, computed in uint8 with no scatter (about 10x faster;
    ``load_packed`` uses it to rebuild the block layout of a dense stream at load time)."""
    check_bits(bits)
    if codes.dtype != torch.uint8:
        raise TypeError(f"pack_codes_u8 expects torch.uint8 codes, got {codes.dtype}")
    if codes.dim() < 1:
        raise ValueError("pack_codes_u8 expects at least one dimension (rows)")
    c = codes.reshape(codes.shape[0], -1).cpu()
    if c.numel() and int(c.max()) >= 2 ** bits:
        raise ValueError(f"code out of range for {bits}-bit DenseShift (max {2 ** bits - 1})")
    n, k = c.shape
    kp = padded_length(k)
    nblk = kp // BLOCK
    full = torch.zeros(n, kp, dtype=torch.uint8)
    full[:, :k] = c
    full = full.reshape(n, nblk, BLOCK)
    parts = []
    for width, shift, _ in planes(bits):  # planes are consecutive in the block
        f = (full >> shift) & ((1 << width) - 1)
        if width == 1:  # bitmap: code t at byte t // 8, bit t % 8
            f = f.reshape(n, nblk, 8, 8)
            acc = f[..., 0].clone()
            for j in range(1, 8):
                acc |= f[..., j] << j
        else:  # code 16c + l at byte l + 16 (c // r), bit width * (c % r)
            r = 8 // width
            f = f.reshape(n, nblk, 4 // r, r, 16)
            acc = f[:, :, :, 0].clone()
            for j in range(1, r):
                acc |= f[:, :, :, j] << (width * j)
        parts.append(acc.reshape(n, nblk, 8 * width))
    return torch.cat(parts, dim=2).reshape(n, nblk * 8 * bits)

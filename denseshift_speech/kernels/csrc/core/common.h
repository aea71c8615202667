// DenseShift fused shift kernel: shared declarations.
//
// Packed layout (see denseshift_speech/kernels/layout.py for the full description):
// a weight row of K codes is padded to Kp = ceil(K/64)*64 codes (pad code 0) and
// stored as Kp/64 blocks of 8*b bytes.  A block is split into bit planes (greedy
// widths 8,4,2,1: b=2 -> [2], b=3 -> [2,1], b=4 -> [4], b=5 -> [4,1], ...), low bits
// first; plane p (width f, bit offset o) occupies 8*f consecutive bytes.  Inside a
// block, code t = 16*c + l (chunk c = 0..3, lane l = 0..15) sits at
//   f in {2,4,8}: byte l + 16*(c / (8/f)), bit f*(c % (8/f))
//   f == 1:       byte t >> 3,             bit t & 7   (plain little-endian bitmap)
// so one 16-byte load, zero-extended to 16 lanes, serves every chunk of a block after
// a shift, and a 1-bit plane (the sign plane of b=3) is a ready-made AVX-512 lane mask.
#pragma once
#include <cstdint>
#include <cstring>

namespace denseshift {

constexpr int kBlock = 64;  // codes per block

struct Planes {
  int n = 0;
  int width[4] = {0, 0, 0, 0};
  int shift[4] = {0, 0, 0, 0};   // bit offset of the plane inside the code
  int offset[4] = {0, 0, 0, 0};  // byte offset of the plane inside the block
};

inline Planes planes_for(int bits) {
  Planes p;
  int rem = bits, off = 0, sh = 0;
  const int widths[4] = {8, 4, 2, 1};
  for (int w : widths) {
    if (rem >= w) {
      p.width[p.n] = w;
      p.shift[p.n] = sh;
      p.offset[p.n] = off;
      p.n++;
      rem -= w;
      sh += w;
      off += 8 * w;
    }
  }
  return p;
}

// Byte (inside its plane) and bit of code t (0..63) in a plane of width f.
inline void code_position(int f, int t, int& byte, int& bit) {
  if (f == 1) {
    byte = t >> 3;
    bit = t & 7;
  } else {
    const int r = 8 / f, c = t >> 4;
    byte = (t & 15) + 16 * (c / r);
    bit = f * (c % r);
  }
}

// Code t (0..63) of the block starting at `bp`.
inline uint32_t block_code(const uint8_t* bp, const Planes& P, int t) {
  uint32_t code = 0;
  for (int i = 0; i < P.n; ++i) {
    const int f = P.width[i];
    int byte, bit;
    code_position(f, t, byte, bit);
    const uint32_t v = (bp[P.offset[i] + byte] >> bit) & ((1u << f) - 1u);
    code |= v << P.shift[i];
  }
  return code;
}

// The bits of a block (8*bits bytes at `mask`) that hold its codes K % 64 .. 63: the pad
// codes of a row of K codes, all in its last block (none when K is a multiple of 64).  Rows
// packed for K codes have 0 there; a row packed for more codes that pad to the same width
// shows itself by a set bit of (last block & mask).
inline void pad_mask(int64_t K, int bits, uint8_t* mask) {
  const Planes P = planes_for(bits);
  std::memset(mask, 0, size_t(8 * bits));
  const int r = int(K % kBlock);
  for (int i = 0; r > 0 && i < P.n; ++i)
    for (int t = r; t < kBlock; ++t) {
      int byte, bit;
      code_position(P.width[i], t, byte, bit);
      mask[P.offset[i] + byte] |= uint8_t(((1u << P.width[i]) - 1u) << bit);
    }
}

// Integer addend of the shift path: bits(x * s * 2^e) = bits(x) + addend for normal
// results, addend = (e << 23) + (neg << 31) mod 2^32 (adding 2^31 == XOR of the sign).
inline uint32_t code_addend(uint32_t code, int bits) {
  const uint32_t e = code & ((1u << (bits - 1)) - 1u);
  const uint32_t neg = (code >> (bits - 1)) & 1u;
  return (e << 23) + (neg << 31);
}

inline float code_value(uint32_t code, int bits) {
  const uint32_t e = code & ((1u << (bits - 1)) - 1u);
  const uint32_t neg = (code >> (bits - 1)) & 1u;
  float v = 1.0f;
  for (uint32_t i = 0; i < e; ++i) v *= 2.0f;
  return neg ? -v : v;
}

inline uint32_t f2u(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float u2f(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

// x is "safe" for the integer-add path when x * 2^e stays a normal finite float for
// every e in 0..emax: exponent field in [1, 254 - emax].  Everything else (zeros,
// subnormals, values that would overflow, inf, NaN) is masked out of the fast loop
// and added back with an IEEE multiplication (exact same result as x * w).
inline bool shift_safe(float x, int bits) {
  const uint32_t ex = (f2u(x) >> 23) & 0xffu;
  const uint32_t emax = (1u << (bits - 1)) - 1u;
  return ex >= 1u && ex + emax <= 254u;
}

// ---------------------------------------------------------------------------
// Per-ISA kernels
// ---------------------------------------------------------------------------
struct LinArgs {
  const float* x;        // (M, Kp) row-major, padded with +0.0 past K
  const uint32_t* mask;  // (M, Kp) 0xffffffff keep / 0 drop, or nullptr (add path only)
  const uint8_t* w;      // (N, row_bytes)
  int64_t M, N, Kp, row_bytes;
  int bits;
  int last_chunks;       // 16-code chunks of the last block that hold real codes (1..4)
  float* acc;            // (M, N) row-major: raw sums (before alpha and bias)
};

// Computes acc[m, n] for m in [0, M), n in [n0, n1).
using LinKernel = void (*)(const LinArgs&, int64_t n0, int64_t n1);

struct DwArgs {
  const float* x;          // padded, sanitized input row (length >= Tout + (k-1)*dil + 16,
                           // readable but ignored past the end)
  const uint32_t* mask;    // same length, or nullptr (fma path)
  const uint32_t* addend;  // k per-tap addends (add path)
  const float* wval;       // k per-tap values (fma path)
  int64_t k, dil, Tout;
  float* out;              // Tout raw sums
};
using DwKernel = void (*)(const DwArgs&);

// Decodes `rows` packed rows into float weights s * 2^e (no alpha), (rows, Kp) row-major.
using DecodeRows = void (*)(const uint8_t* w, int64_t rows, int64_t row_bytes, int64_t Kp,
                            int bits, float* out);

void decode_rows_scalar(const uint8_t*, int64_t, int64_t, int64_t, int, float*);
void linear_add_scalar(const LinArgs&, int64_t, int64_t);
void linear_fma_scalar(const LinArgs&, int64_t, int64_t);
void dw_add_scalar(const DwArgs&);
void dw_fma_scalar(const DwArgs&);

#if defined(__x86_64__) || defined(_M_X64)
#define DENSESHIFT_X86 1
void decode_rows_avx2(const uint8_t*, int64_t, int64_t, int64_t, int, float*);
void decode_rows_avx512(const uint8_t*, int64_t, int64_t, int64_t, int, float*);
void linear_add_avx2(const LinArgs&, int64_t, int64_t);
void linear_fma_avx2(const LinArgs&, int64_t, int64_t);
void dw_add_avx2(const DwArgs&);
void dw_fma_avx2(const DwArgs&);
void linear_add_avx512(const LinArgs&, int64_t, int64_t);
void linear_fma_avx512(const LinArgs&, int64_t, int64_t);
void dw_add_avx512(const DwArgs&);
void dw_fma_avx512(const DwArgs&);
#endif
// A NEON file-layout kernel (arch/arm/, beside the tiled ones of neon.cpp) would add
// linear_add_neon / ... under __aarch64__ and one entry in pick_linear's dispatch table
// (torch/ops_file_layout.cpp).

}  // namespace denseshift

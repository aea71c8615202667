// AVX-512 (F/BW/VL/DQ) path.  Compiled for every x86-64 build through the target
// pragma (no per-file flags) and only called when the running CPU has AVX-512.
// Headers come before the pragma so no shared inline code is compiled for AVX-512.
#include "common.h"
#if defined(DENSESHIFT_X86)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")

namespace denseshift {
namespace {

// LUT indexed by the low 4 bits of the decode index (vpermd ignores higher bits).
//  b=2: index low bits = code of chunk c (bits 0-1) | next chunk (2-3): table period 4.
//  b=3: index = exponent plane (period 4); the sign comes from the 1-bit plane mask.
//  b=4: index = the 4-bit code.
// add path: entries are integer addends (e << 23) + (neg << 31); fma path: float bits.
template <int B, bool FMA>
inline __m512i make_lut() {
  alignas(64) uint32_t t[16];
  for (int i = 0; i < 16; ++i) {
    uint32_t code = (B == 4) ? uint32_t(i) : uint32_t(i & 3);
    const int bits = (B == 3) ? 3 : B;  // for b=3 code < 4 here: sign bit clear
    t[i] = FMA ? f2u(code_value(code, bits)) : code_addend(code, bits);
  }
  return _mm512_load_si512(t);
}

// Addend (or weight bits) of the 16 codes of chunk c in the block at bp.
template <int B>
inline __m512i dec(const uint8_t* bp, int c, __m512i lut) {
  __m512i idx;
  if constexpr (B == 4) {
    __m512i z = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(bp + 16 * (c >> 1))));
    idx = (c & 1) ? _mm512_srli_epi32(z, 4) : z;
  } else {
    __m512i z = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)bp));
    idx = c ? _mm512_srl_epi32(z, _mm_cvtsi32_si128(2 * c)) : z;
  }
  __m512i v = _mm512_permutexvar_epi32(idx, lut);
  if constexpr (B == 3) {
    uint16_t k;
    std::memcpy(&k, bp + 16 + 2 * c, 2);
    v = _mm512_mask_xor_epi32(v, (__mmask16)k, v, _mm512_set1_epi32(int(0x80000000u)));
  }
  return v;
}

template <int B, bool FMA, bool MASKED, int MT, int NT>
inline void tile(const LinArgs& a, int64_t m0, int64_t n0, __m512i lut) {
  __m512 acc[MT][NT];
  for (int i = 0; i < MT; ++i)
    for (int j = 0; j < NT; ++j) acc[i][j] = _mm512_setzero_ps();
  const int64_t nblk = a.Kp / kBlock;
  const int64_t bb = 8 * B;
  const uint8_t* wr[NT];
  for (int j = 0; j < NT; ++j) wr[j] = a.w + (n0 + j) * a.row_bytes;
  for (int64_t blk = 0; blk < nblk; ++blk) {
    const int nc = blk + 1 == nblk ? a.last_chunks : 4;  // skip all-padding chunks
#pragma GCC unroll 4
    for (int c = 0; c < nc; ++c) {
      __m512i w[NT];
      for (int j = 0; j < NT; ++j) w[j] = dec<B>(wr[j] + blk * bb, c, lut);
      for (int i = 0; i < MT; ++i) {
        const int64_t off = (m0 + i) * a.Kp + blk * kBlock + 16 * c;
        if constexpr (FMA) {
          const __m512 xv = _mm512_loadu_ps(a.x + off);
          for (int j = 0; j < NT; ++j)
            acc[i][j] = _mm512_fmadd_ps(xv, _mm512_castsi512_ps(w[j]), acc[i][j]);
        } else {
          const __m512i xv = _mm512_loadu_si512(a.x + off);
          __m512i mk;
          if constexpr (MASKED) mk = _mm512_loadu_si512(a.mask + off);
          for (int j = 0; j < NT; ++j) {
            __m512i p = _mm512_add_epi32(xv, w[j]);
            if constexpr (MASKED) p = _mm512_and_si512(p, mk);
            acc[i][j] = _mm512_add_ps(acc[i][j], _mm512_castsi512_ps(p));
          }
        }
      }
    }
  }
  for (int i = 0; i < MT; ++i)
    for (int j = 0; j < NT; ++j) a.acc[(m0 + i) * a.N + n0 + j] = _mm512_reduce_add_ps(acc[i][j]);
}

template <int B, bool FMA, bool MASKED>
void run(const LinArgs& a, int64_t n0, int64_t n1) {
  const __m512i lut = make_lut<B, FMA>();
  int64_t m = 0;
  for (; m + 4 <= a.M; m += 4) {
    int64_t n = n0;
    for (; n + 4 <= n1; n += 4) tile<B, FMA, MASKED, 4, 4>(a, m, n, lut);
    for (; n < n1; ++n) tile<B, FMA, MASKED, 4, 1>(a, m, n, lut);
  }
  for (; m < a.M; ++m) {
    int64_t n = n0;
    for (; n + 4 <= n1; n += 4) tile<B, FMA, MASKED, 1, 4>(a, m, n, lut);
    for (; n < n1; ++n) tile<B, FMA, MASKED, 1, 1>(a, m, n, lut);
  }
}

template <int B>
void decode_rows_t(const uint8_t* w, int64_t rows, int64_t row_bytes, int64_t Kp, float* out) {
  const __m512i lut = make_lut<B, true>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < Kp / kBlock; ++b) {
      const uint8_t* bp = w + r * row_bytes + b * 8 * B;
      float* o = out + r * Kp + b * kBlock;
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) _mm512_storeu_si512(o + 16 * c, dec<B>(bp, c, lut));
    }
}

}  // namespace

void decode_rows_avx512(const uint8_t* w, int64_t rows, int64_t row_bytes, int64_t Kp, int bits,
                        float* out) {
  switch (bits) {
    case 2: return decode_rows_t<2>(w, rows, row_bytes, Kp, out);
    case 3: return decode_rows_t<3>(w, rows, row_bytes, Kp, out);
    case 4: return decode_rows_t<4>(w, rows, row_bytes, Kp, out);
    default: return decode_rows_scalar(w, rows, row_bytes, Kp, bits, out);
  }
}

void linear_add_avx512(const LinArgs& a, int64_t n0, int64_t n1) {
  const bool mk = a.mask != nullptr;
  switch (a.bits) {
    case 2: return mk ? run<2, false, true>(a, n0, n1) : run<2, false, false>(a, n0, n1);
    case 3: return mk ? run<3, false, true>(a, n0, n1) : run<3, false, false>(a, n0, n1);
    case 4: return mk ? run<4, false, true>(a, n0, n1) : run<4, false, false>(a, n0, n1);
    default: return linear_add_scalar(a, n0, n1);
  }
}

void linear_fma_avx512(const LinArgs& a, int64_t n0, int64_t n1) {
  switch (a.bits) {
    case 2: return run<2, true, false>(a, n0, n1);
    case 3: return run<3, true, false>(a, n0, n1);
    case 4: return run<4, true, false>(a, n0, n1);
    default: return linear_fma_scalar(a, n0, n1);
  }
}

// Accumulators stay in registers across the taps; x (and the mask) are padded by at
// least 16 readable elements past Tout + (k-1)*dil, so only the final store is masked.
void dw_add_avx512(const DwArgs& a) {
  for (int64_t t = 0; t < a.Tout; t += 16) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t j = 0; j < a.k; ++j) {
      const int64_t o = t + j * a.dil;
      __m512i p = _mm512_add_epi32(_mm512_loadu_si512(a.x + o), _mm512_set1_epi32(int(a.addend[j])));
      p = _mm512_and_si512(p, _mm512_loadu_si512(a.mask + o));
      acc = _mm512_add_ps(acc, _mm512_castsi512_ps(p));
    }
    const int64_t n = a.Tout - t;
    if (n >= 16) _mm512_storeu_ps(a.out + t, acc);
    else _mm512_mask_storeu_ps(a.out + t, (__mmask16)((1u << n) - 1u), acc);
  }
}

void dw_fma_avx512(const DwArgs& a) {
  for (int64_t t = 0; t < a.Tout; t += 16) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t j = 0; j < a.k; ++j)
      acc = _mm512_fmadd_ps(_mm512_loadu_ps(a.x + t + j * a.dil), _mm512_set1_ps(a.wval[j]), acc);
    const int64_t n = a.Tout - t;
    if (n >= 16) _mm512_storeu_ps(a.out + t, acc);
    else _mm512_mask_storeu_ps(a.out + t, (__mmask16)((1u << n) - 1u), acc);
  }
}

}  // namespace denseshift

#pragma GCC pop_options
#endif  // DENSESHIFT_X86

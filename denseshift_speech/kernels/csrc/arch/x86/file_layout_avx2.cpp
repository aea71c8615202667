// AVX2 + FMA path (8 lanes): each 16-code chunk of the layout is two 8-lane halves.
// Compiled for every x86-64 build through the target pragma, called only when the
// running CPU has AVX2 and FMA.  Headers come before the pragma.
#include "common.h"
#if defined(DENSESHIFT_X86)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace denseshift {
namespace {

// 8-entry LUT (vpermd uses the low 3 index bits).  b=2: period 4 over the code;
// b=3 and b=4: exponent only, the sign is applied separately.
template <int B, bool FMA>
inline __m256i make_lut() {
  alignas(32) uint32_t t[8];
  for (int i = 0; i < 8; ++i) {
    const uint32_t code = (B == 2) ? uint32_t(i & 3) : (B == 3 ? uint32_t(i & 3) : uint32_t(i & 7));
    t[i] = FMA ? f2u(code_value(code, B)) : code_addend(code, B);
  }
  return _mm256_load_si256((const __m256i*)t);
}

template <int B>
inline __m256i dec(const uint8_t* bp, int c, int h, __m256i lut) {
  const __m256i sbit = _mm256_set1_epi32(int(0x80000000u));
  if constexpr (B == 4) {
    __m256i z = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(bp + 16 * (c >> 1) + 8 * h)));
    __m256i idx = (c & 1) ? _mm256_srli_epi32(z, 4) : z;
    __m256i v = _mm256_permutevar8x32_epi32(lut, idx);
    return _mm256_xor_si256(v, _mm256_and_si256(_mm256_slli_epi32(idx, 28), sbit));
  } else {
    __m256i z = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(bp + 8 * h)));
    __m256i idx = c ? _mm256_srl_epi32(z, _mm_cvtsi32_si128(2 * c)) : z;
    __m256i v = _mm256_permutevar8x32_epi32(lut, idx);
    if constexpr (B == 3) {
      const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
      const __m256i s = _mm256_set1_epi32(bp[16 + 2 * c + h]);
      const __m256i neg = _mm256_cmpeq_epi32(_mm256_and_si256(s, sel), sel);
      v = _mm256_xor_si256(v, _mm256_and_si256(neg, sbit));
    }
    return v;
  }
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <int B, bool FMA, bool MASKED, int MT, int NT>
inline void tile(const LinArgs& a, int64_t m0, int64_t n0, __m256i lut) {
  __m256 acc[MT][NT];
  for (int i = 0; i < MT; ++i)
    for (int j = 0; j < NT; ++j) acc[i][j] = _mm256_setzero_ps();
  const int64_t nblk = a.Kp / kBlock;
  const int64_t bb = 8 * B;
  const uint8_t* wr[NT];
  for (int j = 0; j < NT; ++j) wr[j] = a.w + (n0 + j) * a.row_bytes;
  for (int64_t blk = 0; blk < nblk; ++blk) {
    const int nch = blk + 1 == nblk ? 2 * a.last_chunks : 8;  // skip all-padding chunks
#pragma GCC unroll 8
    for (int ch = 0; ch < nch; ++ch) {
      const int c = ch >> 1, h = ch & 1;
      __m256i w[NT];
      for (int j = 0; j < NT; ++j) w[j] = dec<B>(wr[j] + blk * bb, c, h, lut);
      for (int i = 0; i < MT; ++i) {
        const int64_t off = (m0 + i) * a.Kp + blk * kBlock + 8 * ch;
        if constexpr (FMA) {
          const __m256 xv = _mm256_loadu_ps(a.x + off);
          for (int j = 0; j < NT; ++j)
            acc[i][j] = _mm256_fmadd_ps(xv, _mm256_castsi256_ps(w[j]), acc[i][j]);
        } else {
          const __m256i xv = _mm256_loadu_si256((const __m256i*)(a.x + off));
          __m256i mk;
          if constexpr (MASKED) mk = _mm256_loadu_si256((const __m256i*)(a.mask + off));
          for (int j = 0; j < NT; ++j) {
            __m256i p = _mm256_add_epi32(xv, w[j]);
            if constexpr (MASKED) p = _mm256_and_si256(p, mk);
            acc[i][j] = _mm256_add_ps(acc[i][j], _mm256_castsi256_ps(p));
          }
        }
      }
    }
  }
  for (int i = 0; i < MT; ++i)
    for (int j = 0; j < NT; ++j) a.acc[(m0 + i) * a.N + n0 + j] = hsum(acc[i][j]);
}

template <int B, bool FMA, bool MASKED>
void run(const LinArgs& a, int64_t n0, int64_t n1) {
  const __m256i lut = make_lut<B, FMA>();
  int64_t m = 0;
  for (; m + 2 <= a.M; m += 2) {
    int64_t n = n0;
    for (; n + 4 <= n1; n += 4) tile<B, FMA, MASKED, 2, 4>(a, m, n, lut);
    for (; n < n1; ++n) tile<B, FMA, MASKED, 2, 1>(a, m, n, lut);
  }
  for (; m < a.M; ++m) {
    int64_t n = n0;
    for (; n + 4 <= n1; n += 4) tile<B, FMA, MASKED, 1, 4>(a, m, n, lut);
    for (; n < n1; ++n) tile<B, FMA, MASKED, 1, 1>(a, m, n, lut);
  }
}

template <int B>
void decode_rows_t(const uint8_t* w, int64_t rows, int64_t row_bytes, int64_t Kp, float* out) {
  const __m256i lut = make_lut<B, true>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < Kp / kBlock; ++b) {
      const uint8_t* bp = w + r * row_bytes + b * 8 * B;
      float* o = out + r * Kp + b * kBlock;
#pragma GCC unroll 8
      for (int ch = 0; ch < 8; ++ch)
        _mm256_storeu_si256((__m256i*)(o + 8 * ch), dec<B>(bp, ch >> 1, ch & 1, lut));
    }
}

}  // namespace

void decode_rows_avx2(const uint8_t* w, int64_t rows, int64_t row_bytes, int64_t Kp, int bits,
                      float* out) {
  switch (bits) {
    case 2: return decode_rows_t<2>(w, rows, row_bytes, Kp, out);
    case 3: return decode_rows_t<3>(w, rows, row_bytes, Kp, out);
    case 4: return decode_rows_t<4>(w, rows, row_bytes, Kp, out);
    default: return decode_rows_scalar(w, rows, row_bytes, Kp, bits, out);
  }
}

void linear_add_avx2(const LinArgs& a, int64_t n0, int64_t n1) {
  const bool mk = a.mask != nullptr;
  switch (a.bits) {
    case 2: return mk ? run<2, false, true>(a, n0, n1) : run<2, false, false>(a, n0, n1);
    case 3: return mk ? run<3, false, true>(a, n0, n1) : run<3, false, false>(a, n0, n1);
    case 4: return mk ? run<4, false, true>(a, n0, n1) : run<4, false, false>(a, n0, n1);
    default: return linear_add_scalar(a, n0, n1);
  }
}

void linear_fma_avx2(const LinArgs& a, int64_t n0, int64_t n1) {
  switch (a.bits) {
    case 2: return run<2, true, false>(a, n0, n1);
    case 3: return run<3, true, false>(a, n0, n1);
    case 4: return run<4, true, false>(a, n0, n1);
    default: return linear_fma_scalar(a, n0, n1);
  }
}

// Accumulators stay in registers across the taps (inputs padded past the end).
void dw_add_avx2(const DwArgs& a) {
  alignas(32) float tmp[8];
  for (int64_t t = 0; t < a.Tout; t += 8) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t j = 0; j < a.k; ++j) {
      const int64_t o = t + j * a.dil;
      __m256i p = _mm256_add_epi32(_mm256_loadu_si256((const __m256i*)(a.x + o)),
                                   _mm256_set1_epi32(int(a.addend[j])));
      p = _mm256_and_si256(p, _mm256_loadu_si256((const __m256i*)(a.mask + o)));
      acc = _mm256_add_ps(acc, _mm256_castsi256_ps(p));
    }
    const int64_t n = a.Tout - t;
    if (n >= 8) {
      _mm256_storeu_ps(a.out + t, acc);
    } else {
      _mm256_store_ps(tmp, acc);
      for (int64_t i = 0; i < n; ++i) a.out[t + i] = tmp[i];
    }
  }
}

void dw_fma_avx2(const DwArgs& a) {
  alignas(32) float tmp[8];
  for (int64_t t = 0; t < a.Tout; t += 8) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t j = 0; j < a.k; ++j)
      acc = _mm256_fmadd_ps(_mm256_loadu_ps(a.x + t + j * a.dil), _mm256_set1_ps(a.wval[j]), acc);
    const int64_t n = a.Tout - t;
    if (n >= 8) {
      _mm256_storeu_ps(a.out + t, acc);
    } else {
      _mm256_store_ps(tmp, acc);
      for (int64_t i = 0; i < n; ++i) a.out[t + i] = tmp[i];
    }
  }
}

}  // namespace denseshift

#pragma GCC pop_options
#endif  // DENSESHIFT_X86

// Tiled kernels, AVX2 + FMA: the fallback for x86 CPUs without AVX-512 (and the int8
// path of AVX-512 CPUs without VNNI).  A 16-lane tile is two ymm halves.  The int8
// path uses vpmaddubsw + vpmaddwd: |w| <= 64 (4-bit is split, see tiled.h) keeps every
// 16-bit pair sum (<= 255 * 64 * 2 = 32640) below saturation, so it stays exact.
#include "tiled.h"
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include <cmath>
#include <cstring>

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace denseshift {
namespace tiled {
namespace {

constexpr int kHalf = 8;

inline __m256i half_mask(int64_t n0, int64_t N) {
  const int64_t r = N - n0;
  alignas(32) int32_t m[8];
  for (int i = 0; i < 8; ++i) m[i] = i < r ? -1 : 0;
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(m));
}

inline void store_f32(const Layer& L, float* y, int64_t n0, __m256 acc) {
  if (n0 >= L.N) return;
  if (n0 + kHalf <= L.N) {
    __m256 v = _mm256_mul_ps(acc, _mm256_loadu_ps(L.alpha + n0));
    if (L.bias) v = _mm256_add_ps(v, _mm256_loadu_ps(L.bias + n0));
    _mm256_storeu_ps(y + n0, v);
    return;
  }
  const __m256i k = half_mask(n0, L.N);
  __m256 v = _mm256_mul_ps(acc, _mm256_maskload_ps(L.alpha + n0, k));
  if (L.bias) v = _mm256_add_ps(v, _mm256_maskload_ps(L.bias + n0, k));
  _mm256_maskstore_ps(y + n0, k, v);
}

// Weights of 8 lanes for one k from their code dwords: vpermps reads 3 index bits, so
// 4-bit codes blend a second table on bit 3.
template <bool WIDE>
inline __m256 decode8(__m256i idx, __m256 lut_lo, __m256 lut_hi) {
  const __m256 lo = _mm256_permutevar8x32_ps(lut_lo, idx);
  if constexpr (!WIDE) return lo;
  const __m256 hi = _mm256_permutevar8x32_ps(lut_hi, idx);
  return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

template <int MT, bool WIDE>
void f32_block(const Layer& L, const F32Args& a, int64_t m0, int64_t t, __m256 llo, __m256 lhi) {
  __m256 acc[MT][2];
  for (int i = 0; i < MT; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  const int64_t ngroups = L.Kq / kGroupK;
  const uint8_t* w = L.tiles + t * tile_bytes(L.Kq);
  const float* x = a.x + m0 * a.ldx;
  for (int64_t g = 0; g < ngroups; ++g) {
    const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + g * kGroupBytes));
    const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + g * kGroupBytes + 32));
#pragma GCC unroll 8
    for (int kk = 0; kk < kGroupK; ++kk) {
      const int sh = kk < kQuad ? 8 * kk : 8 * (kk - kQuad) + 4;
      const __m256 w0 = decode8<WIDE>(_mm256_srli_epi32(v0, sh), llo, lhi);
      const __m256 w1 = decode8<WIDE>(_mm256_srli_epi32(v1, sh), llo, lhi);
      for (int i = 0; i < MT; ++i) {
        const __m256 xb = _mm256_set1_ps(x[i * a.ldx + g * kGroupK + kk]);
        acc[i][0] = _mm256_fmadd_ps(xb, w0, acc[i][0]);
        acc[i][1] = _mm256_fmadd_ps(xb, w1, acc[i][1]);
      }
    }
  }
  for (int i = 0; i < MT; ++i)
    for (int h = 0; h < 2; ++h) store_f32(L, a.y + (m0 + i) * a.ldy, t * kLanes + h * kHalf, acc[i][h]);
}

template <bool WIDE>
void f32_tile(const Layer& L, const F32Args& a, int64_t t, __m256 llo, __m256 lhi) {
  int64_t m = 0;
  for (; m + 4 <= a.M; m += 4) f32_block<4, WIDE>(L, a, m, t, llo, lhi);
  switch (a.M - m) {
    case 3: return f32_block<3, WIDE>(L, a, m, t, llo, lhi);
    case 2: return f32_block<2, WIDE>(L, a, m, t, llo, lhi);
    case 1: return f32_block<1, WIDE>(L, a, m, t, llo, lhi);
    default: return;
  }
}

inline void store_i8(const Layer& L, const I8Args& a, int64_t m, int64_t n0, __m256i acc) {
  if (n0 >= L.N) return;
  const __m256i rs = _mm256_slli_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(L.row_sums + n0)), 7);
  const __m256 c = _mm256_cvtepi32_ps(_mm256_sub_epi32(acc, rs));
  const __m256 xs = _mm256_set1_ps(a.xscale[m]);
  float* y = a.y + m * a.ldy + n0;
  if (n0 + kHalf <= L.N) {
    __m256 v = _mm256_mul_ps(c, _mm256_mul_ps(xs, _mm256_loadu_ps(L.alpha + n0)));
    if (L.bias) v = _mm256_add_ps(v, _mm256_loadu_ps(L.bias + n0));
    _mm256_storeu_ps(y, v);
    return;
  }
  const __m256i k = half_mask(n0, L.N);
  __m256 v = _mm256_mul_ps(c, _mm256_mul_ps(xs, _mm256_maskload_ps(L.alpha + n0, k)));
  if (L.bias) v = _mm256_add_ps(v, _mm256_maskload_ps(L.bias + n0, k));
  _mm256_maskstore_ps(y, k, v);
}

inline __m256i bcast_quad(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// acc += sum of 4 u8 x s8 products per dword (exact for |w| <= 64).
inline __m256i dot4(__m256i acc, __m256i x, __m256i w) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(x, w), _mm256_set1_epi16(1)));
}

template <int MT, bool SPLIT>
void i8_block(const Layer& L, const I8Args& a, int64_t m0, int64_t t, __m256i llo, __m256i lhi) {
  __m256i acc[MT][2];
  for (int i = 0; i < MT; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_si256();
  const int64_t ngroups = L.Kq / kGroupK;
  const uint8_t* w = L.tiles + t * tile_bytes(L.Kq);
  const uint8_t* xq = a.xq + m0 * L.Kq;
  const __m256i nib = _mm256_set1_epi8(0x0f);
  for (int64_t g = 0; g < ngroups; ++g) {
    __m256i w0[2], w1[2], h0[2], h1[2];
    for (int h = 0; h < 2; ++h) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + g * kGroupBytes + 32 * h));
      const __m256i c0 = _mm256_and_si256(v, nib);
      const __m256i c1 = _mm256_and_si256(_mm256_srli_epi16(v, 4), nib);
      w0[h] = _mm256_shuffle_epi8(llo, c0);
      w1[h] = _mm256_shuffle_epi8(llo, c1);
      if constexpr (SPLIT) {
        h0[h] = _mm256_shuffle_epi8(lhi, c0);
        h1[h] = _mm256_shuffle_epi8(lhi, c1);
      }
    }
    for (int i = 0; i < MT; ++i) {
      const __m256i x0 = bcast_quad(xq + i * L.Kq + g * kGroupK);
      const __m256i x1 = bcast_quad(xq + i * L.Kq + g * kGroupK + kQuad);
      for (int h = 0; h < 2; ++h) {
        acc[i][h] = dot4(acc[i][h], x0, w0[h]);
        acc[i][h] = dot4(acc[i][h], x1, w1[h]);
        if constexpr (SPLIT) {
          acc[i][h] = dot4(acc[i][h], x0, h0[h]);
          acc[i][h] = dot4(acc[i][h], x1, h1[h]);
        }
      }
    }
  }
  for (int i = 0; i < MT; ++i)
    for (int h = 0; h < 2; ++h) store_i8(L, a, m0 + i, t * kLanes + h * kHalf, acc[i][h]);
}

template <bool SPLIT>
void i8_tile(const Layer& L, const I8Args& a, int64_t t, __m256i llo, __m256i lhi) {
  int64_t m = 0;
  for (; m + 4 <= a.M; m += 4) i8_block<4, SPLIT>(L, a, m, t, llo, lhi);
  switch (a.M - m) {
    case 3: return i8_block<3, SPLIT>(L, a, m, t, llo, lhi);
    case 2: return i8_block<2, SPLIT>(L, a, m, t, llo, lhi);
    case 1: return i8_block<1, SPLIT>(L, a, m, t, llo, lhi);
    default: return;
  }
}

inline __m256i lut_bytes(const int8_t* t16) {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t16)));
}

}  // namespace

void f32_avx2(const Layer& L, const F32Args& a, int64_t t0, int64_t t1) {
  const Tables T = tables_for(L.bits);
  const __m256 llo = _mm256_loadu_ps(T.f32), lhi = _mm256_loadu_ps(T.f32 + 8);
  for (int64_t t = t0; t < t1; ++t) {
    if (L.bits == 4) f32_tile<true>(L, a, t, llo, lhi);
    else f32_tile<false>(L, a, t, llo, lhi);
  }
}

void i8_avx2(const Layer& L, const I8Args& a, int64_t t0, int64_t t1) {
  const Tables T = tables_for(L.bits);
  const __m256i llo = lut_bytes(T.lo), lhi = lut_bytes(T.hi);
  for (int64_t t = t0; t < t1; ++t) {
    if (L.bits == 4) i8_tile<true>(L, a, t, llo, lhi);
    else i8_tile<false>(L, a, t, llo, lhi);
  }
}

}  // namespace tiled
}  // namespace denseshift

#define DS_FMA(a, b, c) __builtin_fmaf(a, b, c)
#define DS_ATTENTION_NAME attention_avx2
#include "attention_impl.h"
#define DS_DEPTHWISE_NAME depthwise_tc_avx2
#include "depthwise_impl.h"
#define DS_POINTWISE_SUFFIX _avx2
#include "pointwise_impl.h"

#pragma GCC pop_options
#endif

// Tiled kernels, AVX-512 (exact float path: F; int8 path: F/BW + VNNI).
// Lanes are output channels: each 64-byte group is decoded once into weight registers
// and reused across MT activation rows (register blocking); no horizontal reductions.
#include "tiled.h"
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include <cstring>

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma")

namespace denseshift {
namespace tiled {
namespace {

inline __mmask16 lane_mask(int64_t n0, int64_t N) {
  const int64_t r = N - n0;
  return r >= kLanes ? __mmask16(0xffff) : __mmask16((1u << r) - 1u);
}

// Epilogue of the exact path for one tile of one row: alpha * acc + bias, masked tail.
inline void store_f32(const Layer& L, float* y, int64_t n0, __m512 acc) {
  const __mmask16 k = lane_mask(n0, L.N);
  __m512 v = _mm512_mul_ps(acc, _mm512_maskz_loadu_ps(k, L.alpha + n0));
  if (L.bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, L.bias + n0));
  _mm512_mask_storeu_ps(y + n0, k, v);
}

template <int MT, int NT>
void f32_block(const Layer& L, const F32Args& a, int64_t m0, int64_t t, __m512 lut) {
  __m512 acc[MT][NT];
  for (int i = 0; i < MT; ++i)
    for (int j = 0; j < NT; ++j) acc[i][j] = _mm512_setzero_ps();
  const int64_t tb = tile_bytes(L.Kq), ngroups = L.Kq / kGroupK;
  const uint8_t* w = L.tiles + t * tb;
  const float* x = a.x + m0 * a.ldx;
  for (int64_t g = 0; g < ngroups; ++g) {
    __m512i v[NT];
    for (int j = 0; j < NT; ++j) v[j] = _mm512_loadu_si512(w + j * tb + g * kGroupBytes);
#pragma GCC unroll 8
    for (int kk = 0; kk < kGroupK; ++kk) {
      const unsigned sh = kk < kQuad ? 8u * kk : 8u * (kk - kQuad) + 4u;
      __m512 wv[NT];
      for (int j = 0; j < NT; ++j) wv[j] = _mm512_permutexvar_ps(_mm512_srli_epi32(v[j], sh), lut);
      for (int i = 0; i < MT; ++i) {
        const __m512 xb = _mm512_set1_ps(x[i * a.ldx + g * kGroupK + kk]);
        for (int j = 0; j < NT; ++j) acc[i][j] = _mm512_fmadd_ps(xb, wv[j], acc[i][j]);
      }
    }
  }
  for (int i = 0; i < MT; ++i)
    for (int j = 0; j < NT; ++j) store_f32(L, a.y + (m0 + i) * a.ldy, (t + j) * kLanes, acc[i][j]);
}

template <int NT>
void f32_rows(const Layer& L, const F32Args& a, int64_t t, __m512 lut) {
  constexpr int MT = 8;
  int64_t m = 0;
  for (; m + MT <= a.M; m += MT) f32_block<MT, NT>(L, a, m, t, lut);
  switch (a.M - m) {
    case 7: return f32_block<7, NT>(L, a, m, t, lut);
    case 6: return f32_block<6, NT>(L, a, m, t, lut);
    case 5: return f32_block<5, NT>(L, a, m, t, lut);
    case 4: return f32_block<4, NT>(L, a, m, t, lut);
    case 3: return f32_block<3, NT>(L, a, m, t, lut);
    case 2: return f32_block<2, NT>(L, a, m, t, lut);
    case 1: return f32_block<1, NT>(L, a, m, t, lut);
    default: return;
  }
}

// Epilogue of the int8 path: (acc - 128 rowsum) -> float * (xscale * alpha) + bias.
inline void store_i8(const Layer& L, const I8Args& a, int64_t m, int64_t n0, __m512i acc) {
  const __mmask16 k = lane_mask(n0, L.N);
  const __m512i rs = _mm512_slli_epi32(_mm512_loadu_si512(L.row_sums + n0), 7);
  const __m512 s = _mm512_mul_ps(_mm512_set1_ps(a.xscale[m]), _mm512_maskz_loadu_ps(k, L.alpha + n0));
  __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc, rs)), s);
  if (L.bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, L.bias + n0));
  _mm512_mask_storeu_ps(a.y + m * a.ldy + n0, k, v);
}

inline __m512i bcast_quad(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

template <int MT, int NT, bool SPLIT>
void i8_block(const Layer& L, const I8Args& a, int64_t m0, int64_t t, __m512i lut_lo, __m512i lut_hi) {
  __m512i acc[MT][NT];
  for (int i = 0; i < MT; ++i)
    for (int j = 0; j < NT; ++j) acc[i][j] = _mm512_setzero_si512();
  const int64_t tb = tile_bytes(L.Kq), ngroups = L.Kq / kGroupK;
  const uint8_t* w = L.tiles + t * tb;
  const uint8_t* xq = a.xq + m0 * L.Kq;
  const __m512i nib = _mm512_set1_epi8(0x0f);
  for (int64_t g = 0; g < ngroups; ++g) {
    __m512i w0[NT], w1[NT], h0[NT], h1[NT];
    for (int j = 0; j < NT; ++j) {
      const __m512i v = _mm512_loadu_si512(w + j * tb + g * kGroupBytes);
      const __m512i c0 = _mm512_and_si512(v, nib);
      const __m512i c1 = _mm512_and_si512(_mm512_srli_epi16(v, 4), nib);
      w0[j] = _mm512_shuffle_epi8(lut_lo, c0);
      w1[j] = _mm512_shuffle_epi8(lut_lo, c1);
      if constexpr (SPLIT) {
        h0[j] = _mm512_shuffle_epi8(lut_hi, c0);
        h1[j] = _mm512_shuffle_epi8(lut_hi, c1);
      }
    }
    for (int i = 0; i < MT; ++i) {
      const __m512i x0 = bcast_quad(xq + i * L.Kq + g * kGroupK);
      const __m512i x1 = bcast_quad(xq + i * L.Kq + g * kGroupK + kQuad);
      for (int j = 0; j < NT; ++j) {
        acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], x0, w0[j]);
        acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], x1, w1[j]);
        if constexpr (SPLIT) {
          acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], x0, h0[j]);
          acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], x1, h1[j]);
        }
      }
    }
  }
  for (int i = 0; i < MT; ++i)
    for (int j = 0; j < NT; ++j) store_i8(L, a, m0 + i, (t + j) * kLanes, acc[i][j]);
}

template <int NT, bool SPLIT>
void i8_rows(const Layer& L, const I8Args& a, int64_t t, __m512i lo, __m512i hi) {
  constexpr int MT = 8;
  int64_t m = 0;
  for (; m + MT <= a.M; m += MT) i8_block<MT, NT, SPLIT>(L, a, m, t, lo, hi);
  switch (a.M - m) {
    case 7: return i8_block<7, NT, SPLIT>(L, a, m, t, lo, hi);
    case 6: return i8_block<6, NT, SPLIT>(L, a, m, t, lo, hi);
    case 5: return i8_block<5, NT, SPLIT>(L, a, m, t, lo, hi);
    case 4: return i8_block<4, NT, SPLIT>(L, a, m, t, lo, hi);
    case 3: return i8_block<3, NT, SPLIT>(L, a, m, t, lo, hi);
    case 2: return i8_block<2, NT, SPLIT>(L, a, m, t, lo, hi);
    case 1: return i8_block<1, NT, SPLIT>(L, a, m, t, lo, hi);
    default: return;
  }
}

inline __m512i lut_bytes(const int8_t* t16) {
  return _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t16)));
}

template <bool SPLIT>
void i8_run(const Layer& L, const I8Args& a, int64_t t0, int64_t t1) {
  const Tables T = tables_for(L.bits);
  const __m512i lo = lut_bytes(T.lo), hi = lut_bytes(T.hi);
  int64_t t = t0;
  for (; t + 2 <= t1; t += 2) i8_rows<2, SPLIT>(L, a, t, lo, hi);
  if (t < t1) i8_rows<1, SPLIT>(L, a, t, lo, hi);
}

}  // namespace

// Same numerics as quantize_rows (scalar): |x| max, 127 / amax, round half to even.
void quantize_rows_avx512(const float* x, int64_t M, int64_t K, int64_t ldx, int64_t Kq, uint8_t* xq,
                          float* xscale, uint8_t* finite) {
  const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
  const __m512 lim = _mm512_set1_ps(127.0f), nlim = _mm512_set1_ps(-127.0f);
  const __m512i bias = _mm512_set1_epi32(128);
  for (int64_t m = 0; m < M; ++m) {
    const float* xr = x + m * ldx;
    uint8_t* qr = xq + m * Kq;
    __m512 vmax = _mm512_setzero_ps();
    __mmask16 bad = 0;
    int64_t k = 0;
    for (; k < K; k += 16) {
      const __mmask16 km = K - k >= 16 ? __mmask16(0xffff) : __mmask16((1u << (K - k)) - 1u);
      const __m512 a = _mm512_and_ps(_mm512_maskz_loadu_ps(km, xr + k), absmask);
      bad |= _mm512_cmp_ps_mask(a, _mm512_set1_ps(3.402823466e38f), _CMP_NLE_UQ);  // inf or NaN
      vmax = _mm512_max_ps(vmax, a);
    }
    const float amax = _mm512_reduce_max_ps(vmax);
    finite[m] = bad == 0;
    if (bad || amax == 0.0f) {
      std::memset(qr, 128, size_t(Kq));
      xscale[m] = 0.0f;
      continue;
    }
    const __m512 inv = _mm512_set1_ps(127.0f / amax);
    for (k = 0; k < K; k += 16) {
      const __mmask16 km = K - k >= 16 ? __mmask16(0xffff) : __mmask16((1u << (K - k)) - 1u);
      __m512 q = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(km, xr + k), inv),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      q = _mm512_min_ps(_mm512_max_ps(q, nlim), lim);
      const __m512i u = _mm512_add_epi32(_mm512_cvtps_epi32(q), bias);
      _mm_mask_storeu_epi8(qr + k, km, _mm512_cvtepi32_epi8(u));
    }
    for (k = K; k < Kq; ++k) qr[k] = 128;
    xscale[m] = amax / 127.0f;
  }
}

void f32_avx512(const Layer& L, const F32Args& a, int64_t t0, int64_t t1) {
  const Tables T = tables_for(L.bits);
  const __m512 lut = _mm512_loadu_ps(T.f32);
  int64_t t = t0;
  for (; t + 2 <= t1; t += 2) f32_rows<2>(L, a, t, lut);
  if (t < t1) f32_rows<1>(L, a, t, lut);
}

void i8_avx512vnni(const Layer& L, const I8Args& a, int64_t t0, int64_t t1) {
  if (L.bits == 4) return i8_run<true>(L, a, t0, t1);
  return i8_run<false>(L, a, t0, t1);
}

}  // namespace tiled
}  // namespace denseshift

#pragma GCC pop_options
#endif

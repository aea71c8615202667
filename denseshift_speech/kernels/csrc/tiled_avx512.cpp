// Tiled kernels, AVX-512 (exact float path: F; int8 path: F/BW + VNNI).
// Lanes are output channels: each 64-byte group is decoded once into weight registers
// and reused across MT activation rows (register blocking); no horizontal reductions.
#include "tiled.h"
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <vector>

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

namespace denseshift {
namespace tiled {
namespace {

// exp(x) for x <= 0 (and moderately positive): 2^n * 2^f, degree-6 polynomial on f,
// the same polynomial as attention_impl.h's ds_exp.
inline __m512 exp512(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  x = _mm512_min_ps(x, _mm512_set1_ps(88.0f));
  const __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f));
  const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(t, n);
  __m512 p = _mm512_set1_ps(1.540353039338161e-4f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.339887440266574e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.618437357674640e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550332471162809e-2f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.402264791363012e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931472028550421e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// Scores of NC 16-key chunks at once: NC independent accumulator chains (one chain
// would stall on the FMA latency).
template <int NC>
inline void score_chunks(const float* quv, int64_t D, const float* kt, int64_t Tp, const float* pt, int64_t Pw,
                         int64_t off, int64_t j0, float* s) {
  __m512 acc[NC];
  for (int c = 0; c < NC; ++c) acc[c] = _mm512_setzero_ps();
  for (int64_t d = 0; d < D; ++d) {
    const __m512 u = _mm512_set1_ps(quv[d]), v = _mm512_set1_ps(quv[D + d]);
    const float* kr = kt + d * Tp + j0;
    const float* pr = pt + d * Pw + off + j0;
    for (int c = 0; c < NC; ++c) {
      acc[c] = _mm512_fmadd_ps(v, _mm512_loadu_ps(pr + 16 * c), acc[c]);
      acc[c] = _mm512_fmadd_ps(u, _mm512_loadu_ps(kr + 16 * c), acc[c]);
    }
  }
  for (int c = 0; c < NC; ++c) _mm512_storeu_ps(s + j0 + 16 * c, acc[c]);
}

// Output of NC 16-wide chunks of the head dimension, keys split over two chains each.
template <int NC>
inline void output_chunks(const float* s, int64_t T, const float* vt, int64_t Dp, int64_t d0, int64_t D, float* o) {
  __m512 a[NC], b[NC];
  for (int c = 0; c < NC; ++c) a[c] = b[c] = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 2 <= T; j += 2) {
    const __m512 p0 = _mm512_set1_ps(s[j]), p1 = _mm512_set1_ps(s[j + 1]);
    const float* v0 = vt + j * Dp + d0;
    for (int c = 0; c < NC; ++c) {
      a[c] = _mm512_fmadd_ps(p0, _mm512_loadu_ps(v0 + 16 * c), a[c]);
      b[c] = _mm512_fmadd_ps(p1, _mm512_loadu_ps(v0 + Dp + 16 * c), b[c]);
    }
  }
  if (j < T) {
    const __m512 p0 = _mm512_set1_ps(s[j]);
    for (int c = 0; c < NC; ++c) a[c] = _mm512_fmadd_ps(p0, _mm512_loadu_ps(vt + j * Dp + d0 + 16 * c), a[c]);
  }
  for (int c = 0; c < NC; ++c) {
    const int64_t n = D - d0 - 16 * c;
    if (n <= 0) break;
    const __mmask16 k = n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1u);
    _mm512_mask_storeu_ps(o + d0 + 16 * c, k, _mm512_add_ps(a[c], b[c]));
  }
}

}  // namespace

// The loops of attention_impl.h with the score and output accumulators held in zmm
// registers (the compiler keeps re-loading them from memory otherwise).
void attention_avx512(const float* __restrict__ qkv, const float* __restrict__ pk, const float* bu, const float* bv,
                      const uint8_t* kpm, int64_t T, int64_t H, int64_t D, float scale, float* __restrict__ out,
                      float* __restrict__ scratch) {
  constexpr int64_t V = 16;
  const int64_t P = 2 * T - 1, row = 3 * D * H;
  const int64_t Tp = (T + V - 1) / V * V, Dp = (D + V - 1) / V * V, Pw = T - 1 + Tp;
  float* kt = scratch;
  float* pt = kt + D * Tp;
  float* vt = pt + D * Pw;
  float* s = vt + T * Dp;
  std::vector<float> quv(size_t(2 * D));
  for (int64_t h = 0; h < H; ++h) {
    std::memset(scratch, 0, sizeof(float) * size_t(D * Tp + D * Pw + T * Dp));
    for (int64_t j = 0; j < T; ++j)
      for (int64_t d = 0; d < D; ++d) {
        kt[d * Tp + j] = qkv[j * row + h * 3 * D + D + d];
        vt[j * Dp + d] = qkv[j * row + h * 3 * D + 2 * D + d];
      }
    for (int64_t p = 0; p < P; ++p)
      for (int64_t d = 0; d < D; ++d) pt[d * Pw + p] = pk[(p * H + h) * D + d];
    for (int64_t i = 0; i < T; ++i) {
      const float* q = qkv + i * row + h * 3 * D;
      for (int64_t d = 0; d < D; ++d) {
        quv[size_t(d)] = (q[d] + bu[h * D + d]) * scale;
        quv[size_t(D + d)] = (q[d] + bv[h * D + d]) * scale;
      }
      const int64_t off = T - 1 - i;
      for (int64_t j0 = 0; j0 < Tp; j0 += 8 * V) {
        switch ((Tp - j0) / V < 8 ? (Tp - j0) / V : 8) {
          case 1: score_chunks<1>(quv.data(), D, kt, Tp, pt, Pw, off, j0, s); break;
          case 2: score_chunks<2>(quv.data(), D, kt, Tp, pt, Pw, off, j0, s); break;
          case 3: score_chunks<3>(quv.data(), D, kt, Tp, pt, Pw, off, j0, s); break;
          case 4: score_chunks<4>(quv.data(), D, kt, Tp, pt, Pw, off, j0, s); break;
          case 5: score_chunks<5>(quv.data(), D, kt, Tp, pt, Pw, off, j0, s); break;
          case 6: score_chunks<6>(quv.data(), D, kt, Tp, pt, Pw, off, j0, s); break;
          case 7: score_chunks<7>(quv.data(), D, kt, Tp, pt, Pw, off, j0, s); break;
          default: score_chunks<8>(quv.data(), D, kt, Tp, pt, Pw, off, j0, s); break;
        }
      }
      if (kpm)
        for (int64_t j = 0; j < T; ++j) s[j] = kpm[j] ? -INFINITY : s[j];
      __m512 vm = _mm512_set1_ps(-INFINITY);
      for (int64_t j0 = 0; j0 < T; j0 += V) {
        const __mmask16 k = T - j0 >= V ? __mmask16(0xffff) : __mmask16((1u << (T - j0)) - 1u);
        vm = _mm512_mask_max_ps(vm, k, vm, _mm512_loadu_ps(s + j0));
      }
      const float m = _mm512_reduce_max_ps(vm);
      float* o = out + i * H * D + h * D;
      if (m == -INFINITY) {
        for (int64_t d = 0; d < D; ++d) o[d] = 0.0f;
        continue;
      }
      __m512 vs = _mm512_setzero_ps();
      const __m512 mv = _mm512_set1_ps(m);
      for (int64_t j0 = 0; j0 < T; j0 += V) {
        const __mmask16 k = T - j0 >= V ? __mmask16(0xffff) : __mmask16((1u << (T - j0)) - 1u);
        __m512 e = _mm512_maskz_mov_ps(k, exp512(_mm512_sub_ps(_mm512_loadu_ps(s + j0), mv)));
        _mm512_storeu_ps(s + j0, e);
      }
      if (kpm)
        for (int64_t j = 0; j < T; ++j) s[j] = kpm[j] ? 0.0f : s[j];
      for (int64_t j0 = 0; j0 < T; j0 += V) vs = _mm512_add_ps(vs, _mm512_loadu_ps(s + j0));
      const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vs));
      for (int64_t j0 = 0; j0 < T; j0 += V) _mm512_storeu_ps(s + j0, _mm512_mul_ps(_mm512_loadu_ps(s + j0), inv));
      for (int64_t d0 = 0; d0 < Dp; d0 += 4 * V) {
        switch ((Dp - d0) / V < 4 ? (Dp - d0) / V : 4) {
          case 1: output_chunks<1>(s, T, vt, Dp, d0, D, o); break;
          case 2: output_chunks<2>(s, T, vt, Dp, d0, D, o); break;
          case 3: output_chunks<3>(s, T, vt, Dp, d0, D, o); break;
          default: output_chunks<4>(s, T, vt, Dp, d0, D, o); break;
        }
      }
    }
  }
}

}  // namespace tiled
}  // namespace denseshift

#define DS_FMA(a, b, c) __builtin_fmaf(a, b, c)
#define DS_DEPTHWISE_NAME depthwise_tc_avx512
#include "depthwise_impl.h"

#pragma GCC pop_options
#endif

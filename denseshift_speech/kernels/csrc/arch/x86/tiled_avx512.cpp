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

// AC accumulators per output (k split by parity when AC = 2): few rows of activations
// leave too few independent FMA chains to hide the FMA latency otherwise.
template <int MT, int NT, int AC = 1>
void f32_block(const Layer& L, const F32Args& a, int64_t m0, int64_t t, __m512 lut) {
  __m512 acc[MT][NT], acc2[MT][NT];
  for (int i = 0; i < MT; ++i)
    for (int j = 0; j < NT; ++j) acc[i][j] = acc2[i][j] = _mm512_setzero_ps();
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
        for (int j = 0; j < NT; ++j) {
          if (AC == 2 && (kk & 1)) acc2[i][j] = _mm512_fmadd_ps(xb, wv[j], acc2[i][j]);
          else acc[i][j] = _mm512_fmadd_ps(xb, wv[j], acc[i][j]);
        }
      }
    }
  }
  for (int i = 0; i < MT; ++i)
    for (int j = 0; j < NT; ++j)
      store_f32(L, a.y + (m0 + i) * a.ldy, (t + j) * kLanes, AC == 2 ? _mm512_add_ps(acc[i][j], acc2[i][j]) : acc[i][j]);
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

// AC = 2: the two halves of each group feed separate accumulators (more independent
// dot-product chains for short row blocks), summed at the end.
template <int MT, int NT, bool SPLIT, int AC = 1>
void i8_block(const Layer& L, const I8Args& a, int64_t m0, int64_t t, __m512i lut_lo, __m512i lut_hi) {
  __m512i acc[MT][NT], acc2[MT][NT];
  for (int i = 0; i < MT; ++i)
    for (int j = 0; j < NT; ++j) acc[i][j] = acc2[i][j] = _mm512_setzero_si512();
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
        __m512i& second = AC == 2 ? acc2[i][j] : acc[i][j];
        acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], x0, w0[j]);
        second = _mm512_dpbusd_epi32(second, x1, w1[j]);
        if constexpr (SPLIT) {
          acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], x0, h0[j]);
          second = _mm512_dpbusd_epi32(second, x1, h1[j]);
        }
      }
    }
  }
  for (int i = 0; i < MT; ++i)
    for (int j = 0; j < NT; ++j)
      store_i8(L, a, m0 + i, (t + j) * kLanes, AC == 2 ? _mm512_add_epi32(acc[i][j], acc2[i][j]) : acc[i][j]);
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
  if (a.M <= 0) return;
  if (a.M <= 2) {  // streaming sizes: 4 tiles x 2 accumulator chains per row
    for (; t + 4 <= t1; t += 4) {
      if (a.M == 1) i8_block<1, 4, SPLIT, 2>(L, a, 0, t, lo, hi);
      else i8_block<2, 4, SPLIT, 2>(L, a, 0, t, lo, hi);
    }
    for (; t < t1; ++t) {
      if (a.M == 1) i8_block<1, 1, SPLIT, 2>(L, a, 0, t, lo, hi);
      else i8_block<2, 1, SPLIT, 2>(L, a, 0, t, lo, hi);
    }
    return;
  }
  for (; t + 2 <= t1; t += 2) i8_rows<2, SPLIT>(L, a, t, lo, hi);
  if (t < t1) i8_rows<1, SPLIT>(L, a, t, lo, hi);
}

}  // namespace

// Same numerics as quantize_rows (scalar): |x| max, 127 / amax, round half to even.
void quantize_rows_avx512(const float* x, int64_t M, int64_t K, int64_t ldx, int64_t Kq, uint8_t* xq,
                          float* xscale, uint8_t* finite) {
  const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
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
    const __m128i flip = _mm_set1_epi8(char(0x80));
    for (k = 0; k < K; k += 16) {
      // |x * inv| <= 127 (+ rounding): cvtps (round to nearest even, as nearbyint) fits;
      // the saturating pack only guards; xor 0x80 adds 128 to the int8 value
      const __m512 v = K - k >= 16 ? _mm512_loadu_ps(xr + k)
                                   : _mm512_maskz_loadu_ps(__mmask16((1u << (K - k)) - 1u), xr + k);
      const __m512i q = _mm512_max_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v, inv)), _mm512_set1_epi32(-127));
      const __m128i u = _mm_xor_si128(_mm512_cvtsepi32_epi8(q), flip);
      if (K - k >= 16) _mm_storeu_si128(reinterpret_cast<__m128i*>(qr + k), u);
      else _mm_mask_storeu_epi8(qr + k, __mmask16((1u << (K - k)) - 1u), u);
    }
    for (k = K; k < Kq; ++k) qr[k] = 128;
    xscale[m] = amax / 127.0f;
  }
}

void f32_avx512(const Layer& L, const F32Args& a, int64_t t0, int64_t t1) {
  const Tables T = tables_for(L.bits);
  const __m512 lut = _mm512_loadu_ps(T.f32);
  int64_t t = t0;
  if (a.M <= 0) return;
  if (a.M <= 2) {  // streaming sizes: 4 tiles x 2 accumulator chains per row
    for (; t + 4 <= t1; t += 4) {
      if (a.M == 1) f32_block<1, 4, 2>(L, a, 0, t, lut);
      else f32_block<2, 4, 2>(L, a, 0, t, lut);
    }
    for (; t < t1; ++t) {
      if (a.M == 1) f32_block<1, 1, 2>(L, a, 0, t, lut);
      else f32_block<2, 1, 2>(L, a, 0, t, lut);
    }
    return;
  }
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
// the same polynomial as exp_impl.h's ds_exp.
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

// C (M x N) = A (M x K, row stride lda) * B (K x N, row stride ldb), row-major, N a
// multiple of 16: 4 rows x NC 16-column chunks of accumulators per block, so each B load
// feeds 4 FMAs and each A broadcast NC of them (FMA-bound, no latency chains).
template <int MR, int NC>
inline void gemm_block(const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc, int64_t K,
                       int64_t i0, int64_t j0) {
  __m512 acc[MR][NC];
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NC; ++c) acc[r][c] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    __m512 b[NC];
    for (int c = 0; c < NC; ++c) b[c] = _mm512_loadu_ps(B + k * ldb + j0 + 16 * c);
    for (int r = 0; r < MR; ++r) {
      const __m512 a = _mm512_set1_ps(A[(i0 + r) * lda + k]);
      for (int c = 0; c < NC; ++c) acc[r][c] = _mm512_fmadd_ps(a, b[c], acc[r][c]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NC; ++c) _mm512_storeu_ps(C + (i0 + r) * ldc + j0 + 16 * c, acc[r][c]);
}

template <int MR>
inline void gemm_rows(const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc, int64_t K,
                      int64_t N, int64_t i0) {
  int64_t j0 = 0;
  for (; j0 + 64 <= N; j0 += 64) gemm_block<MR, 4>(A, lda, B, ldb, C, ldc, K, i0, j0);
  switch ((N - j0) / 16) {
    case 3: return gemm_block<MR, 3>(A, lda, B, ldb, C, ldc, K, i0, j0);
    case 2: return gemm_block<MR, 2>(A, lda, B, ldb, C, ldc, K, i0, j0);
    case 1: return gemm_block<MR, 1>(A, lda, B, ldb, C, ldc, K, i0, j0);
    default: return;
  }
}

inline void gemm(const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc, int64_t M,
                 int64_t K, int64_t N) {
  int64_t i = 0;
  for (; i + 4 <= M; i += 4) gemm_rows<4>(A, lda, B, ldb, C, ldc, K, N, i);
  switch (M - i) {
    case 3: return gemm_rows<3>(A, lda, B, ldb, C, ldc, K, N, i);
    case 2: return gemm_rows<2>(A, lda, B, ldb, C, ldc, K, N, i);
    case 1: return gemm_rows<1>(A, lda, B, ldb, C, ldc, K, N, i);
    default: return;
  }
}

}  // namespace

// attention_impl.h's math as three small GEMMs per head (content scores, positional
// scores over all 2T-1 offsets, probabilities x values) around a rel-shift + softmax pass.
void attention_avx512(const float* __restrict__ qkv, const float* __restrict__ pk, const float* bu, const float* bv,
                      const uint8_t* kpm, int64_t T, int64_t H, int64_t D, float scale, float* __restrict__ out,
                      float* __restrict__ scratch) {
  const int64_t P = 2 * T - 1, row = 3 * D * H;
  const int64_t Tp = (T + 15) / 16 * 16, Pp = (P + 15) / 16 * 16, Dp = (D + 15) / 16 * 16;
  float* kt = scratch;        // (D, Tp)  keys, transposed
  float* pt = kt + D * Tp;    // (D, Pp)  positional keys, transposed
  float* vt = pt + D * Pp;    // (T, Dp)  values
  float* qu = vt + T * Dp;    // (T, D)   (q + bias_u) * scale
  float* qv = qu + T * D;     // (T, D)   (q + bias_v) * scale
  float* sc = qv + T * D;     // (T, Tp)  content scores, then probabilities
  float* bd = sc + T * Tp;    // (T, Pp)  positional scores
  float* o = bd + T * Pp;     // (T, Dp)  output of one head
  const __m512 ninf = _mm512_set1_ps(-INFINITY);
  for (int64_t h = 0; h < H; ++h) {
    std::memset(kt, 0, sizeof(float) * size_t(D * Tp + D * Pp + T * Dp));
    std::memset(sc, 0, sizeof(float) * size_t(T * Tp));
    for (int64_t j = 0; j < T; ++j) {
      const float* r = qkv + j * row + h * 3 * D;
      for (int64_t d = 0; d < D; ++d) {
        qu[j * D + d] = (r[d] + bu[h * D + d]) * scale;
        qv[j * D + d] = (r[d] + bv[h * D + d]) * scale;
        kt[d * Tp + j] = r[D + d];
        vt[j * Dp + d] = r[2 * D + d];
      }
    }
    for (int64_t p = 0; p < P; ++p)
      for (int64_t d = 0; d < D; ++d) pt[d * Pp + p] = pk[(p * H + h) * D + d];
    gemm(qu, D, kt, Tp, sc, Tp, T, D, Tp);
    gemm(qv, D, pt, Pp, bd, Pp, T, D, Pp);
    for (int64_t i = 0; i < T; ++i) {
      float* s = sc + i * Tp;
      const float* b = bd + i * Pp + (T - 1 - i);  // rel_shift
      __m512 vm = ninf;
      for (int64_t j0 = 0; j0 < T; j0 += 16) {
        const __mmask16 k = T - j0 >= 16 ? __mmask16(0xffff) : __mmask16((1u << (T - j0)) - 1u);
        __m512 v = _mm512_add_ps(_mm512_loadu_ps(s + j0), _mm512_maskz_loadu_ps(k, b + j0));
        if (kpm) {
          const __m128i mk = _mm_maskz_loadu_epi8(k, kpm + j0);
          v = _mm512_mask_mov_ps(v, _mm_test_epi8_mask(mk, mk), ninf);
        }
        v = _mm512_mask_mov_ps(ninf, k, v);
        _mm512_storeu_ps(s + j0, v);
        vm = _mm512_max_ps(vm, v);
      }
      const float m = _mm512_reduce_max_ps(vm);
      if (m == -INFINITY) {  // every key padded: zeros, as RelPosMHAXL's masked_fill
        for (int64_t j0 = 0; j0 < Tp; j0 += 16) _mm512_storeu_ps(s + j0, _mm512_setzero_ps());
        continue;
      }
      const __m512 mv = _mm512_set1_ps(m);
      __m512 vs = _mm512_setzero_ps();
      for (int64_t j0 = 0; j0 < Tp; j0 += 16) {
        const __m512 x = _mm512_loadu_ps(s + j0);
        const __mmask16 live = _mm512_cmp_ps_mask(x, ninf, _CMP_NEQ_OQ);  // masked / padding -> 0
        const __m512 e = _mm512_maskz_mov_ps(live, exp512(_mm512_sub_ps(x, mv)));
        _mm512_storeu_ps(s + j0, e);
        vs = _mm512_add_ps(vs, e);
      }
      const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vs));
      for (int64_t j0 = 0; j0 < Tp; j0 += 16) _mm512_storeu_ps(s + j0, _mm512_mul_ps(_mm512_loadu_ps(s + j0), inv));
    }
    gemm(sc, Tp, vt, Dp, o, Dp, T, T, Dp);
    for (int64_t i = 0; i < T; ++i) std::memcpy(out + i * H * D + h * D, o + i * Dp, sizeof(float) * size_t(D));
  }
}

}  // namespace tiled
}  // namespace denseshift

#define DS_FMA(a, b, c) __builtin_fmaf(a, b, c)
#define DS_DEPTHWISE_NAME depthwise_tc_avx512
#include "depthwise_impl.h"

#define DS_POINTWISE_SUFFIX _avx512
#include "pointwise_impl.h"

#pragma GCC pop_options
#endif

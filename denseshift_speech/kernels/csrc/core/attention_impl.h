// Relative-position self-attention of one sequence (speechbrain RelPosMHAXL, Transformer-XL
// style), written as plain loops the compiler vectorizes for the target of the file that
// includes it (tiled_scalar.cpp: baseline; tiled_avx2.cpp: under its target pragma;
// neon.cpp: baseline ARMv8.0 NEON; the AVX-512 kernels have a GEMM-based version).
// Define DS_ATTENTION_NAME before including.
//
//   qkv  (T, H, 3D)  in-projection output: per head q | k | v
//   pk   (P, H, D)   projected positional embeddings, P = 2T - 1 (relative offsets T-1..-(T-1))
//   bu, bv (H, D)    pos_bias_u / pos_bias_v as RelPosMHAXL views them
//   kpm  (T) or null padded keys (nonzero = ignore)
//   out  (T, H*D)    softmax(((q+bu) k^T + rel_shift((q+bv) pk^T)) * scale) v
//   scratch          attention_scratch(T, D) floats
// rel_shift picks, for query i and key j, the positional row T-1-i+j.
// exp is a degree-6 polynomial on 2^f (relative error below 3e-7), so results differ
// from torch.softmax only at float rounding level (exp of arguments far below zero loses
// relative accuracy in the float range reduction, about 5e-6 near -80: irrelevant after
// the max subtraction of a softmax, and for silu of large negative inputs).
#include <cmath>
#include <cstdint>
#include <cstring>

#include "exp_impl.h"

namespace denseshift {
namespace tiled {


void DS_ATTENTION_NAME(const float* __restrict__ qkv, const float* __restrict__ pk, const float* bu, const float* bv,
                       const uint8_t* kpm, int64_t T, int64_t H, int64_t D, float scale, float* __restrict__ out,
                       float* __restrict__ scratch) {
  constexpr int64_t V = 16;  // accumulators of one register-sized chunk (kept in registers)
  const int64_t P = 2 * T - 1, row = 3 * D * H;
  const int64_t Tp = (T + V - 1) / V * V, Dp = (D + V - 1) / V * V, Pw = T - 1 + Tp;
  float* kt = scratch;      // (D, Tp)  keys, transposed, zero padded
  float* pt = kt + D * Tp;  // (D, Pw)  positional keys, transposed, zero padded
  float* vt = pt + D * Pw;  // (T, Dp)  values, zero padded
  float* s = vt + T * Dp;   // (Tp)     scores, then probabilities
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
      const int64_t off = T - 1 - i;  // rel_shift: key j meets positional row T-1-i+j
      for (int64_t j0 = 0; j0 < Tp; j0 += V) {
        float acc[V] = {};
        for (int64_t d = 0; d < D; ++d) {
          const float qu = (q[d] + bu[h * D + d]) * scale, qv = (q[d] + bv[h * D + d]) * scale;
          const float* kr = kt + d * Tp + j0;
          const float* pr = pt + d * Pw + off + j0;
          for (int64_t jj = 0; jj < V; ++jj) acc[jj] = DS_FMA(qu, kr[jj], DS_FMA(qv, pr[jj], acc[jj]));
        }
        for (int64_t jj = 0; jj < V; ++jj) s[j0 + jj] = acc[jj];
      }
      if (kpm)
        for (int64_t j = 0; j < T; ++j) s[j] = kpm[j] ? -INFINITY : s[j];
      float m = -INFINITY;
#pragma omp simd reduction(max : m)
      for (int64_t j = 0; j < T; ++j) m = s[j] > m ? s[j] : m;
      float* o = out + i * H * D + h * D;
      if (m == -INFINITY) {  // every key padded: zeros, as RelPosMHAXL's masked_fill
        for (int64_t d = 0; d < D; ++d) o[d] = 0.0f;
        continue;
      }
      // (omp simd: vectorized reductions in any order; the build passes -fopenmp)
#pragma omp simd
      for (int64_t j = 0; j < T; ++j) s[j] = ds_exp(s[j] - m);
      if (kpm)
        for (int64_t j = 0; j < T; ++j) s[j] = kpm[j] ? 0.0f : s[j];  // exp(-inf) clamps above 0
      float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
      for (int64_t j = 0; j < T; ++j) sum += s[j];
      const float inv = 1.0f / sum;
      for (int64_t j = 0; j < T; ++j) s[j] *= inv;
      for (int64_t d0 = 0; d0 < Dp; d0 += V) {
        float acc[V] = {};
        for (int64_t j = 0; j < T; ++j) {
          const float* vr = vt + j * Dp + d0;
          for (int64_t dd = 0; dd < V; ++dd) acc[dd] = DS_FMA(s[j], vr[dd], acc[dd]);
        }
        const int64_t n = D - d0 < V ? D - d0 : V;
        for (int64_t dd = 0; dd < n; ++dd) o[d0 + dd] = acc[dd];
      }
    }
  }
}

}  // namespace tiled
}  // namespace denseshift

// Pointwise and row-wise post-ops of the fused layers, as plain loops vectorized for the
// target of the including file.  Define
// DS_POINTWISE_SUFFIX (e.g. _avx512) before including; it names every function here.
//   silu:       x * sigmoid(x) = x / (1 + exp(-x)), in place (speechbrain's Swish, beta 1)
//   glu:        out[r, c] = x[r, c] * sigmoid(x[r, C + c])  (nn.GLU over the last dim)
//   layer_norm: (x - mean) / sqrt(var + eps) * w + b per row (biased variance, two passes)
//   axpy:       y += a * x
#include <cmath>
#include <cstdint>

#include "exp_impl.h"

#define DS_CAT2(a, b) a##b
#define DS_CAT(a, b) DS_CAT2(a, b)
#define DS_PW(name) DS_CAT(name, DS_POINTWISE_SUFFIX)

namespace denseshift {
namespace tiled {

void DS_PW(silu)(float* __restrict__ x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] / (1.0f + ds_exp(-x[i]));
}

void DS_PW(glu)(const float* __restrict__ x, int64_t rows, int64_t C, float* __restrict__ out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* a = x + r * 2 * C;
    const float* g = a + C;
    float* o = out + r * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) o[c] = a[c] / (1.0f + ds_exp(-g[c]));
  }
}

void DS_PW(layer_norm)(const float* __restrict__ x, int64_t rows, int64_t C, const float* __restrict__ w,
                       const float* __restrict__ b, float eps, float* __restrict__ out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * C;
    float* o = out + r * C;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t c = 0; c < C; ++c) sum += xr[c];
    const float mean = sum / float(C);
    float sq = 0.0f;
#pragma omp simd reduction(+ : sq)
    for (int64_t c = 0; c < C; ++c) sq += (xr[c] - mean) * (xr[c] - mean);
    const float inv = 1.0f / std::sqrt(sq / float(C) + eps);
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) o[c] = (xr[c] - mean) * inv * w[c] + b[c];
  }
}

void DS_PW(axpy)(float* __restrict__ y, const float* __restrict__ x, float a, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

}  // namespace tiled
}  // namespace denseshift

#undef DS_PW
#undef DS_CAT
#undef DS_CAT2

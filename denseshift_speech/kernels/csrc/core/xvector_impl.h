// Loop bodies of the x-vector post-ops, compiled for the target of the including file
// (xvector_scalar.cpp, xvector_avx2.cpp, xvector_neon.cpp).  Define DS_XVECTOR_SUFFIX (e.g. _avx2) before including.
#include <cmath>
#include <cstdint>

#define DS_XV_CAT2(a, b) a##b
#define DS_XV_CAT(a, b) DS_XV_CAT2(a, b)
#define DS_XV(name) DS_XV_CAT(name, DS_XVECTOR_SUFFIX)

// No floating-point exception is ever read here: without trapping math the compiler may
// compute both sides of leaky_relu's select and vectorize it (values are unchanged).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math")
#endif

namespace denseshift {
namespace xv {

void DS_XV(leaky_relu)(float* __restrict__ y, int64_t rows, int64_t cols, int64_t ld, float slope) {
  for (int64_t r = 0; r < rows; ++r) {
    float* v = y + r * ld;
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) v[c] = v[c] > 0.0f ? v[c] : v[c] * slope;
  }
}

void DS_XV(affine)(float* __restrict__ y, int64_t rows, int64_t cols, int64_t ld, const float* __restrict__ a,
                   const float* __restrict__ b, bool fused) {
  for (int64_t r = 0; r < rows; ++r) {
    float* v = y + r * ld;
    if (fused) {
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) v[c] = __builtin_fmaf(v[c], a[c], b[c]);
    } else {
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) v[c] = v[c] * a[c] + b[c];
    }
  }
}

#ifndef DS_XVECTOR_MEAN_HELPERS
#define DS_XVECTOR_MEAN_HELPERS
namespace {
// ATen's utils::CeilLog2: 1 for x <= 2, else floor(log2(x - 1)) + 1
inline int64_t ceil_log2(int64_t x) {
  if (x <= 2) return 1;
  int64_t v = x - 1, r = 0;
  while (v >>= 1) ++r;
  return r + 1;
}
}  // namespace
#endif

// One torch "element" (a vector of `lanes` consecutive frames, or one frame) added into
// acc[lane][channel] for channels [0, cb).
#define DS_XV_ADD(acc, e)                                                             \
  for (int64_t l = 0; l < lanes; ++l) {                                               \
    const float* xr = x + ((e) * lanes + l) * ld;                                     \
    float* a = (acc) + l * kMeanBlock;                                                \
    _Pragma("omp simd") for (int64_t c = 0; c < cb; ++c) a[c] += xr[c];               \
  }

void DS_XV(mean_over_time)(const float* __restrict__ x0, int64_t T, int64_t C, int64_t ld, int64_t vec_lanes,
                           float* __restrict__ out, float* __restrict__ scratch) {
  const bool vec = T >= vec_lanes;  // vectorized_inner_sum, else scalar_inner_sum
  const int64_t lanes = vec ? vec_lanes : 1;
  const int64_t size = vec ? T / vec_lanes : T;  // elements of the row_sum
  const int64_t stride = lanes * kMeanBlock;     // floats of one element's accumulator
  // row_sum: multi_row_sum over size / 4 rows of 4 elements (4 accumulation levels)
  const int64_t rows = size / 4;
  const int64_t level_power = ceil_log2(rows) / 4 > 4 ? ceil_log2(rows) / 4 : 4;
  const int64_t level_step = int64_t(1) << level_power, level_mask = level_step - 1;
  for (int64_t c0 = 0; c0 < C; c0 += kMeanBlock) {
    const int64_t cb = C - c0 < kMeanBlock ? C - c0 : kMeanBlock;
    const float* x = x0 + c0;
    float* acc = scratch;  // [level][k][lane][channel]
    for (int64_t i = 0; i < 16 * stride; ++i) acc[i] = 0.0f;
    auto at = [&](int64_t level, int64_t k) { return acc + (level * 4 + k) * stride; };
    int64_t i = 0;
    for (; i + level_step <= rows;) {
      for (int64_t j = 0; j < level_step; ++j, ++i)
        for (int64_t k = 0; k < 4; ++k) DS_XV_ADD(at(0, k), 4 * i + k)
      for (int64_t j = 1; j < 4; ++j) {
        for (int64_t k = 0; k < 4; ++k) {
          float *dst = at(j, k), *src = at(j - 1, k);
#pragma omp simd
          for (int64_t v = 0; v < stride; ++v) {
            dst[v] += src[v];
            src[v] = 0.0f;
          }
        }
        if ((i & (level_mask << (j * level_power))) != 0) break;
      }
    }
    for (; i < rows; ++i)
      for (int64_t k = 0; k < 4; ++k) DS_XV_ADD(at(0, k), 4 * i + k)
    for (int64_t j = 1; j < 4; ++j)
      for (int64_t k = 0; k < 4; ++k) {
        float *dst = at(0, k), *src = at(j, k);
#pragma omp simd
        for (int64_t v = 0; v < stride; ++v) dst[v] += src[v];
      }
    float* part = at(0, 0);
    for (int64_t e = rows * 4; e < size; ++e) DS_XV_ADD(part, e)
    for (int64_t k = 1; k < 4; ++k) {
      const float* src = at(0, k);
#pragma omp simd
      for (int64_t v = 0; v < stride; ++v) part[v] += src[v];
    }
    for (int64_t c = 0; c < cb; ++c) {
      float sum;
      if (vec) {  // the scalar tail first, then the lanes, into a float that starts at 0
        sum = 0.0f;
        for (int64_t t = size * lanes; t < T; ++t) sum += x[t * ld + c];
        for (int64_t l = 0; l < lanes; ++l) sum += part[l * kMeanBlock + c];
      } else {
        sum = part[c];
      }
      out[c0 + c] = (0.0f + sum) / float(T);  // the output starts at 0 and accumulates
    }
  }
}
#undef DS_XV_ADD

void DS_XV(std_over_time)(const float* __restrict__ x, int64_t T, int64_t C, int64_t ld, float* __restrict__ out,
                          double* __restrict__ scratch) {
  double* __restrict__ mean = scratch;
  double* __restrict__ m2 = scratch + C;
  for (int64_t c = 0; c < C; ++c) mean[c] = m2[c] = 0.0;
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x + t * ld;
    const double n = double(t + 1);
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      const double v = double(xr[c]);
      const double delta = v - mean[c];
      const double m = mean[c] + delta / n;
      m2[c] = m2[c] + delta * (v - m);
      mean[c] = m;
    }
  }
  const double divisor = double(T) > 1.0 ? double(T) - 1.0 : 0.0;  // correction 1
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) out[c] = float(std::sqrt(m2[c] / divisor));
}

}  // namespace xv
}  // namespace denseshift

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

#undef DS_XV
#undef DS_XV_CAT
#undef DS_XV_CAT2

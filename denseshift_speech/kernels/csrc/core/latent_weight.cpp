// Scalar loops of the training weight (layout and tables: latent_weight.h).  Memory
// bound: one read of the latents and one write of the weight and the int16 index
// forward, one read of the gradient and the index and one write of the latents'
// gradients backward; the torch ops it replaces made 6-8 passes.
#include "latent_weight.h"

#include <cmath>

namespace denseshift::training {
namespace {

// The loops, with the level count a constant so the per-level loops unroll.
template <int L>
void forward_rows(const float* sign, const float* thermo, const float* alpha, int64_t alpha_stride,
                  const float* value, int64_t n, int64_t cols, int64_t r0, int64_t r1, int16_t* index, float* w) {
  for (int64_t r = r0; r < r1; ++r) {
    const float a = alpha[r * alpha_stride];
    for (int64_t i = r * cols; i < (r + 1) * cols; ++i) {
      const float s = sign[i];
      int idx = (s >= 0.f) << L;
      bool is_nan = std::isnan(s);
      for (int k = 0; k < L; ++k) {
        const float t = thermo[k * n + i];
        idx |= (t > 0.f) << k;
        is_nan |= std::isnan(t);
      }
      if (is_nan) idx = nan_entry(L);
      index[i] = static_cast<int16_t>(idx);
      w[i] = a * value[idx];
    }
  }
}

template <int L>
void backward_rows(const float* grad, const int16_t* index, const float* alpha, int64_t alpha_stride,
                   const float* grads, const float* value, int64_t n, int64_t cols, int64_t r0, int64_t r1,
                   float* g_sign, float* g_thermo, double* row_sum) {
  constexpr int64_t stride = table_size(L);  // grads is (L + 1) x stride
  for (int64_t r = r0; r < r1; ++r) {
    const float a = alpha[r * alpha_stride];
    double sum = 0.0;
    for (int64_t i = r * cols; i < (r + 1) * cols; ++i) {
      const int idx = index[i];
      const float g = grad[i];
      if (g_sign != nullptr) {
        const float ga = g * a;
        const float sq = grads[idx];
        g_sign[i] = ga * sq;
        const float per_level = ga / sq;
        for (int k = 0; k < L; ++k) g_thermo[k * n + i] = grads[(k + 1) * stride + idx] * per_level;
      }
      if (row_sum != nullptr) sum += static_cast<double>(g * value[idx]);
    }
    if (row_sum != nullptr) row_sum[r] = sum;
  }
}

}  // namespace

void latent_weight_rows(const float* sign, const float* thermo, const float* alpha, int64_t alpha_stride,
                        const float* value, int levels, int64_t n, int64_t cols, int64_t r0, int64_t r1,
                        int16_t* index, float* w) {
  switch (levels) {  // the glue accepts 1, 3 and 7 only
    case 1: return forward_rows<1>(sign, thermo, alpha, alpha_stride, value, n, cols, r0, r1, index, w);
    case 3: return forward_rows<3>(sign, thermo, alpha, alpha_stride, value, n, cols, r0, r1, index, w);
    case 7: return forward_rows<7>(sign, thermo, alpha, alpha_stride, value, n, cols, r0, r1, index, w);
  }
}

void latent_weight_backward_rows(const float* grad, const int16_t* index, const float* alpha,
                                 int64_t alpha_stride, const float* grads, const float* value, int levels,
                                 int64_t n, int64_t cols, int64_t r0, int64_t r1, float* g_sign,
                                 float* g_thermo, double* row_sum) {
  switch (levels) {  // the glue accepts 1, 3 and 7 only
    case 1:
      return backward_rows<1>(grad, index, alpha, alpha_stride, grads, value, n, cols, r0, r1, g_sign, g_thermo,
                              row_sum);
    case 3:
      return backward_rows<3>(grad, index, alpha, alpha_stride, grads, value, n, cols, r0, r1, g_sign, g_thermo,
                              row_sum);
    case 7:
      return backward_rows<7>(grad, index, alpha, alpha_stride, grads, value, n, cols, r0, r1, g_sign, g_thermo,
                              row_sum);
  }
}

}  // namespace denseshift::training

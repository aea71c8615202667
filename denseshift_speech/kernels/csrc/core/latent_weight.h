// The DenseShift training weight of 2-4 bits, latents -> alpha * s * 2**e, and its
// straight-through surrogate gradients, in one pass each (denseshift::latent_weight and
// denseshift::latent_weight_backward; Python twin: kernels/reference.py; math:
// core/quant.py, fused_weight).
//
// Layout: a weight of n = rows * cols values (dim 0 = rows, the rest flattened), the
// sign latent (n floats), the thermometer latents (levels x n floats, level-major), and
// alpha per row (alpha_stride 1) or one for the tensor (alpha_stride 0).  Each value is
// decoded through a table index, saved for the backward instead of any latent:
//
//   index = positive << levels | sum_k B01(T_k) << k      (positive = sign >= 0)
//   index = nan_entry(levels) where any latent is NaN
//
// The tables come from Python (quant._pattern_tables): value[index] = s 2**e,
// grads[0][index] = sqrt(e + 1), grads[k][index] = the level-k factor / 2, so both paths
// use the same constants and round every product the same way.
#pragma once
#include <cstdint>

namespace denseshift::training {

constexpr int kMaxLevels = 7;  // 4 bits: 2**(4-1) - 1 thermometer levels
constexpr int nan_entry(int levels) { return 2 << levels; }
constexpr int table_size(int levels) { return nan_entry(levels) + 1; }
static_assert(table_size(kMaxLevels) - 1 <= INT16_MAX, "the saved index is int16");

// rows [r0, r1): index and w = alpha * value[index]; levels is 1, 3 or 7 (2-4 bits)
void latent_weight_rows(const float* sign, const float* thermo, const float* alpha, int64_t alpha_stride,
                        const float* value, int levels, int64_t n, int64_t cols, int64_t r0, int64_t r1,
                        int16_t* index, float* w);

// rows [r0, r1): with ga = grad * alpha,
//   g_sign = ga * sqrt(e+1),  g_thermo[k] = grads[k+1] * (ga / sqrt(e+1))   (if g_sign)
//   row_sum[r] = sum over the row of grad * s 2**e (double; alpha's gradient before
//   the factor alpha ln 2)                                                   (if row_sum)
void latent_weight_backward_rows(const float* grad, const int16_t* index, const float* alpha,
                                 int64_t alpha_stride, const float* grads, const float* value, int levels,
                                 int64_t n, int64_t cols, int64_t r0, int64_t r1, float* g_sign,
                                 float* g_thermo, double* row_sum);

}  // namespace denseshift::training

// Pointwise post-ops of the fused layers, as plain loops vectorized for the target of the
// including file; define DS_SILU_NAME before including (needs ds_exp from attention_impl.h).
//   silu: x * sigmoid(x) = x / (1 + exp(-x)), in place (speechbrain's Swish with beta 1)
#include <cstdint>

namespace denseshift {
namespace tiled {

void DS_SILU_NAME(float* __restrict__ x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] / (1.0f + ds_exp(-x[i]));
}

}  // namespace tiled
}  // namespace denseshift

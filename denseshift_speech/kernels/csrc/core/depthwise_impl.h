// Depthwise Conv1d over time on channels-last activations (B, T, C) -- the conformer
// convolution module's layout, so no transposes: output channels are the vector lanes.
//   out[b, t, c] = bias[c] + sum_j w[j, c] * x[b, t + j*dil - pad, c]  (zero padding)
// Plain loops vectorized by the compiler for the target of the including file; define
// DS_DEPTHWISE_NAME before including.
#include <cstdint>

namespace denseshift {
namespace tiled {

void DS_DEPTHWISE_NAME(const float* __restrict__ x, int64_t B, int64_t T, int64_t C, const float* __restrict__ w,
                       const float* __restrict__ bias, int64_t K, int64_t pad, int64_t dil, int64_t Tout,
                       float* __restrict__ out) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < Tout; ++t) {
      float* o = out + (b * Tout + t) * C;
      for (int64_t c = 0; c < C; ++c) o[c] = bias[c];
      for (int64_t j = 0; j < K; ++j) {
        const int64_t ti = t + j * dil - pad;
        if (ti < 0 || ti >= T) continue;
        const float* xi = x + (b * T + ti) * C;
        const float* wj = w + j * C;
        for (int64_t c = 0; c < C; ++c) o[c] = DS_FMA(xi[c], wj[c], o[c]);
      }
    }
}

}  // namespace tiled
}  // namespace denseshift

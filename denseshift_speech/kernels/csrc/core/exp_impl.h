// exp for the loop bodies compiled per target (attention_impl.h, pointwise_impl.h):
// 2^n * 2^f with a degree-6 polynomial on f in [-1/2, 1/2] (relative error below 3e-7 for
// |x| < 10; the float range reduction loses accuracy for large |x|, about 5e-6 near -80),
// inputs clamped to [-87, 88].  Branch-free and libm-free so loops vectorize.
#pragma once
#include <cstdint>
#include <cstring>

namespace denseshift {
namespace tiled {

namespace {
inline float ds_exp(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float t = x * 1.44269504088896341f;
  const float n = (t + 12582912.0f) - 12582912.0f;  // round to nearest (|t| < 2^22), no libm call
  const float f = t - n;
  float p = 1.540353039338161e-4f;
  p = p * f + 1.339887440266574e-3f;
  p = p * f + 9.618437357674640e-3f;
  p = p * f + 5.550332471162809e-2f;
  p = p * f + 2.402264791363012e-1f;
  p = p * f + 6.931472028550421e-1f;
  p = p * f + 1.0f;
  const int32_t e = (int32_t(n) + 127) << 23;
  float s;
  std::memcpy(&s, &e, 4);
  return p * s;
}
}  // namespace

}  // namespace tiled
}  // namespace denseshift

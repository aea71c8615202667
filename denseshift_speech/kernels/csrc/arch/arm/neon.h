// Tiled kernels for aarch64 (arch/arm/neon.cpp).  Declared here, not in tiled.h, so
// the core stays architecture-neutral; cpu_features.cpp includes this on aarch64 only.
//   f32_neon           exact path: nibble -> float bytes by table (tbl), fmla by lane
//   i8_neon            int8 path, ARMv8.0 (Cortex-A53/A57): smull/smlal + sadalp
//   i8_neon_dotprod    int8 path, FEAT_DotProd: sdot (compiled for armv8.2-a+dotprod)
//   i8_neon_i8mm       int8 path, FEAT_I8MM: smmla on row pairs, sdot for an odd row
// Every int8 kernel computes the same int32 sum_k q*w as i8_scalar, so its output is
// bit-equal to the scalar reference (and to the x86 kernels).
#pragma once
#include <cstdint>

#include "tiled.h"

namespace denseshift {
namespace tiled {

void f32_neon(const Layer&, const F32Args&, int64_t, int64_t);
void i8_neon(const Layer&, const I8Args&, int64_t, int64_t);
void i8_neon_dotprod(const Layer&, const I8Args&, int64_t, int64_t);
void i8_neon_i8mm(const Layer&, const I8Args&, int64_t, int64_t);
void quantize_rows_neon(const float*, int64_t, int64_t, int64_t, int64_t, uint8_t*, float*, uint8_t*);
void attention_neon(const float*, const float*, const float*, const float*, const uint8_t*, int64_t, int64_t,
                    int64_t, float, float*, float*);
void depthwise_tc_neon(const float*, int64_t, int64_t, int64_t, const float*, const float*, int64_t, int64_t,
                       int64_t, int64_t, float*);
// Post-ops of the fused layers (pointwise_impl.h): silu, and glu / layer_norm / axpy
// where tiled.h declares the per-suffix set.
#ifdef DS_DECLARE_POINTWISE
DS_DECLARE_POINTWISE(_neon)
#else
void silu_neon(float*, int64_t);
#endif

}  // namespace tiled
}  // namespace denseshift

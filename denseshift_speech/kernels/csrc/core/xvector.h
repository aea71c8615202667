// Post-ops of the fused x-vector network (denseshift::xvector, torch/ops_xvector.cpp),
// compiled once per target from xvector_impl.h: the arithmetic of SpeechBrain's layers as
// the torch CPU kernels compute it, so the fused network equals the module-by-module one
// bit for bit.
//   leaky_relu:    x > 0 ? x : x * slope, in place (torch's leaky_relu)
//   affine:        x * a[c] + b[c] per column c, in place: batch norm in eval mode as a
//                  per-channel affine; `fused`: one rounding (fma, what torch's x86 and
//                  aarch64 builds compute), else two
//   mean_over_time: the mean over the T rows of x (T, C) per column as torch.mean over a
//                  contiguous time axis computes it: its cascade sum (row_sum / multi_row_sum of
//                  its CPU sum kernel, 4 accumulation levels) over vectors of `lanes`
//                  floats (Vectorized<float>::size() of torch's CPU capability) when
//                  T >= lanes, else over single floats, then divided by T
//   std_over_time: unbiased standard deviation over the T rows of x (T, C) per column,
//                  Welford's update in double as torch.std on the CPU, the square root in
//                  double, then rounded to float (T = 1: NaN, as torch)
#pragma once
#include <cstdint>

namespace denseshift {
namespace xv {

using LeakyFn = void (*)(float* y, int64_t rows, int64_t cols, int64_t ld, float slope);
using AffineFn = void (*)(float* y, int64_t rows, int64_t cols, int64_t ld, const float* a, const float* b,
                          bool fused);
using MeanFn = void (*)(const float* x, int64_t T, int64_t C, int64_t ld, int64_t lanes, float* out,
                        float* scratch /* kMeanScratch */);
using StdFn = void (*)(const float* x, int64_t T, int64_t C, int64_t ld, float* out, double* scratch /* 2 C */);
constexpr int64_t kMaxLanes = 16;                                // widest torch Vectorized<float>
constexpr int64_t kMeanBlock = 16;                               // channels per pass
constexpr int64_t kMeanScratch = 4 * 4 * kMaxLanes * kMeanBlock;  // levels x ilp x lanes x channels

struct Ops {
  const char* name;
  LeakyFn leaky_relu;
  AffineFn affine;
  MeanFn mean_over_time;
  StdFn std_over_time;
};

#define DS_DECLARE_XVECTOR(suffix)                                                                         \
  void leaky_relu##suffix(float*, int64_t, int64_t, int64_t, float);                                      \
  void affine##suffix(float*, int64_t, int64_t, int64_t, const float*, const float*, bool);               \
  void mean_over_time##suffix(const float*, int64_t, int64_t, int64_t, int64_t, float*, float*);          \
  void std_over_time##suffix(const float*, int64_t, int64_t, int64_t, float*, double*);
DS_DECLARE_XVECTOR(_scalar)
#if defined(__x86_64__) || defined(_M_X64)
DS_DECLARE_XVECTOR(_avx2)  // arch/x86/xvector_avx2.cpp (AVX2 + FMA: the avx2 and avx512 paths)
#endif
#if defined(__aarch64__)
DS_DECLARE_XVECTOR(_neon)  // arch/arm/xvector_neon.cpp
#endif
#undef DS_DECLARE_XVECTOR

// The post-ops for a tiled-kernel path (cpu_features.h PathInfo::name): the SIMD build of
// that target, or the scalar one (whose fma is the C library's, exact but slow).
const Ops& ops_for(const char* tiled_path);

}  // namespace xv
}  // namespace denseshift

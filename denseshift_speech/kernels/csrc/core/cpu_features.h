// CPU feature detection and the table of tiled-kernel paths this CPU can run.
// Plain C++ (no torch): cpuid on x86 (through the compiler's builtins), getauxval on
// Linux aarch64.  The scalar reference is always available and always last.
#pragma once
#include <string>
#include <vector>

#include "tiled.h"

namespace denseshift {

struct CpuFeatures {
  bool avx2 = false, fma = false, avx512 = false /* F+BW+VL+DQ */, avx512vnni = false;
  bool neon = false, dotprod = false, i8mm = false;
};
const CpuFeatures& cpu_features();
std::string describe_cpu();

struct PathInfo {
  const char* name;        // "avx512", "avx2", "neon-dotprod", "neon", "scalar"
  tiled::F32Kernel f32;    // exact-float tiled kernel
  tiled::I8Kernel i8;      // int8-activation tiled kernel
  tiled::QuantizeRows quantize;  // per-row int8 quantization of activations
  tiled::AttentionFn attention;  // relative-position attention of one sequence
  tiled::DepthwiseFn depthwise;  // depthwise conv over time, channels-last
  tiled::SiluFn silu;            // in-place silu of the fused layers
  // Row-wise post-ops of the fused layers; nullptr: the scalar ones (tiled_scalar.cpp).
  tiled::GluFn glu = nullptr;
  tiled::LayerNormFn layer_norm = nullptr;
  tiled::AxpyFn axpy = nullptr;
};
// Paths this CPU can run, best first (scalar last).
std::vector<PathInfo> available_paths();
// The path named `name` ("auto": the best), or nullptr when this CPU cannot run it.
const PathInfo* find_path(const std::string& name);

}  // namespace denseshift

#include "cpu_features.h"

#if defined(__aarch64__)
#include "../arch/arm/neon.h"
#endif

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1 << 13)
#endif
#endif

namespace denseshift {

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = [] {
    CpuFeatures c;
#if defined(__x86_64__) || defined(_M_X64)
    __builtin_cpu_init();
    c.avx2 = __builtin_cpu_supports("avx2");
    c.fma = __builtin_cpu_supports("fma");
    c.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    c.avx512vnni = c.avx512 && __builtin_cpu_supports("avx512vnni");
#elif defined(__aarch64__)
    c.neon = true;  // mandatory in ARMv8-A
#if defined(__linux__)
    c.dotprod = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
    c.i8mm = (getauxval(AT_HWCAP2) & HWCAP2_I8MM) != 0;
#endif
#endif
    return c;
  }();
  return f;
}

std::string describe_cpu() {
  const CpuFeatures& c = cpu_features();
  std::string s;
  auto add = [&](bool on, const char* n) {
    if (on) s += (s.empty() ? "" : " ") + std::string(n);
  };
  add(c.avx2, "avx2");
  add(c.fma, "fma");
  add(c.avx512, "avx512");
  add(c.avx512vnni, "avx512vnni");
  add(c.neon, "neon");
  add(c.dotprod, "dotprod");
  add(c.i8mm, "i8mm");
  return s.empty() ? "none" : s;
}

std::vector<PathInfo> available_paths() {
  std::vector<PathInfo> out;
  const CpuFeatures& c = cpu_features();
  (void)c;
#if defined(__x86_64__) || defined(_M_X64)
  // AVX-512 without VNNI (Skylake-X) runs the AVX2 int8 kernel.
  if (c.avx512 && c.avx2 && c.fma)
    out.push_back({"avx512", tiled::f32_avx512, c.avx512vnni ? tiled::i8_avx512vnni : tiled::i8_avx2,
                   tiled::quantize_rows_avx512, tiled::attention_avx512, tiled::depthwise_tc_avx512, tiled::silu_avx512,
                   tiled::glu_avx512, tiled::layer_norm_avx512, tiled::axpy_avx512});
  if (c.avx2 && c.fma) out.push_back({"avx2", tiled::f32_avx2, tiled::i8_avx2, tiled::quantize_rows, tiled::attention_avx2, tiled::depthwise_tc_avx2, tiled::silu_avx2, tiled::glu_avx2, tiled::layer_norm_avx2, tiled::axpy_avx2});
#endif
#if defined(__aarch64__)
#if defined(DS_DECLARE_POINTWISE)  // per-ISA glu / layer_norm / axpy (pointwise_impl.h)
#define DS_NEON_POSTOPS , tiled::glu_neon, tiled::layer_norm_neon, tiled::axpy_neon
#else
#define DS_NEON_POSTOPS
#endif
  // Every path shares the ARMv8.0 exact-float kernel and quantizer; they differ in the
  // int8 kernel.  i8mm implies dotprod architecturally (ARMv8.6), checked anyway.
  if (c.neon && c.dotprod && c.i8mm)
    out.push_back({"neon-i8mm", tiled::f32_neon, tiled::i8_neon_i8mm, tiled::quantize_rows_neon, tiled::attention_neon, tiled::depthwise_tc_neon, tiled::silu_neon DS_NEON_POSTOPS});
  if (c.neon && c.dotprod)
    out.push_back({"neon-dotprod", tiled::f32_neon, tiled::i8_neon_dotprod, tiled::quantize_rows_neon, tiled::attention_neon, tiled::depthwise_tc_neon, tiled::silu_neon DS_NEON_POSTOPS});
  if (c.neon)
    out.push_back({"neon", tiled::f32_neon, tiled::i8_neon, tiled::quantize_rows_neon, tiled::attention_neon, tiled::depthwise_tc_neon, tiled::silu_neon DS_NEON_POSTOPS});
#undef DS_NEON_POSTOPS
#endif
  out.push_back({"scalar", tiled::f32_scalar, tiled::i8_scalar, tiled::quantize_rows, tiled::attention_scalar, tiled::depthwise_tc_scalar, tiled::silu_scalar, tiled::glu_scalar, tiled::layer_norm_scalar, tiled::axpy_scalar});
  return out;
}

const PathInfo* find_path(const std::string& name) {
  static const std::vector<PathInfo> paths = available_paths();
  if (name == "auto") return &paths.front();
  for (const PathInfo& p : paths)
    if (name == p.name) return &p;
  return nullptr;
}

}  // namespace denseshift

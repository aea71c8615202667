// The x-vector post-ops (xvector.h): the portable build, and the choice per path.
#include "xvector.h"

#include <cstring>

#define DS_XVECTOR_SUFFIX _scalar
#include "xvector_impl.h"
#undef DS_XVECTOR_SUFFIX

namespace denseshift {
namespace xv {

const Ops& ops_for(const char* tiled_path) {
  static const Ops scalar{"scalar", leaky_relu_scalar, affine_scalar, mean_over_time_scalar, std_over_time_scalar};
#if defined(__x86_64__) || defined(_M_X64)
  // the avx512 and avx2 paths both require AVX2 + FMA (cpu_features.cpp)
  static const Ops avx2{"avx2", leaky_relu_avx2, affine_avx2, mean_over_time_avx2, std_over_time_avx2};
  if (std::strncmp(tiled_path, "avx", 3) == 0) return avx2;
#endif
#if defined(__aarch64__)
  static const Ops neon{"neon", leaky_relu_neon, affine_neon, mean_over_time_neon, std_over_time_neon};
  if (std::strncmp(tiled_path, "neon", 4) == 0) return neon;
#endif
  return scalar;
}

}  // namespace xv
}  // namespace denseshift

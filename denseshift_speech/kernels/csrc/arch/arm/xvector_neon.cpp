// The x-vector post-ops (core/xvector.h) built for AArch64 (NEON and FMA are baseline).
#include "xvector.h"
#if defined(__aarch64__)
#include <cmath>
#include <cstdint>

#define DS_XVECTOR_SUFFIX _neon
#include "xvector_impl.h"
#undef DS_XVECTOR_SUFFIX
#endif

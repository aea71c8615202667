// The x-vector post-ops (core/xvector.h) built for AVX2 + FMA (the avx2 and avx512 paths).
#include "xvector.h"
#if defined(__x86_64__) || defined(_M_X64)
#include <cmath>
#include <cstdint>

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define DS_XVECTOR_SUFFIX _avx2
#include "xvector_impl.h"
#undef DS_XVECTOR_SUFFIX
#pragma GCC pop_options
#endif

// DenseShift tiled kernels: the run-time weight layout and the torch-free kernel API.
//
// The packed *file* layout (common.h, b bits per code) is compact; at load time each
// layer is repacked once (repack_tiles) into this *tiled* layout, made for kernels whose
// vector lanes are output channels, so no kernel ever does a horizontal reduction:
//
//   rows are grouped into tiles of kLanes = 16 output channels (N padded to Np, pad rows
//   hold code 0 and are never stored), K is padded to Kq = ceil(K/8)*8 (code 0; callers
//   pad the activations with zeros), and each (tile t, k-group g of 8 codes) is one
//   64-byte group at byte offset (t * Kq/8 + g) * 64, in which
//
//     byte 4*lane + j  (lane 0..15, j 0..3) = code(16t+lane, 8g+j)
//                                           | code(16t+lane, 8g+4+j) << 4
//
// Every code (2, 3 or 4 bits) takes one nibble, so one 64-byte load feeds
//   * the int8 path:  low nibbles -> one VNNI operand (16 lanes x 4 k), high nibbles
//     -> the next (vpshufb maps nibble -> int8 weight);
//   * the exact path: dword lane L >> (8j) (or 8j+4) indexes a 16-entry float table
//     (vpermps reads only the low 4 bits) for k = 8g+j (or 8g+4+j).
//
// int8 path numerics (bit-equal to the PyTorch reference in kernels/reference.py):
//   amax_m = max_k |x[m,k]|; q = clamp(nearbyint(x * (127/amax_m)), -127, 127) (round half
//   to even); xscale_m = amax_m / 127; acc = sum_k q * w (int32, exact; the kernel feeds
//   q + 128 as u8 to vpdpbusd and subtracts 128 * rowsum[n]); y = float(acc) *
//   (xscale_m * alpha_n) + bias_n, with separate float roundings (no contraction).
//   Rows with a non-finite value go through the exact path instead (IEEE semantics).
//   4-bit weights reach +-128, which int8 cannot hold: a 4-bit weight is split as
//   w = lo + hi, lo = s*2^min(e,6), hi = s*64*(e==7), two int8 operands, two dot products.
#pragma once
#include <cstdint>

namespace denseshift {
namespace tiled {

constexpr int kLanes = 16;       // output channels per tile (one zmm of fp32 / int32)
constexpr int kGroupK = 8;       // codes per lane in one group
constexpr int kGroupBytes = 64;  // bytes per group
constexpr int kQuad = 4;         // k per VNNI dword
constexpr int kMaxBits = 4;      // one nibble per code
constexpr int64_t kMaxInt8K = 1 << 16;  // int32 accumulators stay exact below this K
static_assert(kLanes * kGroupK / 2 == kGroupBytes, "two nibble codes per byte");
static_assert(kGroupK == 2 * kQuad, "low nibbles: first quad, high nibbles: second quad");
static_assert(kLanes * kQuad == kGroupBytes, "one group half is one 64-byte VNNI operand");
static_assert((1 << kMaxBits) == 16, "a code indexes a 16-entry table (vpshufb / vpermps)");

// The tensors the torch ops pass around start with a 64-byte header naming what the tiles
// were repacked for, so a layer called with another shape or bit width is refused (the
// padding alone cannot tell K = 60 from K = 64): "DSTL", u32 version 1, i64 N, i64 K,
// i32 bits, zeros.  The kernels themselves get the groups after it.
constexpr int kTileHeaderBytes = 64;
constexpr uint32_t kTileHeaderVersion = 1;
static_assert(kTileHeaderBytes % kGroupBytes == 0, "groups stay 64-byte aligned after the header");

inline int64_t padded_rows(int64_t n) { return (n + kLanes - 1) / kLanes * kLanes; }
inline int64_t padded_k(int64_t k) { return (k + kGroupK - 1) / kGroupK * kGroupK; }
inline int64_t tile_bytes(int64_t kq) { return kq / kGroupK * kGroupBytes; }
inline int64_t tiled_bytes(int64_t n, int64_t k) { return padded_rows(n) / kLanes * tile_bytes(padded_k(k)); }

// Byte holding code (n, k) and the nibble shift inside it.
inline int64_t code_byte(int64_t n, int64_t k, int64_t kq) {
  return (n / kLanes) * tile_bytes(kq) + (k / kGroupK) * kGroupBytes + 4 * (n % kLanes) + (k % kQuad);
}
inline int code_shift(int64_t k) { return (k % kGroupK) >= kQuad ? 4 : 0; }

// Value tables indexed by a code (entries past 2^bits are 0).
struct Tables {
  float f32[16];
  int8_t lo[16];  // int8 weight, or its low part for 4-bit
  int8_t hi[16];  // 4-bit only: the part above 64 (0 otherwise)
};
Tables tables_for(int bits);

// One repacked layer.
struct Layer {
  const uint8_t* tiles;     // tiled_bytes(N, K)
  const int32_t* row_sums;  // padded_rows(N): sum over Kq of the int8 weights (lo + hi)
  const float* alpha;       // N
  const float* bias;        // N or nullptr
  int64_t N, K, Kq;
  int bits;
};

// Exact path: y[m, n] = alpha[n] * sum_k x[m, k] * w[n, k] + bias[n] (IEEE products).
struct F32Args {
  const float* x;  // (M, ldx), zero at columns K..Kq-1
  int64_t M, ldx;
  float* y;        // (M, ldy)
  int64_t ldy;
};
// int8 path (see the numerics above).
struct I8Args {
  const uint8_t* xq;    // (M, Kq) q + 128 (128 in the padding)
  const float* xscale;  // (M) amax / 127
  int64_t M;
  float* y;
  int64_t ldy;
};
// Each kernel computes output tiles [t0, t1) for all M rows.
using F32Kernel = void (*)(const Layer&, const F32Args&, int64_t t0, int64_t t1);
using I8Kernel = void (*)(const Layer&, const I8Args&, int64_t t0, int64_t t1);

// Packed file rows (common.h layout) -> tiled layout and row sums.
void repack(const uint8_t* packed, int64_t row_bytes, int64_t N, int64_t K, int bits, uint8_t* tiles,
            int32_t* row_sums);
// Per-row int8 quantization of x (M, K) with row stride ldx into xq (M, Kq); returns
// in finite[m] whether the row was finite (non-finite rows are left for the exact path).
void quantize_rows(const float* x, int64_t M, int64_t K, int64_t ldx, int64_t Kq, uint8_t* xq,
                   float* xscale, uint8_t* finite);
using QuantizeRows = decltype(&quantize_rows);

// Relative-position attention of one sequence (attention_impl.h).
using AttentionFn = void (*)(const float* qkv, const float* pk, const float* bu, const float* bv,
                             const uint8_t* kpm, int64_t T, int64_t H, int64_t D, float scale, float* out,
                             float* scratch);
inline int64_t attention_scratch(int64_t T, int64_t D) {  // enough for every path
  const int64_t Tp = (T + 15) / 16 * 16, Dp = (D + 15) / 16 * 16, Pp = (2 * T - 1 + 15) / 16 * 16 + 16;
  return D * Tp + D * (T - 1 + Tp) + D * Pp + 2 * T * Dp + 2 * T * D + T * Tp + T * Pp + Tp;
}
void attention_scalar(const float*, const float*, const float*, const float*, const uint8_t*, int64_t, int64_t,
                      int64_t, float, float*, float*);
// Depthwise conv over time on (B, T, C) activations, weights (K, C) (depthwise_impl.h).
using DepthwiseFn = void (*)(const float* x, int64_t B, int64_t T, int64_t C, const float* w, const float* bias,
                             int64_t K, int64_t pad, int64_t dil, int64_t Tout, float* out);
void depthwise_tc_scalar(const float*, int64_t, int64_t, int64_t, const float*, const float*, int64_t, int64_t,
                         int64_t, int64_t, float*);
void depthwise_tc_avx2(const float*, int64_t, int64_t, int64_t, const float*, const float*, int64_t, int64_t,
                       int64_t, int64_t, float*);
void depthwise_tc_avx512(const float*, int64_t, int64_t, int64_t, const float*, const float*, int64_t, int64_t,
                         int64_t, int64_t, float*);
// Post-ops of the fused layers (pointwise_impl.h), one set per ISA (suffix _scalar, ...).
using SiluFn = void (*)(float* x, int64_t n);
using GluFn = void (*)(const float* x, int64_t rows, int64_t C, float* out);
using LayerNormFn = void (*)(const float* x, int64_t rows, int64_t C, const float* w, const float* b, float eps,
                             float* out);
using AxpyFn = void (*)(float* y, const float* x, float a, int64_t n);
#define DS_DECLARE_POINTWISE(suffix)                                                                   \
  void silu##suffix(float*, int64_t);                                                                  \
  void glu##suffix(const float*, int64_t, int64_t, float*);                                            \
  void layer_norm##suffix(const float*, int64_t, int64_t, const float*, const float*, float, float*);  \
  void axpy##suffix(float*, const float*, float, int64_t);
DS_DECLARE_POINTWISE(_scalar)
DS_DECLARE_POINTWISE(_avx2)
DS_DECLARE_POINTWISE(_avx512)
void f32_scalar(const Layer&, const F32Args&, int64_t, int64_t);
void i8_scalar(const Layer&, const I8Args&, int64_t, int64_t);
#if defined(__x86_64__) || defined(_M_X64)
void quantize_rows_avx512(const float*, int64_t, int64_t, int64_t, int64_t, uint8_t*, float*, uint8_t*);
void f32_avx512(const Layer&, const F32Args&, int64_t, int64_t);
void i8_avx512vnni(const Layer&, const I8Args&, int64_t, int64_t);
void f32_avx2(const Layer&, const F32Args&, int64_t, int64_t);
void attention_avx2(const float*, const float*, const float*, const float*, const uint8_t*, int64_t, int64_t,
                    int64_t, float, float*, float*);
void attention_avx512(const float*, const float*, const float*, const float*, const uint8_t*, int64_t, int64_t,
                      int64_t, float, float*, float*);
void i8_avx2(const Layer&, const I8Args&, int64_t, int64_t);
#endif

}  // namespace tiled
}  // namespace denseshift

// Tiled layout: repacking, activation quantization and the scalar reference kernels
// every SIMD path is tested against.  Plain C++, no torch.
#include <cmath>
#include <cstring>

#include "common.h"
#include "tiled.h"

namespace denseshift {
namespace tiled {

Tables tables_for(int bits) {
  Tables t{};
  for (uint32_t c = 0; c < (1u << bits) && c < 16; ++c) {
    const float v = code_value(c, bits);
    t.f32[c] = v;
    const int iv = int(v);
    const int mag = iv < 0 ? -iv : iv;
    const int lo = mag > 64 ? 64 : mag;  // only 4-bit +-128 exceeds 64
    t.lo[c] = int8_t(iv < 0 ? -lo : lo);
    t.hi[c] = int8_t(iv < 0 ? -(mag - lo) : (mag - lo));
  }
  return t;
}

void repack(const uint8_t* packed, int64_t row_bytes, int64_t N, int64_t K, int bits, uint8_t* tiles,
            int32_t* row_sums) {
  const Planes P = planes_for(bits);
  const Tables T = tables_for(bits);
  const int64_t Np = padded_rows(N), Kq = padded_k(K);
  std::memset(tiles, 0, size_t(tiled_bytes(N, K)));  // code 0 everywhere, padding included
  for (int64_t n = 0; n < Np; ++n) {
    int32_t sum = 0;
    for (int64_t k = 0; k < Kq; ++k) {
      uint32_t code = 0;
      if (n < N && k < K) code = block_code(packed + n * row_bytes + (k / kBlock) * 8 * bits, P, int(k % kBlock));
      tiles[code_byte(n, k, Kq)] |= uint8_t(code << code_shift(k));
      sum += T.lo[code] + T.hi[code];
    }
    row_sums[n] = sum;
  }
}

void quantize_rows(const float* x, int64_t M, int64_t K, int64_t ldx, int64_t Kq, uint8_t* xq,
                   float* xscale, uint8_t* finite) {
  for (int64_t m = 0; m < M; ++m) {
    const float* xr = x + m * ldx;
    uint8_t* qr = xq + m * Kq;
    float amax = 0.0f;
    bool ok = true;
    for (int64_t k = 0; k < K; ++k) {
      const float a = std::fabs(xr[k]);
      ok = ok && std::isfinite(a);
      amax = a > amax ? a : amax;
    }
    finite[m] = ok;
    if (!ok || amax == 0.0f) {
      std::memset(qr, 128, size_t(Kq));
      xscale[m] = 0.0f;
      continue;
    }
    const float inv = 127.0f / amax;
    for (int64_t k = 0; k < K; ++k) {
      float q = std::nearbyint(xr[k] * inv);
      q = q > 127.0f ? 127.0f : (q < -127.0f ? -127.0f : q);
      qr[k] = uint8_t(int(q) + 128);
    }
    for (int64_t k = K; k < Kq; ++k) qr[k] = 128;
    xscale[m] = amax / 127.0f;
  }
}

namespace {
inline int code_at(const Layer& L, int64_t n, int64_t k) {
  return (L.tiles[code_byte(n, k, L.Kq)] >> code_shift(k)) & 15;
}
}  // namespace

void f32_scalar(const Layer& L, const F32Args& a, int64_t t0, int64_t t1) {
  const Tables T = tables_for(L.bits);
  const int64_t n1 = t1 * kLanes < L.N ? t1 * kLanes : L.N;
  for (int64_t n = t0 * kLanes; n < n1; ++n)
    for (int64_t m = 0; m < a.M; ++m) {
      const float* xr = a.x + m * a.ldx;
      float s = 0.0f;
      for (int64_t k = 0; k < L.K; ++k) s += xr[k] * T.f32[code_at(L, n, k)];
      float y = s * L.alpha[n];
      if (L.bias) y = y + L.bias[n];
      a.y[m * a.ldy + n] = y;
    }
}

void i8_scalar(const Layer& L, const I8Args& a, int64_t t0, int64_t t1) {
  const Tables T = tables_for(L.bits);
  const int64_t n1 = t1 * kLanes < L.N ? t1 * kLanes : L.N;
  for (int64_t n = t0 * kLanes; n < n1; ++n)
    for (int64_t m = 0; m < a.M; ++m) {
      const uint8_t* qr = a.xq + m * L.Kq;
      int32_t acc = 0;  // the SIMD paths' biased sum, corrected below: same integer
      for (int64_t k = 0; k < L.Kq; ++k) {
        const int c = code_at(L, n, k);
        acc += int32_t(qr[k]) * (T.lo[c] + T.hi[c]);
      }
      acc -= 128 * L.row_sums[n];
      const float s = a.xscale[m] * L.alpha[n];
      float y = float(acc) * s;
      if (L.bias) y = y + L.bias[n];
      a.y[m * a.ldy + n] = y;
    }
}

}  // namespace tiled
}  // namespace denseshift

#define DS_FMA(a, b, c) ((a) * (b) + (c))
#define DS_ATTENTION_NAME attention_scalar
#include "attention_impl.h"
#define DS_DEPTHWISE_NAME depthwise_tc_scalar
#include "depthwise_impl.h"
#define DS_POINTWISE_SUFFIX _scalar
#include "pointwise_impl.h"

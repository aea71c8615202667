// Portable scalar path: always compiled, always available (ARM boards, old x86).
#include "common.h"

namespace denseshift {

void decode_rows_scalar(const uint8_t* w, int64_t rows, int64_t row_bytes, int64_t Kp, int bits,
                        float* out) {
  const Planes P = planes_for(bits);
  float lut[256];
  for (uint32_t c = 0; c < (1u << bits); ++c) lut[c] = code_value(c, bits);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < Kp / kBlock; ++b) {
      const uint8_t* bp = w + r * row_bytes + b * 8 * bits;
      for (int t = 0; t < kBlock; ++t) out[r * Kp + b * kBlock + t] = lut[block_code(bp, P, t)];
    }
}

void linear_add_scalar(const LinArgs& a, int64_t n0, int64_t n1) {
  const Planes P = planes_for(a.bits);
  const int64_t nblk = a.Kp / kBlock;
  uint32_t addend[kBlock];
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* wr = a.w + n * a.row_bytes;
    for (int64_t m = 0; m < a.M; ++m) a.acc[m * a.N + n] = 0.0f;
    for (int64_t b = 0; b < nblk; ++b) {
      const uint8_t* bp = wr + b * 8 * a.bits;
      for (int t = 0; t < kBlock; ++t) addend[t] = code_addend(block_code(bp, P, t), a.bits);
      for (int64_t m = 0; m < a.M; ++m) {
        const float* xr = a.x + m * a.Kp + b * kBlock;
        const uint32_t* mr = a.mask ? a.mask + m * a.Kp + b * kBlock : nullptr;
        float s = 0.0f;
        for (int t = 0; t < kBlock; ++t) {
          uint32_t u = f2u(xr[t]) + addend[t];
          if (mr) u &= mr[t];
          s += u2f(u);
        }
        a.acc[m * a.N + n] += s;
      }
    }
  }
}

void linear_fma_scalar(const LinArgs& a, int64_t n0, int64_t n1) {
  const Planes P = planes_for(a.bits);
  const int64_t nblk = a.Kp / kBlock;
  float wv[kBlock];
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* wr = a.w + n * a.row_bytes;
    for (int64_t m = 0; m < a.M; ++m) a.acc[m * a.N + n] = 0.0f;
    for (int64_t b = 0; b < nblk; ++b) {
      const uint8_t* bp = wr + b * 8 * a.bits;
      for (int t = 0; t < kBlock; ++t) wv[t] = code_value(block_code(bp, P, t), a.bits);
      for (int64_t m = 0; m < a.M; ++m) {
        const float* xr = a.x + m * a.Kp + b * kBlock;
        float s = 0.0f;
        for (int t = 0; t < kBlock; ++t) s += xr[t] * wv[t];
        a.acc[m * a.N + n] += s;
      }
    }
  }
}

void dw_add_scalar(const DwArgs& a) {
  for (int64_t t = 0; t < a.Tout; ++t) a.out[t] = 0.0f;
  for (int64_t j = 0; j < a.k; ++j) {
    const float* xr = a.x + j * a.dil;
    const uint32_t* mr = a.mask + j * a.dil;
    const uint32_t ad = a.addend[j];
    for (int64_t t = 0; t < a.Tout; ++t) a.out[t] += u2f((f2u(xr[t]) + ad) & mr[t]);
  }
}

void dw_fma_scalar(const DwArgs& a) {
  for (int64_t t = 0; t < a.Tout; ++t) a.out[t] = 0.0f;
  for (int64_t j = 0; j < a.k; ++j) {
    const float* xr = a.x + j * a.dil;
    const float w = a.wval[j];
    for (int64_t t = 0; t < a.Tout; ++t) a.out[t] += xr[t] * w;
  }
}

}  // namespace denseshift

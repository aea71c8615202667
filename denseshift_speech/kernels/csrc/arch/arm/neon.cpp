// Tiled kernels for aarch64 NEON (see tiled.h for the layout and the int8 numerics).
//
// One 64-byte group of a tile is four 16-byte registers; register q holds lanes
// 4q..4q+3 (output channels), 4 bytes each, byte j = code(k = 8g+j) | code(8g+4+j) << 4.
//
//   exact path (f32_neon, ARMv8.0): a register is transposed (tbl) to k-major order, its
//     nibbles index two 16-entry byte tables (tbl) holding bytes 2 and 3 of the float
//     +-2^e (the low two bytes are zero), a zip pairs them into 16-bit top halves and
//     shll #16 makes 4 floats per instruction; fmla-by-lane multiplies 4 output channels
//     by one activation.  (A tbl2 per k would be one op less, but GCC 12 spills the
//     register pairs tbl2 needs to the stack.)
//   int8 path: tbl maps nibbles to int8 weights (4-bit: lo + hi parts, tiled.h), q is fed
//     signed (xq ^ 0x80), so the int32 accumulator is sum_k q*w directly:
//       dotprod: sdot by lane, 4 k per instruction (compiled for armv8.2-a+dotprod);
//       i8mm:    smmla, a 2-row x 8-k by 2-channel x 8-k block per instruction;
//       ARMv8.0: smull/smlal into int16 (|q*w| <= 127*64, four terms < 2^15), then sadalp.
// Only the dotprod / i8mm functions carry their target pragmas, so the rest of the
// binary stays ARMv8.0; cpu_features.cpp picks the path from getauxval at run time.
// The epilogues match i8_scalar operation by operation; the build must not contract
// a*b+c into fma (setup.py passes -ffp-contract=off, as for every file).
#include "neon.h"
#if defined(__aarch64__)
#include <arm_neon.h>

#include <cfloat>
#include <cmath>
#include <cstring>

namespace denseshift {
namespace tiled {
namespace {

// alpha / bias of one tile, zero padded to 16 lanes, and the number of real lanes.
struct Epi {
  float alpha[kLanes], bias[kLanes];
  int n;
  bool has_bias;
};

inline void load_epi(const Layer& L, int64_t t, Epi& e) {
  const int64_t n0 = t * kLanes;
  e.n = int(L.N - n0 < kLanes ? L.N - n0 : kLanes);
  e.has_bias = L.bias != nullptr;
  for (int l = 0; l < kLanes; ++l) {
    e.alpha[l] = l < e.n ? L.alpha[n0 + l] : 0.0f;
    e.bias[l] = (l < e.n && L.bias) ? L.bias[n0 + l] : 0.0f;
  }
}

inline void store_row(float* y, const Epi& e, const float32x4_t v[4]) {
  if (e.n == kLanes) {
    for (int q = 0; q < 4; ++q) vst1q_f32(y + 4 * q, v[q]);
    return;
  }
  float tmp[kLanes];
  for (int q = 0; q < 4; ++q) vst1q_f32(tmp + 4 * q, v[q]);
  std::memcpy(y, tmp, sizeof(float) * size_t(e.n));
}

// y = float(acc) * (xscale * alpha) + bias, as i8_scalar (separate roundings).
inline void store_i8_row(const I8Args& a, int64_t m, int64_t n0, const Epi& e, const int32x4_t acc[4]) {
  const float32x4_t xs = vdupq_n_f32(a.xscale[m]);
  float32x4_t v[4];
  for (int q = 0; q < 4; ++q) {
    const float32x4_t s = vmulq_f32(xs, vld1q_f32(e.alpha + 4 * q));
    v[q] = vmulq_f32(vcvtq_f32_s32(acc[q]), s);
    if (e.has_bias) v[q] = vaddq_f32(v[q], vld1q_f32(e.bias + 4 * q));
  }
  store_row(a.y + m * a.ldy + n0, e, v);
}

// ------------------------------------------------------------------ exact float path --

struct F32Luts {
  uint8x16_t b2, b3;  // byte 2 / byte 3 of the float value of each code (bytes 0, 1 are 0)
  uint8x16_t tr;      // tbl index transposing a register: byte 4j+l <- byte 4l+j
};

inline bool make_f32_luts(int bits, F32Luts& t) {
  const Tables T = tables_for(bits);
  uint8_t b2[16], b3[16], tr[16];
  for (int c = 0; c < 16; ++c) {
    uint32_t u;
    std::memcpy(&u, &T.f32[c], 4);
    if (u & 0xffffu) return false;  // not +-2^e (never for DenseShift codes)
    b2[c] = uint8_t(u >> 16);
    b3[c] = uint8_t(u >> 24);
  }
  for (int j = 0; j < 4; ++j)
    for (int l = 0; l < 4; ++l) tr[4 * j + l] = uint8_t(4 * l + j);
  t.b2 = vld1q_u8(b2);
  t.b3 = vld1q_u8(b3);
  t.tr = vld1q_u8(tr);
  return true;
}

// Codes (byte 4j+l = code of lane l at k = j) -> the top halves of their floats as
// 16-bit values, k = j0 and j0+1 in one register each: zip of the two byte tables.
inline void decode_f32(uint8x16_t c, const F32Luts& lut, uint16x8_t& h01, uint16x8_t& h23) {
  const uint8x16_t a2 = vqtbl1q_u8(lut.b2, c), a3 = vqtbl1q_u8(lut.b3, c);
  h01 = vreinterpretq_u16_u8(vzip1q_u8(a2, a3));
  h23 = vreinterpretq_u16_u8(vzip2q_u8(a2, a3));
}
// Four lanes' weights at one k: the 16-bit top half shifted into place (shll #16).
inline float32x4_t f32_lo(uint16x8_t h) { return vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16)); }
inline float32x4_t f32_hi(uint16x8_t h) { return vreinterpretq_f32_u32(vshll_high_n_u16(h, 16)); }

template <int MT>
void f32_block(const Layer& L, const F32Args& a, int64_t m0, int64_t t, const F32Luts& lut, const Epi& e) {
  float32x4_t acc[MT][4];
  for (int i = 0; i < MT; ++i)
    for (int q = 0; q < 4; ++q) acc[i][q] = vdupq_n_f32(0.0f);
  const int64_t ngroups = L.Kq / kGroupK;
  const uint8_t* w = L.tiles + t * tile_bytes(L.Kq);
  const float* x = a.x + m0 * a.ldx;
  const uint8x16_t nib = vdupq_n_u8(15);
  for (int64_t g = 0; g < ngroups; ++g) {
    float32x4_t x0[MT], x1[MT];  // k = 8g..8g+3, 8g+4..8g+7 (x is zero padded up to Kq)
    for (int i = 0; i < MT; ++i) {
      x0[i] = vld1q_f32(x + i * a.ldx + g * kGroupK);
      x1[i] = vld1q_f32(x + i * a.ldx + g * kGroupK + kQuad);
    }
    for (int q = 0; q < 4; ++q) {
      const uint8x16_t v = vqtbl1q_u8(vld1q_u8(w + g * kGroupBytes + 16 * q), lut.tr);
      uint16x8_t h01, h23;
#define DS_F32_FMA(W, X, J) \
  for (int i = 0; i < MT; ++i) acc[i][q] = vfmaq_laneq_f32(acc[i][q], W, X[i], J);
      decode_f32(vandq_u8(v, nib), lut, h01, h23);  // k = 8g + j
      DS_F32_FMA(f32_lo(h01), x0, 0)
      DS_F32_FMA(f32_hi(h01), x0, 1)
      DS_F32_FMA(f32_lo(h23), x0, 2)
      DS_F32_FMA(f32_hi(h23), x0, 3)
      decode_f32(vshrq_n_u8(v, 4), lut, h01, h23);  // k = 8g + 4 + j
      DS_F32_FMA(f32_lo(h01), x1, 0)
      DS_F32_FMA(f32_hi(h01), x1, 1)
      DS_F32_FMA(f32_lo(h23), x1, 2)
      DS_F32_FMA(f32_hi(h23), x1, 3)
#undef DS_F32_FMA
    }
  }
  for (int i = 0; i < MT; ++i) {
    float32x4_t v[4];
    for (int q = 0; q < 4; ++q) {
      v[q] = vmulq_f32(acc[i][q], vld1q_f32(e.alpha + 4 * q));
      if (e.has_bias) v[q] = vaddq_f32(v[q], vld1q_f32(e.bias + 4 * q));
    }
    store_row(a.y + (m0 + i) * a.ldy + t * kLanes, e, v);
  }
}

// ------------------------------------------------------- int8 path, plain ARMv8.0 NEON --

inline int8x8_t load_xq8(const uint8_t* p) {  // 8 activations as signed q
  return vreinterpret_s8_u8(veor_u8(vld1_u8(p), vdup_n_u8(0x80)));
}

template <int MT, bool SPLIT>
void i8_block_v80(const Layer& L, const I8Args& a, int64_t m0, int64_t t, int8x16_t llo, int8x16_t lhi,
                  const Epi& e) {
  // acc[i][2q + h]: lanes 4q+2h, 4q+2h+1, two partial sums each
  int32x4_t acc[MT][8];
  for (int i = 0; i < MT; ++i)
    for (int r = 0; r < 8; ++r) acc[i][r] = vdupq_n_s32(0);
  const int64_t ngroups = L.Kq / kGroupK;
  const uint8_t* w = L.tiles + t * tile_bytes(L.Kq);
  const uint8x16_t nib = vdupq_n_u8(15);
  for (int64_t g = 0; g < ngroups; ++g) {
    int8x16_t x0[MT], x1[MT];  // quad k 8g..8g+3 (and 8g+4..8g+7) repeated in every lane
    for (int i = 0; i < MT; ++i) {
      const int32x2_t xv = vreinterpret_s32_s8(load_xq8(a.xq + (m0 + i) * L.Kq + g * kGroupK));
      x0[i] = vreinterpretq_s8_s32(vdupq_lane_s32(xv, 0));
      x1[i] = vreinterpretq_s8_s32(vdupq_lane_s32(xv, 1));
    }
    for (int q = 0; q < 4; ++q) {
      const uint8x16_t v = vld1q_u8(w + g * kGroupBytes + 16 * q);
      const uint8x16_t cl = vandq_u8(v, nib), ch = vshrq_n_u8(v, 4);
      const int8x16_t wl = vqtbl1q_s8(llo, cl), wh = vqtbl1q_s8(llo, ch);
      int8x16_t hl = wl, hh = wh;
      if constexpr (SPLIT) {
        hl = vqtbl1q_s8(lhi, cl);
        hh = vqtbl1q_s8(lhi, ch);
      }
      for (int i = 0; i < MT; ++i) {
        int16x8_t p0 = vmull_s8(vget_low_s8(wl), vget_low_s8(x0[i]));
        int16x8_t p1 = vmull_high_s8(wl, x0[i]);
        p0 = vmlal_s8(p0, vget_low_s8(wh), vget_low_s8(x1[i]));
        p1 = vmlal_high_s8(p1, wh, x1[i]);
        if constexpr (SPLIT) {
          p0 = vmlal_s8(p0, vget_low_s8(hl), vget_low_s8(x0[i]));
          p1 = vmlal_high_s8(p1, hl, x0[i]);
          p0 = vmlal_s8(p0, vget_low_s8(hh), vget_low_s8(x1[i]));
          p1 = vmlal_high_s8(p1, hh, x1[i]);
        }
        acc[i][2 * q] = vpadalq_s16(acc[i][2 * q], p0);
        acc[i][2 * q + 1] = vpadalq_s16(acc[i][2 * q + 1], p1);
      }
    }
  }
  for (int i = 0; i < MT; ++i) {
    int32x4_t s[4];
    for (int q = 0; q < 4; ++q) s[q] = vpaddq_s32(acc[i][2 * q], acc[i][2 * q + 1]);
    store_i8_row(a, m0 + i, t * kLanes, e, s);
  }
}

template <bool SPLIT>
void i8_tile_v80(const Layer& L, const I8Args& a, int64_t t, int8x16_t llo, int8x16_t lhi, const Epi& e) {
  int64_t m = 0;
  for (; m + 2 <= a.M; m += 2) i8_block_v80<2, SPLIT>(L, a, m, t, llo, lhi, e);
  if (m < a.M) i8_block_v80<1, SPLIT>(L, a, m, t, llo, lhi, e);
}

template <int MT>
void f32_tile(const Layer& L, const F32Args& a, int64_t t, const F32Luts& lut, const Epi& e) {
  int64_t m = 0;
  for (; m + MT <= a.M; m += MT) f32_block<MT>(L, a, m, t, lut, e);
  switch (a.M - m) {
    case 3: return f32_block<3>(L, a, m, t, lut, e);
    case 2: return f32_block<2>(L, a, m, t, lut, e);
    case 1: return f32_block<1>(L, a, m, t, lut, e);
    default: return;
  }
}

}  // namespace

void f32_neon(const Layer& L, const F32Args& a, int64_t t0, int64_t t1) {
  F32Luts lut;
  if (!make_f32_luts(L.bits, lut)) return f32_scalar(L, a, t0, t1);
  Epi e;
  for (int64_t t = t0; t < t1; ++t) {
    load_epi(L, t, e);
    f32_tile<4>(L, a, t, lut, e);
  }
}

void i8_neon(const Layer& L, const I8Args& a, int64_t t0, int64_t t1) {
  const Tables T = tables_for(L.bits);
  const int8x16_t llo = vld1q_s8(T.lo), lhi = vld1q_s8(T.hi);
  Epi e;
  for (int64_t t = t0; t < t1; ++t) {
    load_epi(L, t, e);
    if (L.bits == 4) i8_tile_v80<true>(L, a, t, llo, lhi, e);
    else i8_tile_v80<false>(L, a, t, llo, lhi, e);
  }
}

void quantize_rows_neon(const float* x, int64_t M, int64_t K, int64_t ldx, int64_t Kq, uint8_t* xq,
                        float* xscale, uint8_t* finite) {
  for (int64_t m = 0; m < M; ++m) {
    const float* xr = x + m * ldx;
    uint8_t* qr = xq + m * Kq;
    float32x4_t vmax = vdupq_n_f32(0.0f);
    uint32x4_t good = vdupq_n_u32(~0u);
    int64_t k = 0;
    for (; k + 4 <= K; k += 4) {
      const float32x4_t av = vabsq_f32(vld1q_f32(xr + k));
      good = vandq_u32(good, vcleq_f32(av, vdupq_n_f32(FLT_MAX)));  // false for inf and NaN
      vmax = vmaxq_f32(vmax, av);
    }
    bool ok = vminvq_u32(good) != 0;
    float amax = vmaxvq_f32(vmax);
    for (; k < K; ++k) {
      const float av = std::fabs(xr[k]);
      ok = ok && std::isfinite(av);
      amax = av > amax ? av : amax;
    }
    finite[m] = ok;
    if (!ok || amax == 0.0f) {
      std::memset(qr, 128, size_t(Kq));
      xscale[m] = 0.0f;
      continue;
    }
    const float inv = 127.0f / amax;
    const float32x4_t vinv = vdupq_n_f32(inv);
    const int32x4_t lo = vdupq_n_s32(-127), hi = vdupq_n_s32(127), off = vdupq_n_s32(128);
    k = 0;
    for (; k + 8 <= K; k += 8) {  // round half to even (fcvtns), as nearbyint
      int32x4_t q0 = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(xr + k), vinv));
      int32x4_t q1 = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(xr + k + 4), vinv));
      q0 = vaddq_s32(vmaxq_s32(vminq_s32(q0, hi), lo), off);
      q1 = vaddq_s32(vmaxq_s32(vminq_s32(q1, hi), lo), off);
      const int16x8_t h = vcombine_s16(vmovn_s32(q0), vmovn_s32(q1));
      vst1_u8(qr + k, vreinterpret_u8_s8(vmovn_s16(h)));
    }
    for (; k < K; ++k) {
      float q = std::nearbyint(xr[k] * inv);
      q = q > 127.0f ? 127.0f : (q < -127.0f ? -127.0f : q);
      qr[k] = uint8_t(int(q) + 128);
    }
    for (k = K; k < Kq; ++k) qr[k] = 128;
    xscale[m] = amax / 127.0f;
  }
}

// ------------------------------------------------------------- int8 path, FEAT_DotProd --

#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+dotprod")
namespace {

template <int MT, bool SPLIT>
void i8_block_dot(const Layer& L, const I8Args& a, int64_t m0, int64_t t, int8x16_t llo, int8x16_t lhi,
                  const Epi& e) {
  int32x4_t acc[MT][4];
  for (int i = 0; i < MT; ++i)
    for (int q = 0; q < 4; ++q) acc[i][q] = vdupq_n_s32(0);
  const int64_t ngroups = L.Kq / kGroupK;
  const uint8_t* w = L.tiles + t * tile_bytes(L.Kq);
  const uint8x16_t nib = vdupq_n_u8(15);
  for (int64_t g = 0; g < ngroups; ++g) {
    int8x8_t xv[MT];  // lane 0: k 8g..8g+3, lane 1: 8g+4..8g+7
    for (int i = 0; i < MT; ++i) xv[i] = load_xq8(a.xq + (m0 + i) * L.Kq + g * kGroupK);
    for (int q = 0; q < 4; ++q) {
      const uint8x16_t v = vld1q_u8(w + g * kGroupBytes + 16 * q);
      const uint8x16_t cl = vandq_u8(v, nib), ch = vshrq_n_u8(v, 4);
      const int8x16_t wl = vqtbl1q_s8(llo, cl), wh = vqtbl1q_s8(llo, ch);
      for (int i = 0; i < MT; ++i) {
        acc[i][q] = vdotq_lane_s32(acc[i][q], wl, xv[i], 0);
        acc[i][q] = vdotq_lane_s32(acc[i][q], wh, xv[i], 1);
      }
      if constexpr (SPLIT) {
        const int8x16_t hl = vqtbl1q_s8(lhi, cl), hh = vqtbl1q_s8(lhi, ch);
        for (int i = 0; i < MT; ++i) {
          acc[i][q] = vdotq_lane_s32(acc[i][q], hl, xv[i], 0);
          acc[i][q] = vdotq_lane_s32(acc[i][q], hh, xv[i], 1);
        }
      }
    }
  }
  for (int i = 0; i < MT; ++i) store_i8_row(a, m0 + i, t * kLanes, e, acc[i]);
}

template <bool SPLIT>
void i8_tile_dot(const Layer& L, const I8Args& a, int64_t t, int8x16_t llo, int8x16_t lhi, const Epi& e) {
  int64_t m = 0;
  for (; m + 4 <= a.M; m += 4) i8_block_dot<4, SPLIT>(L, a, m, t, llo, lhi, e);
  switch (a.M - m) {
    case 3: return i8_block_dot<3, SPLIT>(L, a, m, t, llo, lhi, e);
    case 2: return i8_block_dot<2, SPLIT>(L, a, m, t, llo, lhi, e);
    case 1: return i8_block_dot<1, SPLIT>(L, a, m, t, llo, lhi, e);
    default: return;
  }
}

}  // namespace

void i8_neon_dotprod(const Layer& L, const I8Args& a, int64_t t0, int64_t t1) {
  const Tables T = tables_for(L.bits);
  const int8x16_t llo = vld1q_s8(T.lo), lhi = vld1q_s8(T.hi);
  Epi e;
  for (int64_t t = t0; t < t1; ++t) {
    load_epi(L, t, e);
    if (L.bits == 4) i8_tile_dot<true>(L, a, t, llo, lhi, e);
    else i8_tile_dot<false>(L, a, t, llo, lhi, e);
  }
}
#pragma GCC pop_options

// ---------------------------------------------------------------- int8 path, FEAT_I8MM --

#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+dotprod+i8mm")
namespace {

inline int8x16_t zip_lo(int8x16_t a, int8x16_t b) {  // lanes 0,1: a.dw0 b.dw0 a.dw1 b.dw1
  return vreinterpretq_s8_s32(vzip1q_s32(vreinterpretq_s32_s8(a), vreinterpretq_s32_s8(b)));
}
inline int8x16_t zip_hi(int8x16_t a, int8x16_t b) {  // lanes 2,3
  return vreinterpretq_s8_s32(vzip2q_s32(vreinterpretq_s32_s8(a), vreinterpretq_s32_s8(b)));
}

// MP row pairs.  smmla: acc[2x2] += A[2 rows x 8 k] . B[2 channels x 8 k]^T, with
// B = the 8 weights (k 8g..8g+7) of two channels: zip of their low- and high-nibble dwords.
template <int MP, bool SPLIT>
void i8_block_mm(const Layer& L, const I8Args& a, int64_t m0, int64_t t, int8x16_t llo, int8x16_t lhi,
                 const Epi& e) {
  // acc[p][2q + h] = {row 2p: lanes 4q+2h, 4q+2h+1; row 2p+1: the same lanes}
  int32x4_t acc[MP][8];
  for (int p = 0; p < MP; ++p)
    for (int r = 0; r < 8; ++r) acc[p][r] = vdupq_n_s32(0);
  const int64_t ngroups = L.Kq / kGroupK;
  const uint8_t* w = L.tiles + t * tile_bytes(L.Kq);
  const uint8x16_t nib = vdupq_n_u8(15);
  for (int64_t g = 0; g < ngroups; ++g) {
    int8x16_t xa[MP];
    for (int p = 0; p < MP; ++p)
      xa[p] = vcombine_s8(load_xq8(a.xq + (m0 + 2 * p) * L.Kq + g * kGroupK),
                          load_xq8(a.xq + (m0 + 2 * p + 1) * L.Kq + g * kGroupK));
    for (int q = 0; q < 4; ++q) {
      const uint8x16_t v = vld1q_u8(w + g * kGroupBytes + 16 * q);
      const uint8x16_t cl = vandq_u8(v, nib), ch = vshrq_n_u8(v, 4);
      const int8x16_t wl = vqtbl1q_s8(llo, cl), wh = vqtbl1q_s8(llo, ch);
      const int8x16_t b0 = zip_lo(wl, wh), b1 = zip_hi(wl, wh);
      for (int p = 0; p < MP; ++p) {
        acc[p][2 * q] = vmmlaq_s32(acc[p][2 * q], xa[p], b0);
        acc[p][2 * q + 1] = vmmlaq_s32(acc[p][2 * q + 1], xa[p], b1);
      }
      if constexpr (SPLIT) {
        const int8x16_t hl = vqtbl1q_s8(lhi, cl), hh = vqtbl1q_s8(lhi, ch);
        const int8x16_t c0 = zip_lo(hl, hh), c1 = zip_hi(hl, hh);
        for (int p = 0; p < MP; ++p) {
          acc[p][2 * q] = vmmlaq_s32(acc[p][2 * q], xa[p], c0);
          acc[p][2 * q + 1] = vmmlaq_s32(acc[p][2 * q + 1], xa[p], c1);
        }
      }
    }
  }
  for (int p = 0; p < MP; ++p) {
    int32x4_t r0[4], r1[4];
    for (int q = 0; q < 4; ++q) {
      const int64x2_t u = vreinterpretq_s64_s32(acc[p][2 * q]), v = vreinterpretq_s64_s32(acc[p][2 * q + 1]);
      r0[q] = vreinterpretq_s32_s64(vzip1q_s64(u, v));
      r1[q] = vreinterpretq_s32_s64(vzip2q_s64(u, v));
    }
    store_i8_row(a, m0 + 2 * p, t * kLanes, e, r0);
    store_i8_row(a, m0 + 2 * p + 1, t * kLanes, e, r1);
  }
}

template <bool SPLIT>
void i8_tile_mm(const Layer& L, const I8Args& a, int64_t t, int8x16_t llo, int8x16_t lhi, const Epi& e) {
  int64_t m = 0;
  for (; m + 4 <= a.M; m += 4) i8_block_mm<2, SPLIT>(L, a, m, t, llo, lhi, e);
  if (m + 2 <= a.M) {
    i8_block_mm<1, SPLIT>(L, a, m, t, llo, lhi, e);
    m += 2;
  }
  if (m < a.M) i8_block_dot<1, SPLIT>(L, a, m, t, llo, lhi, e);  // odd row: sdot
}

}  // namespace

void i8_neon_i8mm(const Layer& L, const I8Args& a, int64_t t0, int64_t t1) {
  const Tables T = tables_for(L.bits);
  const int8x16_t llo = vld1q_s8(T.lo), lhi = vld1q_s8(T.hi);
  Epi e;
  for (int64_t t = t0; t < t1; ++t) {
    load_epi(L, t, e);
    if (L.bits == 4) i8_tile_mm<true>(L, a, t, llo, lhi, e);
    else i8_tile_mm<false>(L, a, t, llo, lhi, e);
  }
}
#pragma GCC pop_options

}  // namespace tiled
}  // namespace denseshift

// Attention, depthwise conv and the pointwise post-ops: the shared loop bodies, vectorized by the compiler
// for baseline ARMv8.0 NEON, with fused multiply-adds.
#define DS_FMA(a, b, c) __builtin_fmaf(a, b, c)
#define DS_ATTENTION_NAME attention_neon
#include "attention_impl.h"
#define DS_DEPTHWISE_NAME depthwise_tc_neon
#include "depthwise_impl.h"
#define DS_SILU_NAME silu_neon      // pointwise_impl.h naming one function
#define DS_POINTWISE_SUFFIX _neon  // or naming its whole set by suffix
#include "pointwise_impl.h"
#endif

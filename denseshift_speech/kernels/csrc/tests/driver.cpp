// Standalone test driver for the torch-free kernel core: every SIMD path this CPU can
// run against the scalar reference, on random and edge inputs.  Integer (int8) paths
// must agree bit for bit; exact-float paths within fp32 summation tolerance, with the
// same NaN/inf positions.  Prints one line per path and "N passed, N failed".
//
//   driver [BEST] [--digest]
//     BEST      fail unless the best path of this CPU is BEST (tests assert which path ran)
//     --digest  instead of the checks: run every path's quantizer + int8 kernel (and the
//               scalar exact kernel) on a fixed, platform-independent set of inputs and
//               print FNV-1a digests of their output bytes; the last line, "digest HEX",
//               must be the same on every CPU and architecture (x86 vs aarch64).
// A kernel shared by several paths (the ARM paths share all but the int8 kernel) is
// checked once, under the first path's name.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common.h"
#include "cpu_features.h"
#include "tiled.h"

using namespace denseshift;
using namespace denseshift::tiled;

namespace {
int g_pass = 0, g_fail = 0;

void check(bool ok, const std::string& what) {
  if (ok) ++g_pass;
  else {
    ++g_fail;
    std::printf("FAIL %s\n", what.c_str());
  }
}

struct Case {
  int64_t M, N, K;
  int bits;
  bool edge;  // IEEE edge values in x
};

std::vector<uint8_t> random_packed(std::mt19937& rng, int64_t N, int64_t K, int bits) {
  // codes -> packed file rows, through block layout positions (common.h)
  const int64_t rb = (K + kBlock - 1) / kBlock * 8 * bits;
  std::vector<uint8_t> packed(size_t(N * rb), 0);
  const Planes P = planes_for(bits);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const uint32_t code = rng() % (1u << bits);
      uint8_t* bp = packed.data() + n * rb + (k / kBlock) * 8 * bits;
      const int t = int(k % kBlock), c = t >> 4, l = t & 15;
      for (int i = 0; i < P.n; ++i) {
        const int f = P.width[i];
        int byte, bit;
        if (f == 1) { byte = t >> 3; bit = t & 7; }
        else { const int r = 8 / f; byte = l + 16 * (c / r); bit = f * (c % r); }
        bp[P.offset[i] + byte] |= uint8_t(((code >> P.shift[i]) & ((1u << f) - 1u)) << bit);
      }
      if (block_code(bp, P, t) != code) { std::printf("FAIL packing helper\n"); std::exit(1); }
    }
  return packed;
}

std::vector<std::pair<std::string, QuantizeRows>> g_quantizers;

void run_case(const Case& c, std::mt19937& rng, const std::vector<std::pair<std::string, F32Kernel>>& f32s,
              const std::vector<std::pair<std::string, I8Kernel>>& i8s) {
  const int64_t rb = (c.K + kBlock - 1) / kBlock * 8 * c.bits;
  std::vector<uint8_t> packed = random_packed(rng, c.N, c.K, c.bits);
  std::vector<uint8_t> tiles(size_t(tiled_bytes(c.N, c.K)));
  std::vector<int32_t> sums(size_t(padded_rows(c.N)));
  repack(packed.data(), rb, c.N, c.K, c.bits, tiles.data(), sums.data());
  // repack round trip: every code readable back from the tiled layout
  const int64_t Kq = padded_k(c.K);
  bool rt = true;
  const Planes P = planes_for(c.bits);
  for (int64_t n = 0; n < c.N && rt; ++n)
    for (int64_t k = 0; k < c.K; ++k) {
      const uint32_t want = block_code(packed.data() + n * rb + (k / kBlock) * 8 * c.bits, P, int(k % kBlock));
      const uint32_t got = (tiles[size_t(code_byte(n, k, Kq))] >> code_shift(k)) & 15u;
      if (want != got) { rt = false; break; }
    }
  char name[160];
  std::snprintf(name, sizeof name, "M=%lld N=%lld K=%lld bits=%d%s", (long long)c.M, (long long)c.N,
                (long long)c.K, c.bits, c.edge ? " edge" : "");
  check(rt, std::string("repack round trip ") + name);

  std::uniform_real_distribution<float> U(-2.0f, 2.0f);
  std::vector<float> alpha(size_t(c.N)), bias(size_t(c.N));
  for (auto& v : alpha) v = 0.25f + std::fabs(U(rng));
  for (auto& v : bias) v = U(rng);
  const int64_t ldx = Kq + 3;  // a row stride wider than the row
  std::vector<float> x(size_t(std::max<int64_t>(1, c.M) * ldx), 0.0f);
  for (int64_t m = 0; m < c.M; ++m)
    for (int64_t k = 0; k < c.K; ++k) x[size_t(m * ldx + k)] = U(rng) * (m % 3 == 2 ? 1e-3f : 1.0f);
  if (c.edge && c.M > 0) {
    const float specials[] = {0.0f, -0.0f, 1e-40f, -1e-40f, 3e38f, -3e38f, INFINITY, -INFINITY, NAN};
    int i = 0;
    for (int64_t m = 0; m < c.M; ++m)
      for (int64_t k = m % 5; k < c.K; k += 7) x[size_t(m * ldx + k)] = specials[i++ % 9];
  }
  Layer L{tiles.data(), sums.data(), alpha.data(), bias.data(), c.N, c.K, Kq, c.bits};
  const int64_t T = padded_rows(c.N) / kLanes;
  std::vector<float> ref(size_t(std::max<int64_t>(1, c.M) * c.N)), got(ref.size());
  F32Args fa{x.data(), c.M, ldx, ref.data(), c.N};
  f32_scalar(L, fa, 0, T);
  // tolerance of an fp32 sum in another order: |error| <= 2 K eps sum |x w| alpha
  const Tables Tb = tables_for(c.bits);
  for (auto& [nm, fn] : f32s) {
    std::fill(got.begin(), got.end(), 12345.0f);
    F32Args ga = fa;
    ga.y = got.data();
    fn(L, ga, 0, T);
    bool ok = true;
    for (int64_t m = 0; m < c.M && ok; ++m)
      for (int64_t n = 0; n < c.N; ++n) {
        const float r = ref[size_t(m * c.N + n)], g = got[size_t(m * c.N + n)];
        if (std::isnan(r) || std::isnan(g)) { ok = std::isnan(r) && std::isnan(g); if (!ok) break; continue; }
        if (std::isinf(r) || std::isinf(g)) { ok = r == g; if (!ok) break; continue; }
        double mag = 0.0;
        for (int64_t k = 0; k < c.K; ++k) {
          const int code = (tiles[size_t(code_byte(n, k, Kq))] >> code_shift(k)) & 15;
          mag += std::fabs(double(x[size_t(m * ldx + k)]) * Tb.f32[code]);
        }
        const double tol = 2.0 * double(c.K + 2) * 1.2e-7 * mag * alpha[size_t(n)] + 1e-6 * std::fabs(bias[size_t(n)]) + 1e-30;
        if (std::fabs(double(r) - double(g)) > tol) ok = false;
      }
    check(ok, "f32 " + nm + " " + name);
  }
  std::vector<uint8_t> xq(size_t(std::max<int64_t>(1, c.M) * Kq));
  std::vector<float> xs(size_t(std::max<int64_t>(1, c.M)));
  std::vector<uint8_t> fin(xs.size());
  quantize_rows(x.data(), c.M, c.K, ldx, Kq, xq.data(), xs.data(), fin.data());
  for (auto& [nm, fn] : g_quantizers) {
    std::vector<uint8_t> xq2(xq.size(), 7), fin2(fin.size(), 7);
    std::vector<float> xs2(xs.size(), 7.0f);
    fn(x.data(), c.M, c.K, ldx, Kq, xq2.data(), xs2.data(), fin2.data());
    const size_t mm = size_t(c.M);
    check(std::memcmp(xq2.data(), xq.data(), mm * size_t(Kq)) == 0 &&
              std::memcmp(xs2.data(), xs.data(), mm * 4) == 0 && std::memcmp(fin2.data(), fin.data(), mm) == 0,
          "quantize " + nm + " " + name);
  }
  if (c.edge) return;  // int8 path: finite rows only (the glue routes the others)
  I8Args ia{xq.data(), xs.data(), c.M, ref.data(), c.N};
  i8_scalar(L, ia, 0, T);
  for (auto& [nm, fn] : i8s) {
    std::fill(got.begin(), got.end(), 12345.0f);
    I8Args ga = ia;
    ga.y = got.data();
    fn(L, ga, 0, T);
    check(std::memcmp(got.data(), ref.data(), sizeof(float) * size_t(c.M * c.N)) == 0, "int8 " + nm + " " + name);
  }
}
void attention_case(std::mt19937& rng, int64_t T, int64_t H, int64_t D, bool masked) {
  const int64_t C = H * D, P = 2 * T - 1;
  std::normal_distribution<float> nd;
  std::vector<float> qkv(static_cast<size_t>(T * 3 * C)), pk(static_cast<size_t>(P * C));
  std::vector<float> bu(static_cast<size_t>(C)), bv(static_cast<size_t>(C));
  for (auto* v : {&qkv, &pk, &bu, &bv})
    for (auto& e : *v) e = nd(rng);
  std::vector<uint8_t> kpm(size_t(T), 0);
  if (masked)
    for (int64_t j = T / 2; j < T; ++j) kpm[size_t(j)] = 1;
  std::vector<float> scr(size_t(attention_scratch(T, D))), ref(size_t(T * C)), got(ref.size());
  const float scale = 1.0f / std::sqrt(float(C));
  attention_scalar(qkv.data(), pk.data(), bu.data(), bv.data(), masked ? kpm.data() : nullptr, T, H, D, scale,
                   ref.data(), scr.data());
  std::vector<AttentionFn> seen;
  for (const PathInfo& p : available_paths()) {
    if (p.attention == attention_scalar || std::find(seen.begin(), seen.end(), p.attention) != seen.end()) continue;
    seen.push_back(p.attention);
    std::fill(got.begin(), got.end(), 777.0f);
    p.attention(qkv.data(), pk.data(), bu.data(), bv.data(), masked ? kpm.data() : nullptr, T, H, D, scale,
                got.data(), scr.data());
    double err = 0.0, mag = 0.0;
    for (size_t i = 0; i < ref.size(); ++i) {
      err = std::max(err, std::fabs(double(ref[i]) - double(got[i])));
      mag = std::max(mag, std::fabs(double(ref[i])));
    }
    char name[120];
    std::snprintf(name, sizeof name, "attention %s T=%lld H=%lld D=%lld%s (max err %.2g)", p.name, (long long)T,
                  (long long)H, (long long)D, masked ? " masked" : "", err);
    check(err <= 1e-5 * (mag + 1.0), name);
  }
}
void pointwise_cases(std::mt19937& rng) {
  std::normal_distribution<float> nd;
  // silu on wide-range values, including the clamp region of exp
  std::vector<float> x(1003);
  for (auto& v : x) v = nd(rng) * 30.0f;
  x[0] = 0.0f;
  x[1] = -100.0f;
  x[2] = 100.0f;
  std::vector<float> ref = x;
  silu_scalar(ref.data(), int64_t(ref.size()));
  bool ok_ref = true;
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = double(x[i]) / (1.0 + std::exp(-double(x[i])));
    // float range reduction: relative error grows with |x| (about 5e-6 near -80); exp clamps at 88
    const bool ok1 = std::fabs(ref[i] - want) <= (std::fabs(x[i]) < 10.0f ? 1e-6 : 1e-5) * std::fabs(want) + 1e-35;
    if (!ok1) std::printf("silu(%g) = %g, want %g\n", x[i], ref[i], want);
    ok_ref = ok_ref && ok1;
  }
  check(ok_ref, "silu scalar vs double precision");
  // depthwise conv over time, channels-last
  const int64_t B = 2, T = 19, C = 37, K = 7, pad = 3, dil = 1, Tout = T + 2 * pad - dil * (K - 1);
  std::vector<float> in(static_cast<size_t>(B * T * C)), w(static_cast<size_t>(K * C));
  std::vector<float> bias(static_cast<size_t>(C)), dref(static_cast<size_t>(B * Tout * C)), dgot(dref.size());
  for (auto* v : {&in, &w, &bias})
    for (auto& e : *v) e = nd(rng);
  depthwise_tc_scalar(in.data(), B, T, C, w.data(), bias.data(), K, pad, dil, Tout, dref.data());
  std::vector<SiluFn> seen_silu;
  std::vector<DepthwiseFn> seen_dw;
  for (const PathInfo& p : available_paths()) {
    if (p.silu != silu_scalar && std::find(seen_silu.begin(), seen_silu.end(), p.silu) == seen_silu.end()) {
      seen_silu.push_back(p.silu);
      std::vector<float> got = x;
      p.silu(got.data(), int64_t(got.size()));
      bool ok = true;
      for (size_t i = 0; i < x.size(); ++i) ok = ok && std::fabs(got[i] - ref[i]) <= 4e-6 * std::fabs(ref[i]) + 1e-30;
      check(ok, std::string("silu ") + p.name);
    }
    if (p.glu && p.layer_norm && p.axpy && p.glu != glu_scalar) {  // row-wise post-ops
      const int64_t R = 5, Cn = 37;
      std::vector<float> src(static_cast<size_t>(R * 2 * Cn)), lw(static_cast<size_t>(Cn)), lb(lw.size());
      for (auto* v : {&src, &lw, &lb})
        for (auto& e : *v) e = nd(rng) * 3.0f;
      std::vector<float> r1(static_cast<size_t>(R * 2 * Cn)), r2(r1.size());
      glu_scalar(src.data(), R, Cn, r1.data());
      p.glu(src.data(), R, Cn, r2.data());
      bool ok = true;
      for (int64_t i = 0; i < R * Cn; ++i) ok = ok && std::fabs(r1[size_t(i)] - r2[size_t(i)]) <= 2e-6 * (1.0 + std::fabs(r1[size_t(i)]));
      check(ok, std::string("glu ") + p.name);
      layer_norm_scalar(src.data(), 2 * R, Cn, lw.data(), lb.data(), 1e-5f, r1.data());
      p.layer_norm(src.data(), 2 * R, Cn, lw.data(), lb.data(), 1e-5f, r2.data());
      ok = true;
      for (size_t i = 0; i < r1.size(); ++i) ok = ok && std::fabs(r1[i] - r2[i]) <= 1e-5 * (1.0 + std::fabs(r1[i]));
      check(ok, std::string("layer_norm ") + p.name);
      std::vector<float> y1(src.begin(), src.begin() + Cn), y2 = y1;
      axpy_scalar(y1.data(), lb.data(), 0.5f, Cn);
      p.axpy(y2.data(), lb.data(), 0.5f, Cn);
      ok = true;
      for (int64_t i = 0; i < Cn; ++i) ok = ok && std::fabs(y1[size_t(i)] - y2[size_t(i)]) <= 1e-6 * (1.0 + std::fabs(y1[size_t(i)]));
      check(ok, std::string("axpy ") + p.name);
    }
    if (p.depthwise != depthwise_tc_scalar && std::find(seen_dw.begin(), seen_dw.end(), p.depthwise) == seen_dw.end()) {
      seen_dw.push_back(p.depthwise);
      p.depthwise(in.data(), B, T, C, w.data(), bias.data(), K, pad, dil, Tout, dgot.data());
      bool ok = true;
      for (size_t i = 0; i < dref.size(); ++i) ok = ok && std::fabs(dgot[i] - dref[i]) <= 1e-5 * (1.0 + std::fabs(dref[i]));
      check(ok, std::string("depthwise ") + p.name);
    }
  }
}

// ------------------------------------------------------------------------- --digest --
// Inputs from integer arithmetic only (splitmix64, exact int -> float conversions and
// power-of-two scales), so every platform builds the same bytes.
struct Digest {
  uint64_t h = 1469598103934665603ull;  // FNV-1a 64
  void add(const void* p, size_t n) {
    const uint8_t* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  }
};
struct SplitMix {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  int64_t in(int64_t lo, int64_t hi) { return lo + int64_t(next() % uint64_t(hi - lo + 1)); }
};

struct DigestCase {
  std::vector<uint8_t> tiles;
  std::vector<int32_t> sums;
  std::vector<float> alpha, bias, x;
  int64_t M, N, K, Kq, ldx;
  int bits;
  bool has_bias;
};

std::vector<DigestCase> digest_cases() {
  struct Shape { int64_t M, N, K; };
  const Shape shapes[] = {{1, 16, 64}, {2, 17, 65}, {3, 33, 144}, {4, 64, 8}, {5, 48, 300},
                          {8, 64, 1024}, {17, 15, 9}, {33, 100, 640}};
  std::vector<DigestCase> out;
  SplitMix r{20240611};
  for (int bits = 2; bits <= 4; ++bits)
    for (const Shape& sh : shapes) {
      DigestCase c;
      c.M = sh.M, c.N = sh.N, c.K = sh.K, c.bits = bits, c.Kq = padded_k(sh.K), c.ldx = c.Kq + 1;
      c.has_bias = (sh.N % 2) == 0 || bits == 3;
      std::mt19937 rng(uint32_t(r.next()));  // mt19937 is fully specified by the standard
      const int64_t rb = (c.K + kBlock - 1) / kBlock * 8 * bits;
      std::vector<uint8_t> packed = random_packed(rng, c.N, c.K, bits);
      c.tiles.resize(size_t(tiled_bytes(c.N, c.K)));
      c.sums.resize(size_t(padded_rows(c.N)));
      repack(packed.data(), rb, c.N, c.K, bits, c.tiles.data(), c.sums.data());
      for (int64_t n = 0; n < c.N; ++n) {
        c.alpha.push_back(std::ldexp(float(r.in(-4096, 4096)), -12) + (n % 5 == 4 ? -0.5f : 0.5f));
        c.bias.push_back(std::ldexp(float(r.in(-65536, 65536)), -14));
      }
      c.x.assign(size_t(c.M * c.ldx), 0.0f);
      for (int64_t m = 0; m < c.M; ++m) {
        float* xr = c.x.data() + m * c.ldx;
        const int kind = int(m % 6);
        const int e = kind == 1 ? -30 : kind == 2 ? 40 : int(r.in(-24, -12));
        for (int64_t k = 0; k < c.K; ++k) {
          if (kind == 3) xr[k] = 0.0f;                                        // all-zero row
          else if (kind == 4) xr[k] = float(r.in(-127, 126)) + 0.5f;          // rounding ties
          else if (kind == 5) xr[k] = (k % 3 == 0) ? float(r.in(-3, 3)) : 0.0f;  // sparse, small ints
          else xr[k] = std::ldexp(float(r.in(-(1 << 20), 1 << 20)), e);
        }
        if (kind == 4 && c.K > 1) xr[c.K / 2] = 127.0f;  // amax 127: 127/amax = 1, ties stay ties
      }
      out.push_back(std::move(c));
    }
  return out;
}

int run_digest() {
  const std::vector<DigestCase> cases = digest_cases();
  std::vector<std::pair<std::string, uint64_t>> got;
  std::vector<std::pair<QuantizeRows, I8Kernel>> seen;
  for (const PathInfo& p : available_paths()) {
    if (std::find(seen.begin(), seen.end(), std::make_pair(p.quantize, p.i8)) != seen.end()) continue;
    seen.push_back({p.quantize, p.i8});
    Digest d;
    for (const DigestCase& c : cases) {
      std::vector<uint8_t> xq(size_t(c.M * c.Kq)), fin(size_t(c.M));
      std::vector<float> xs(size_t(c.M)), y(size_t(c.M * c.N), 0.0f);
      p.quantize(c.x.data(), c.M, c.K, c.ldx, c.Kq, xq.data(), xs.data(), fin.data());
      Layer L{c.tiles.data(), c.sums.data(), c.alpha.data(), c.has_bias ? c.bias.data() : nullptr,
              c.N, c.K, c.Kq, c.bits};
      I8Args ia{xq.data(), xs.data(), c.M, y.data(), c.N};
      const int64_t T = padded_rows(c.N) / kLanes;
      p.i8(L, ia, 0, T / 2);  // two tile ranges, as two threads would
      p.i8(L, ia, T / 2, T);
      d.add(xq.data(), xq.size());
      d.add(xs.data(), 4 * xs.size());
      d.add(fin.data(), fin.size());
      d.add(y.data(), 4 * y.size());
    }
    got.push_back({p.name, d.h});
    std::printf("digest %s %016llx\n", p.name, (unsigned long long)d.h);
  }
  Digest ds;  // the exact scalar reference: sequential IEEE sums, also platform independent
  for (const DigestCase& c : cases) {
    std::vector<float> y(size_t(c.M * c.N), 0.0f);
    Layer L{c.tiles.data(), c.sums.data(), c.alpha.data(), c.has_bias ? c.bias.data() : nullptr,
            c.N, c.K, c.Kq, c.bits};
    F32Args fa{c.x.data(), c.M, c.ldx, y.data(), c.N};
    f32_scalar(L, fa, 0, padded_rows(c.N) / kLanes);
    ds.add(y.data(), 4 * y.size());
  }
  std::printf("digest-f32-scalar %016llx\n", (unsigned long long)ds.h);
  for (auto& [nm, h] : got)
    if (h != got.front().second) {
      std::printf("FAIL digest of %s differs from %s\n", nm.c_str(), got.front().first.c_str());
      return 1;
    }
  std::printf("digest %016llx\n", (unsigned long long)got.front().second);
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  std::string want;
  bool digest = false;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--digest") digest = true;
    else want = argv[i];
  }
  if (digest) return run_digest();
  std::vector<std::pair<std::string, F32Kernel>> f32s;
  std::vector<std::pair<std::string, I8Kernel>> i8s;
  auto has = [](const auto& v, auto fn) {
    for (auto& e : v)
      if (e.second == fn) return true;
    return false;
  };
  for (const PathInfo& p : available_paths()) {
    if (p.f32 && p.f32 != f32_scalar && !has(f32s, p.f32)) f32s.push_back({p.name, p.f32});
    if (p.i8 && p.i8 != i8_scalar && !has(i8s, p.i8)) i8s.push_back({p.name, p.i8});
    if (p.quantize && p.quantize != quantize_rows && !has(g_quantizers, p.quantize))
      g_quantizers.push_back({p.name, p.quantize});
  }
  std::printf("cpu features: %s\n", describe_cpu().c_str());
  std::printf("best path: %s\n", available_paths().front().name);
  if (!want.empty() && want != available_paths().front().name) {
    std::printf("FAIL expected best path %s\n", want.c_str());
    ++g_fail;
  }
  std::mt19937 rng(1234);
  const int64_t Ms[] = {0, 1, 2, 3, 8, 9, 17};
  const int64_t Ns[] = {1, 15, 16, 17, 33, 64};
  const int64_t Ks[] = {1, 4, 7, 8, 9, 63, 64, 65, 144, 300};
  for (int bits = 2; bits <= 4; ++bits)
    for (int64_t M : Ms)
      for (int64_t N : Ns)
        for (int64_t K : Ks) {
          run_case({M, N, K, bits, false}, rng, f32s, i8s);
          if (M > 0 && (N == 17 || N == 16) && K >= 63) run_case({M, N, K, bits, true}, rng, f32s, i8s);
        }
  run_case({5, 144, 1024, 3, false}, rng, f32s, i8s);
  run_case({100, 432, 144, 4, false}, rng, f32s, i8s);
  for (int64_t T : {1, 2, 16, 17, 37, 100})
    for (int64_t D : {24, 36, 64}) {
      attention_case(rng, T, 4, D, false);
      attention_case(rng, T, 2, D, T > 1);
    }
  pointwise_cases(rng);
  std::printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}

// Standalone test driver for the torch-free kernel core: every SIMD path this CPU can
// run against the scalar reference, on random and edge inputs.  Integer (int8) paths
// must agree bit for bit; exact-float paths within fp32 summation tolerance, with the
// same NaN/inf positions.  Prints one line per path and "N passed, N failed".
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
  for (const PathInfo& p : available_paths()) {
    if (p.attention == attention_scalar) continue;
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
  for (const PathInfo& p : available_paths()) {
    if (p.silu != silu_scalar) {
      std::vector<float> got = x;
      p.silu(got.data(), int64_t(got.size()));
      bool ok = true;
      for (size_t i = 0; i < x.size(); ++i) ok = ok && std::fabs(got[i] - ref[i]) <= 4e-6 * std::fabs(ref[i]) + 1e-30;
      check(ok, std::string("silu ") + p.name);
    }
    if (p.depthwise != depthwise_tc_scalar) {
      p.depthwise(in.data(), B, T, C, w.data(), bias.data(), K, pad, dil, Tout, dgot.data());
      bool ok = true;
      for (size_t i = 0; i < dref.size(); ++i) ok = ok && std::fabs(dgot[i] - dref[i]) <= 1e-5 * (1.0 + std::fabs(dref[i]));
      check(ok, std::string("depthwise ") + p.name);
    }
  }
}
}  // namespace

int main(int argc, char** argv) {
  const std::string want = argc > 1 ? argv[1] : "";
  std::vector<std::pair<std::string, F32Kernel>> f32s;
  std::vector<std::pair<std::string, I8Kernel>> i8s;
  for (const PathInfo& p : available_paths()) {
    if (p.f32 && p.f32 != f32_scalar) f32s.push_back({p.name, p.f32});
    if (p.i8 && p.i8 != i8_scalar) i8s.push_back({p.name, p.i8});
    if (p.quantize && p.quantize != quantize_rows) g_quantizers.push_back({p.name, p.quantize});
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

// Standalone check of the x-vector post-ops (core/xvector.h, no torch): the SIMD build of
// this target (avx2 on x86, neon on aarch64) against the portable scalar build, bit for
// bit, on random data.  tests/test_xvector_fused.py builds it natively and, cross-built,
// runs it under qemu-aarch64.  Prints "<path>: N checks, M mismatches"; exit 1 on any.
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "xvector.h"

using denseshift::xv::Ops;
using denseshift::xv::ops_for;

int main() {
#if defined(__aarch64__)
  const char* simd = "neon";
#else
  const char* simd = "avx2";
#endif
  const Ops& S = ops_for("scalar");
  const Ops& V = ops_for(simd);
  std::mt19937 gen(1);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  int checks = 0, bad = 0;
  auto same = [&](const std::vector<float>& a, const std::vector<float>& b) {
    ++checks;
    bad += std::memcmp(a.data(), b.data(), sizeof(float) * a.size()) != 0;
  };
  for (int T : {1, 3, 8, 9, 17, 101, 300, 2100})
    for (int C : {5, 16, 40}) {
      const size_t n = size_t(T) * size_t(C), c = size_t(C);
      std::vector<float> x(n), a(c), b(c);
      for (float& v : x) v = normal(gen);
      for (float& v : a) v = normal(gen);
      for (float& v : b) v = normal(gen);
      for (bool fused : {true, false}) {
        std::vector<float> y1 = x, y2 = x;
        S.leaky_relu(y1.data(), T, C, C, 0.01f);
        V.leaky_relu(y2.data(), T, C, C, 0.01f);
        S.affine(y1.data(), T, C, C, a.data(), b.data(), fused);
        V.affine(y2.data(), T, C, C, a.data(), b.data(), fused);
        same(y1, y2);
      }
      std::vector<float> m1(c), m2(c), scratch(static_cast<size_t>(denseshift::xv::kMeanScratch));
      for (int lanes : {4, 8, 16}) {
        S.mean_over_time(x.data(), T, C, C, lanes, m1.data(), scratch.data());
        V.mean_over_time(x.data(), T, C, C, lanes, m2.data(), scratch.data());
        same(m1, m2);
      }
      std::vector<double> ds(2 * c);
      S.std_over_time(x.data(), T, C, C, m1.data(), ds.data());
      V.std_over_time(x.data(), T, C, C, m2.data(), ds.data());
      same(m1, m2);
    }
  std::printf("%s: %d checks, %d mismatches\n", V.name, checks, bad);
  return bad != 0;
}

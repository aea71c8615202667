// Threads of the op glue: how many, over what, and the tiled linear as a unit of work that
// any number of threads can share.  Torch glue only (the kernel core stays single-threaded:
// every kernel computes a range -- output tiles [t0, t1), rows, heads, channels -- and the
// glue hands ranges to threads).
//
// Threads come from ATen's intra-op pool (at::parallel_for: torch.set_num_threads, no
// pool started per call).  A stage is split only when its estimated single-thread time
// gives every part at least min_part_ns() of work (waking a pool thread and joining it
// costs microseconds), so a small call (a 640 ms chunk is 16 encoder frames) splits only
// its larger stages and one thread runs exactly the code it ran before.  Splits never
// change what is computed for an output element (the kernels' per-output arithmetic does
// not depend on the range they are given), so results are bit-identical on any thread
// count.
#pragma once
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cpu_features.h"
#include "tiled.h"

namespace denseshift {

const PathInfo& resolve_path(const std::string& req);

namespace par {

// Estimated single-thread throughput of the kernels (from one-thread timings on an AVX-512
// VNNI AMD EPYC; only the order of magnitude matters: it decides whether a split pays).
constexpr double kInt8MacPerNs = 200.0;   // int8 path, multiply-adds (decode included)
constexpr double kExactMacPerNs = 60.0;   // exact path
constexpr double kFlopPerNs = 30.0;       // attention / depthwise float work
constexpr double kElemPerNs = 4.0;        // row-wise post-ops (layer norm + quantize, ...)

// Rows the int8 kernels decode a weight group for at once (tiled_avx512.cpp i8_rows: 8;
// AVX2: 4): a linear of the fused layer split by rows (ops_fused.cpp, prepare_run) gives
// each part whole blocks of this many rows, so the parts decode no more weights between
// them than one thread does.
constexpr int64_t kRowBlock = 8;

// A split whose parts read rows that other threads just wrote (a fused layer's attention
// by heads, its depthwise convolution by channels, after projections split by rows) moves
// those rows between the cores' caches: it is made only for this many times the work of
// a split that keeps each thread on its own rows.  (Measured on the 2-core AMD EPYC VM:
// at 16 frames the channel split made the convolution module 1.1x slower than one thread.)
constexpr double kForeignRows = 4.0;

// Least work (ns of one thread) per part: 3 us, well above the cost of waking and joining
// a pool thread; $DENSESHIFT_PARALLEL_MIN_NS (read at load) or set_min_part_ns (returns the
// previous value; 0 splits every stage as far as it goes, as the tests do) change it.
constexpr double kDefaultMinPartNs = 3000.0;
double min_part_ns();
double set_min_part_ns(double ns);

// Parts (threads) for `ns` of work that splits into at most `max_parts` pieces:
// 1 .. at::get_num_threads(), 1 inside a parallel region.
inline int64_t parts_for(double ns, int64_t max_parts) {
  const int64_t n = at::get_num_threads();
  if (n <= 1 || max_parts <= 1 || at::in_parallel_region()) return 1;
  const double least = min_part_ns();
  const int64_t by_work = least <= 0 ? max_parts : int64_t(std::min(ns / least, double(max_parts)));
  return std::max<int64_t>(1, std::min({n, max_parts, by_work}));
}

// Balanced range [b, e) of part `p` of `n` over [0, total).
inline std::pair<int64_t, int64_t> chunk(int64_t total, int64_t p, int64_t n) {
  return {total * p / n, total * (p + 1) / n};
}

// f(p) for p in [0, n), one part per thread (inline when n == 1).
template <class F>
void run_parts(int64_t n, const F& f) {
  if (n <= 1) {
    f(int64_t(0));
    return;
  }
  at::parallel_for(0, n, 1, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) f(p);
  });
}

// Row-wise work over M rows of `elems_per_row` elements: f(m0, m1) on balanced row ranges.
template <class F>
void rows(int64_t M, int64_t elems_per_row, const F& f) {
  const int64_t n = parts_for(double(M) * double(elems_per_row) / kElemPerNs, M);
  run_parts(n, [&](int64_t p) {
    const auto r = chunk(M, p, n);
    if (r.first < r.second) f(r.first, r.second);
  });
}

}  // namespace par

// One tiled linear y = x W^T (alpha, bias) prepared for a call: activations quantized per
// row (int8 path) or padded with zeros to Kq (exact path), then output tiles [t0, t1) run
// by whichever thread takes them; rows holding inf/NaN go through the exact path for the
// same tiles (IEEE semantics), so a tile range is complete when run() returns.
class TiledLinear {
 public:
  // x: (M, K) with row stride ldx; y: (M, N) with row stride ldy.  Only buffers are made.
  TiledLinear(const PathInfo& P, const tiled::Layer& L, bool int8, const float* x, int64_t M, int64_t ldx, float* y,
              int64_t ldy)
      : P_(&P), L_(L), int8_(int8), x_(x), M_(M), ldx_(ldx), y_(y), ldy_(ldy) {
    alloc();
  }

  // Quantize (or pad) rows [m0, m1); every row must be prepared once before run().
  void prepare_rows(int64_t m0, int64_t m1);
  // After every row is prepared (single-threaded): collect the non-finite rows.
  void finish_prepare();
  // prepare_rows over all rows (threads by size) + finish_prepare.
  void prepare();
  // Output tiles [t0, t1) for all M rows.
  void run(int64_t t0, int64_t t1) const;
  // int8 path: every output tile for rows [m0, m1), whose rows prepare_rows has quantized
  // (finish_prepare not needed: non-finite rows of the range go through the exact path
  // here).  A thread that quantizes its own rows and computes all their outputs needs no
  // join between the two; the per-element arithmetic is run()'s (per-row scales, integer
  // sums), so the output is the same bits.
  void run_rows(int64_t m0, int64_t m1) const;

  int64_t tiles() const { return tiled::padded_rows(L_.N) / tiled::kLanes; }
  int64_t rows() const { return M_; }
  int64_t N() const { return L_.N; }
  // Single-thread estimate of run(0, tiles()) in ns.
  double cost_ns() const {
    const double macs = double(M_ + 4) * double(L_.Kq) * double(tiled::padded_rows(L_.N));
    return macs / (int8_ ? par::kInt8MacPerNs : par::kExactMacPerNs);
  }
  // Output columns of tiles [t0, t1).
  static int64_t col(int64_t t, int64_t N) { return std::min(t * tiled::kLanes, N); }

 private:
  const PathInfo* P_;
  tiled::Layer L_;
  bool int8_;
  const float* x_;
  int64_t M_, ldx_;
  float* y_;
  int64_t ldy_;
  // int8: quantized rows; exact: padded copy when K != Kq (else x is read in place);
  // (not zero-filled: prepare_rows writes every row once)
  void alloc();
  std::unique_ptr<uint8_t[]> xq_, finite_;
  std::unique_ptr<float[]> xscale_, xpad_;
  const float* xf_ = nullptr;
  int64_t ldxf_ = 0;
  std::vector<int64_t> bad_;       // int8: rows with inf/NaN
  std::vector<float> xbad_, ybad_;  // their padded inputs and exact outputs (bad x N)
};

// Run `jobs` (each: tiles split in `n` balanced ranges) and after each range call
// epilogue(job index, t0, t1) in the same thread (column post-ops on a thread's own
// output).  Threads by the summed cost.
template <class Epi>
void run_tiled(const std::vector<TiledLinear*>& jobs, const Epi& epilogue) {
  double ns = 0;
  int64_t max_tiles = 0;
  for (const TiledLinear* j : jobs) {
    ns += j->cost_ns();
    max_tiles = std::max(max_tiles, j->tiles());
  }
  const int64_t n = par::parts_for(ns, max_tiles);
  par::run_parts(n, [&](int64_t p) {
    for (size_t i = 0; i < jobs.size(); ++i) {
      const auto r = par::chunk(jobs[i]->tiles(), p, n);
      if (r.first >= r.second) continue;
      jobs[i]->run(r.first, r.second);
      epilogue(i, r.first, r.second);
    }
  });
}

}  // namespace denseshift

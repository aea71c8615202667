// Torch glue of the tiled kernels: argument checks, repacking, activation quantization
// and padding, threads over output tiles (parallel.h: at::parallel_for, honours
// torch.set_num_threads, split by work size).  The schemas live in Python
// (denseshift_speech/kernels/ops.py).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common.h"
#include "cpu_features.h"
#include "parallel.h"
#include "tiled.h"

namespace denseshift {
// packed rows that are not rows of K codes are refused (ops_file_layout.cpp)
void check_rows(const at::Tensor& packed, int64_t bits, int64_t K, const char* op, const char* what);

// "auto" -> $DENSESHIFT_ISA if set, else the best path of this CPU.
const PathInfo& resolve_path(const std::string& req_in) {
  std::string req = req_in;
  if (req == "auto") {
    const char* env = std::getenv("DENSESHIFT_ISA");
    if (env && *env) req = env;
  }
  const PathInfo* p = find_path(req);
  if (p == nullptr) {
    std::string names;
    for (const PathInfo& q : available_paths()) names += std::string(names.empty() ? "" : ", ") + q.name;
    TORCH_CHECK(false, "denseshift: isa '", req, "' is not available on this CPU (available: auto, ", names, ")");
  }
  return *p;
}

namespace par {

namespace {
std::atomic<double>& min_part_setting() {
  static std::atomic<double> v([] {
    const char* env = std::getenv("DENSESHIFT_PARALLEL_MIN_NS");
    if (env && *env) {
      char* end = nullptr;
      const double d = std::strtod(env, &end);
      if (end != env && d >= 0) return d;
    }
    return kDefaultMinPartNs;
  }());
  return v;
}
}  // namespace

double min_part_ns() { return min_part_setting().load(std::memory_order_relaxed); }

double set_min_part_ns(double ns) {
  TORCH_CHECK(ns >= 0, "denseshift: the least work per thread must be >= 0 ns, got ", ns);
  return min_part_setting().exchange(ns);
}

}  // namespace par

void TiledLinear::alloc() {
  if (M_ <= 0) return;
  const int64_t Kq = L_.Kq;
  if (int8_) {
    xq_.reset(new uint8_t[size_t(M_ * Kq)]);
    xscale_.reset(new float[size_t(M_)]);
    finite_.reset(new uint8_t[size_t(M_)]);
  } else if (L_.K != Kq) {
    xpad_.reset(new float[size_t(M_ * Kq)]);
    xf_ = xpad_.get();
    ldxf_ = Kq;
  } else {
    xf_ = x_;  // read in place (the kernel reads columns < Kq == K only)
    ldxf_ = ldx_;
  }
}

void TiledLinear::prepare_rows(int64_t m0, int64_t m1) {
  if (m1 <= m0) return;
  const int64_t K = L_.K, Kq = L_.Kq;
  if (int8_) {
    P_->quantize(x_ + m0 * ldx_, m1 - m0, K, ldx_, Kq, xq_.get() + m0 * Kq, xscale_.get() + m0, finite_.get() + m0);
  } else if (xpad_) {
    for (int64_t m = m0; m < m1; ++m) {
      float* d = xpad_.get() + m * Kq;
      std::memcpy(d, x_ + m * ldx_, sizeof(float) * size_t(K));
      std::memset(d + K, 0, sizeof(float) * size_t(Kq - K));
    }
  }
}

void TiledLinear::finish_prepare() {
  if (!int8_) return;
  bad_.clear();
  for (int64_t m = 0; m < M_; ++m)
    if (!finite_[size_t(m)]) bad_.push_back(m);
  if (bad_.empty()) return;
  // rows holding inf/NaN: the exact path (IEEE semantics) instead of a meaningless scale
  const int64_t K = L_.K, Kq = L_.Kq, nb = int64_t(bad_.size());
  xbad_.assign(size_t(nb * Kq), 0.0f);
  ybad_.assign(size_t(nb * L_.N), 0.0f);
  for (int64_t i = 0; i < nb; ++i)
    std::memcpy(&xbad_[size_t(i * Kq)], x_ + bad_[size_t(i)] * ldx_, sizeof(float) * size_t(K));
}

void TiledLinear::prepare() {
  par::rows(M_, L_.K, [&](int64_t m0, int64_t m1) { prepare_rows(m0, m1); });
  finish_prepare();
}

void TiledLinear::run(int64_t t0, int64_t t1) const {
  if (M_ <= 0 || t1 <= t0) return;
  if (!int8_) {
    tiled::F32Args a{xf_, M_, ldxf_, y_, ldy_};
    P_->f32(L_, a, t0, t1);
    return;
  }
  tiled::I8Args a{xq_.get(), xscale_.get(), M_, y_, ldy_};
  P_->i8(L_, a, t0, t1);
  if (bad_.empty()) return;
  const int64_t N = L_.N, nb = int64_t(bad_.size());
  float* yb = const_cast<float*>(ybad_.data());  // this range's columns only
  tiled::F32Args fa{xbad_.data(), nb, L_.Kq, yb, N};
  P_->f32(L_, fa, t0, t1);
  const int64_t n0 = col(t0, N), n1 = col(t1, N);
  for (int64_t i = 0; i < nb; ++i)
    std::memcpy(y_ + bad_[size_t(i)] * ldy_ + n0, yb + i * N + n0, sizeof(float) * size_t(n1 - n0));
}

void TiledLinear::run_rows(int64_t m0, int64_t m1) const {
  TORCH_CHECK(int8_, "denseshift: TiledLinear::run_rows is the int8 path's");
  const int64_t t1 = tiles(), K = L_.K, Kq = L_.Kq;
  if (m1 <= m0 || t1 == 0) return;
  tiled::I8Args a{xq_.get() + m0 * Kq, xscale_.get() + m0, m1 - m0, y_ + m0 * ldy_, ldy_};
  P_->i8(L_, a, 0, t1);
  std::vector<float> xb;
  for (int64_t m = m0; m < m1; ++m) {
    if (finite_[size_t(m)]) continue;
    xb.assign(size_t(Kq), 0.0f);  // as finish_prepare pads it
    std::memcpy(xb.data(), x_ + m * ldx_, sizeof(float) * size_t(K));
    tiled::F32Args fa{xb.data(), 1, Kq, y_ + m * ldy_, ldy_};
    P_->f32(L_, fa, 0, t1);
  }
}

namespace {

void write_header(uint8_t* h, int64_t N, int64_t K, int32_t bits) {
  std::memcpy(h, "DSTL", 4);
  std::memcpy(h + 4, &tiled::kTileHeaderVersion, 4);
  std::memcpy(h + 8, &N, 8);
  std::memcpy(h + 16, &K, 8);
  std::memcpy(h + 24, &bits, 4);
}

std::tuple<at::Tensor, at::Tensor> repack_cpu(const at::Tensor& packed, int64_t bits, int64_t in_features) {
  TORCH_CHECK(bits >= 2 && bits <= tiled::kMaxBits, "denseshift::repack: bits must be 2, 3 or 4, got ", bits);
  TORCH_CHECK(packed.device().is_cpu() && packed.scalar_type() == at::kByte && packed.dim() == 2,
              "denseshift::repack: packed must be a 2-D uint8 CPU tensor, got ", packed.scalar_type(), " ",
              packed.sizes());
  TORCH_CHECK(in_features >= 1, "denseshift::repack: in_features must be positive, got ", in_features);
  check_rows(packed, bits, in_features, "repack", "in_features");
  const int64_t rb = packed.size(1);
  const int64_t N = packed.size(0);
  at::Tensor pk = packed.contiguous();
  at::Tensor tiles = at::zeros({tiled::kTileHeaderBytes + tiled::tiled_bytes(N, in_features)}, packed.options());
  write_header(tiles.data_ptr<uint8_t>(), N, in_features, int(bits));
  at::Tensor sums = at::empty({tiled::padded_rows(N)}, packed.options().dtype(at::kInt));
  tiled::repack(pk.data_ptr<uint8_t>(), rb, N, in_features, int(bits), tiles.data_ptr<uint8_t>() + tiled::kTileHeaderBytes,
                sums.data_ptr<int32_t>());
  return {tiles, sums};
}

void check_x(const at::Tensor& x, int64_t K) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == at::kFloat, "denseshift::linear_tiled: x must be a float32 CPU tensor, got ",
              x.scalar_type(), " on ", x.device());
  TORCH_CHECK(x.dim() >= 1 && x.size(-1) == K, "denseshift::linear_tiled: x must end with in_features=", K,
              " features, got shape ", x.sizes());
}

}  // namespace

// Checks of one repacked layer's tensors (shape, dtype, the tile header) and its
// tiled::Layer; `keep` holds the contiguous tensors the pointers point into.
tiled::Layer tiled_layer(const at::Tensor& tiles, const at::Tensor& row_sums, const at::Tensor& alpha,
                         const c10::optional<at::Tensor>& bias, int64_t bits, int64_t K, std::vector<at::Tensor>& keep) {
  TORCH_CHECK(bits >= 2 && bits <= tiled::kMaxBits, "denseshift::linear_tiled: bits must be 2, 3 or 4, got ", bits);
  TORCH_CHECK(alpha.defined() && alpha.device().is_cpu() && alpha.scalar_type() == at::kFloat && alpha.dim() == 1,
              "denseshift::linear_tiled: alpha must be a 1-D float32 CPU tensor");
  const int64_t N = alpha.size(0);
  const int64_t want = tiled::kTileHeaderBytes + tiled::tiled_bytes(N, K);
  TORCH_CHECK(tiles.defined() && tiles.device().is_cpu() && tiles.scalar_type() == at::kByte && tiles.dim() == 1 &&
                  tiles.size(0) == want && tiles.is_contiguous(),
              "denseshift::linear_tiled: tiles must be 1-D uint8 of ", want, " bytes for ", N,
              " rows of ", K, " codes (denseshift::repack output), got ", tiles.scalar_type(), " ", tiles.sizes());
  const uint8_t* h = tiles.data_ptr<uint8_t>();
  uint32_t version;
  int64_t hn, hk;
  int32_t hb;
  std::memcpy(&version, h + 4, 4);
  std::memcpy(&hn, h + 8, 8);
  std::memcpy(&hk, h + 16, 8);
  std::memcpy(&hb, h + 24, 4);
  TORCH_CHECK(std::memcmp(h, "DSTL", 4) == 0 && version == tiled::kTileHeaderVersion,
              "denseshift::linear_tiled: tiles do not start with a version-", tiled::kTileHeaderVersion,
              " tile header (not made by denseshift::repack?)");
  TORCH_CHECK(hn == N && hk == K && hb == bits, "denseshift::linear_tiled: the tiles were repacked for ", hn, " rows of ",
              hk, " codes at ", hb, " bits, but the call says ", N, " rows (alpha) of in_features=", K, " at ", bits,
              " bits");
  TORCH_CHECK(row_sums.defined() && row_sums.device().is_cpu() && row_sums.scalar_type() == at::kInt &&
                  row_sums.dim() == 1 && row_sums.size(0) == tiled::padded_rows(N),
              "denseshift::linear_tiled: row_sums must be 1-D int32 of ", tiled::padded_rows(N), " entries");
  if (bias.has_value())
    TORCH_CHECK(bias->device().is_cpu() && bias->scalar_type() == at::kFloat && bias->dim() == 1 && bias->size(0) == N,
                "denseshift::linear_tiled: bias must be float32 of shape (", N, ",)");
  at::Tensor alpha_c = alpha.contiguous(), sums_c = row_sums.contiguous();
  at::Tensor bias_c = bias.has_value() ? bias->contiguous() : at::Tensor();
  keep.push_back(tiles);
  keep.push_back(alpha_c);
  keep.push_back(sums_c);
  if (bias_c.defined()) keep.push_back(bias_c);
  return tiled::Layer{tiles.data_ptr<uint8_t>() + tiled::kTileHeaderBytes, sums_c.data_ptr<int32_t>(),
                      alpha_c.data_ptr<float>(), bias_c.defined() ? bias_c.data_ptr<float>() : nullptr,
                      N, K, tiled::padded_k(K), int(bits)};
}

at::Tensor linear_tiled_cpu(const at::Tensor& x, const at::Tensor& tiles, const at::Tensor& row_sums,
                            const at::Tensor& alpha, const c10::optional<at::Tensor>& bias, int64_t bits,
                            int64_t in_features, c10::string_view path_s, c10::string_view isa_s) {
  const int64_t K = in_features;
  TORCH_CHECK(bits >= 2 && bits <= tiled::kMaxBits, "denseshift::linear_tiled: bits must be 2, 3 or 4, got ", bits);
  check_x(x, K);
  std::vector<at::Tensor> keep;
  const tiled::Layer L = tiled_layer(tiles, row_sums, alpha, bias, bits, K, keep);
  const std::string path(path_s);
  TORCH_CHECK(path == "int8" || path == "exact", "denseshift::linear_tiled: unknown path '", path,
              "' (expected int8 or exact)");
  const PathInfo& P = resolve_path(std::string(isa_s));
  const int64_t N = L.N;
  std::vector<int64_t> out_shape(x.sizes().begin(), x.sizes().end());
  out_shape.back() = N;
  at::Tensor x2 = x.reshape({-1, K});
  if (!x2.is_contiguous()) x2 = x2.contiguous();
  const int64_t M = x2.size(0);
  at::Tensor out = at::empty({M, N}, x.options());
  if (M == 0 || N == 0) return out.reshape(out_shape);
  if (path == "int8")
    TORCH_CHECK(K <= tiled::kMaxInt8K, "denseshift::linear_tiled: the int8 path takes at most ", tiled::kMaxInt8K,
                " input features (int32 accumulators), got ", K);
  TiledLinear lin(P, L, path == "int8", x2.data_ptr<float>(), M, K, out.data_ptr<float>(), N);
  lin.prepare();
  run_tiled({&lin}, [](size_t, int64_t, int64_t) {});
  return out.reshape(out_shape);
}

}  // namespace denseshift

TORCH_LIBRARY_IMPL(denseshift, CPU, m) {
  m.impl("repack", &denseshift::repack_cpu);
  m.impl("linear_tiled", &denseshift::linear_tiled_cpu);
}

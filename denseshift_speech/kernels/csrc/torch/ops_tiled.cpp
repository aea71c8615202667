// Torch glue of the tiled kernels: argument checks, repacking, activation quantization
// and padding, threads over output tiles (at::parallel_for, honours
// torch.set_num_threads).  The schemas live in Python (denseshift_speech/kernels/ops.py).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "common.h"
#include "cpu_features.h"
#include "tiled.h"

namespace denseshift {

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
  const int64_t rb = (in_features + kBlock - 1) / kBlock * 8 * bits;
  TORCH_CHECK(packed.size(1) == rb, "denseshift::repack: packed rows have ", packed.size(1), " bytes, expected ", rb,
              " for in_features=", in_features, " at ", bits, " bits");
  const int64_t N = packed.size(0);
  at::Tensor pk = packed.contiguous();
  at::Tensor tiles = at::zeros({tiled::kTileHeaderBytes + tiled::tiled_bytes(N, in_features)}, packed.options());
  write_header(tiles.data_ptr<uint8_t>(), N, in_features, int(bits));
  at::Tensor sums = at::empty({tiled::padded_rows(N)}, packed.options().dtype(at::kInt));
  tiled::repack(pk.data_ptr<uint8_t>(), rb, N, in_features, int(bits), tiles.data_ptr<uint8_t>() + tiled::kTileHeaderBytes,
                sums.data_ptr<int32_t>());
  return {tiles, sums};
}

void check_tiled(const at::Tensor& x, const at::Tensor& tiles, const at::Tensor& row_sums, const at::Tensor& alpha,
                 const c10::optional<at::Tensor>& bias, int64_t bits, int64_t K) {
  TORCH_CHECK(bits >= 2 && bits <= tiled::kMaxBits, "denseshift::linear_tiled: bits must be 2, 3 or 4, got ", bits);
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == at::kFloat, "denseshift::linear_tiled: x must be a float32 CPU tensor, got ",
              x.scalar_type(), " on ", x.device());
  TORCH_CHECK(x.dim() >= 1 && x.size(-1) == K, "denseshift::linear_tiled: x must end with in_features=", K,
              " features, got shape ", x.sizes());
  TORCH_CHECK(alpha.device().is_cpu() && alpha.scalar_type() == at::kFloat && alpha.dim() == 1,
              "denseshift::linear_tiled: alpha must be a 1-D float32 CPU tensor");
  const int64_t N = alpha.size(0);
  const int64_t want = tiled::kTileHeaderBytes + tiled::tiled_bytes(N, K);
  TORCH_CHECK(tiles.device().is_cpu() && tiles.scalar_type() == at::kByte && tiles.dim() == 1 &&
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
  TORCH_CHECK(row_sums.device().is_cpu() && row_sums.scalar_type() == at::kInt && row_sums.dim() == 1 &&
                  row_sums.size(0) == tiled::padded_rows(N),
              "denseshift::linear_tiled: row_sums must be 1-D int32 of ", tiled::padded_rows(N), " entries");
  if (bias.has_value())
    TORCH_CHECK(bias->device().is_cpu() && bias->scalar_type() == at::kFloat && bias->dim() == 1 && bias->size(0) == N,
                "denseshift::linear_tiled: bias must be float32 of shape (", N, ",)");
}

}  // namespace

at::Tensor linear_tiled_cpu(const at::Tensor& x, const at::Tensor& tiles, const at::Tensor& row_sums,
                            const at::Tensor& alpha, const c10::optional<at::Tensor>& bias, int64_t bits,
                            int64_t in_features, c10::string_view path_s, c10::string_view isa_s) {
  const int64_t K = in_features;
  check_tiled(x, tiles, row_sums, alpha, bias, bits, K);
  const std::string path(path_s);
  TORCH_CHECK(path == "int8" || path == "exact", "denseshift::linear_tiled: unknown path '", path,
              "' (expected int8 or exact)");
  const PathInfo& P = resolve_path(std::string(isa_s));
  const int64_t N = alpha.size(0), Kq = tiled::padded_k(K);
  std::vector<int64_t> out_shape(x.sizes().begin(), x.sizes().end());
  out_shape.back() = N;
  at::Tensor x2 = x.reshape({-1, K});
  if (!x2.is_contiguous()) x2 = x2.contiguous();
  const int64_t M = x2.size(0);
  at::Tensor out = at::empty({M, N}, x.options());
  if (M == 0 || N == 0) return out.reshape(out_shape);
  at::Tensor alpha_c = alpha.contiguous(), sums_c = row_sums.contiguous(), tiles_c = tiles.contiguous();
  at::Tensor bias_c = bias.has_value() ? bias->contiguous() : at::Tensor();
  tiled::Layer L{tiles_c.data_ptr<uint8_t>() + tiled::kTileHeaderBytes, sums_c.data_ptr<int32_t>(), alpha_c.data_ptr<float>(),
                 bias.has_value() ? bias_c.data_ptr<float>() : nullptr, N, K, Kq, int(bits)};
  const int64_t T = tiled::padded_rows(N) / tiled::kLanes;
  float* y = out.data_ptr<float>();
  // about 64k multiply-adds per task before a second thread is worth waking
  const int64_t grain = std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(1, M * Kq * tiled::kLanes));

  // exact-path input: rows padded with zeros to Kq (K == Kq reads x in place)
  auto padded = [&](const float* src, int64_t rows, int64_t ld, std::vector<float>& buf) -> const float* {
    if (K == Kq && ld == K) return src;
    buf.assign(size_t(rows * Kq), 0.0f);
    for (int64_t m = 0; m < rows; ++m) std::memcpy(&buf[size_t(m * Kq)], src + m * ld, sizeof(float) * K);
    return buf.data();
  };
  const float* xp = x2.data_ptr<float>();
  if (path == "exact") {
    std::vector<float> buf;
    tiled::F32Args a{padded(xp, M, K, buf), M, Kq, y, N};
    at::parallel_for(0, T, grain, [&](int64_t t0, int64_t t1) { P.f32(L, a, t0, t1); });
    return out.reshape(out_shape);
  }
  TORCH_CHECK(K <= tiled::kMaxInt8K, "denseshift::linear_tiled: the int8 path takes at most ", tiled::kMaxInt8K,
              " input features (int32 accumulators), got ", K);
  std::vector<uint8_t> xq(static_cast<size_t>(M * Kq)), finite(static_cast<size_t>(M));
  std::vector<float> xscale(static_cast<size_t>(M));
  P.quantize(xp, M, K, K, Kq, xq.data(), xscale.data(), finite.data());
  tiled::I8Args a{xq.data(), xscale.data(), M, y, N};
  at::parallel_for(0, T, grain, [&](int64_t t0, int64_t t1) { P.i8(L, a, t0, t1); });
  // rows holding inf/NaN: the exact path (IEEE semantics) instead of a meaningless scale
  std::vector<int64_t> bad;
  for (int64_t m = 0; m < M; ++m)
    if (!finite[size_t(m)]) bad.push_back(m);
  if (!bad.empty()) {
    std::vector<float> xb(bad.size() * size_t(Kq), 0.0f), yb(bad.size() * size_t(N));
    for (size_t i = 0; i < bad.size(); ++i) std::memcpy(&xb[i * size_t(Kq)], xp + bad[i] * K, sizeof(float) * K);
    tiled::F32Args fa{xb.data(), int64_t(bad.size()), Kq, yb.data(), N};
    P.f32(L, fa, 0, T);
    for (size_t i = 0; i < bad.size(); ++i) std::memcpy(y + bad[i] * N, &yb[i * size_t(N)], sizeof(float) * N);
  }
  return out.reshape(out_shape);
}

}  // namespace denseshift

TORCH_LIBRARY_IMPL(denseshift, CPU, m) {
  m.impl("repack", &denseshift::repack_cpu);
  m.impl("linear_tiled", &denseshift::linear_tiled_cpu);
}

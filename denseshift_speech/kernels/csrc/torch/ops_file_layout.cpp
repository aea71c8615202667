// Torch glue of the file-layout kernels (shift/add, fma, gemm): implementations of the
// ops whose schemas denseshift_speech/kernels/ops.py defines, ISA dispatch,
// activation preparation (padding, the integer-add path's edge-case mask), threads
// over output channels with at::parallel_for (honours torch.set_num_threads).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "common.h"
#include "cpu_features.h"
#include "parallel.h"
#include "tiled.h"

// Fortran BLAS sgemm exported by libtorch_cpu (MKL or OpenBLAS builds).  Weak: if a
// torch build does not export it, the gemm path goes through at::mm per tile.
extern "C" void sgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k,
                       const float* alpha, const float* a, const int* lda, const float* b,
                       const int* ldb, const float* beta, float* c, const int* ldc)
    __attribute__((weak));

namespace denseshift {
const PathInfo& resolve_path(const std::string& req);  // ops_tiled.cpp

static int64_t row_bytes_for(int64_t K, int64_t bits) { return (K + kBlock - 1) / kBlock * 8 * bits; }

// Refuses packed rows that are not rows of K codes of `bits` bits: a width other than
// row_bytes(K), or (rows packed for more codes that pad to the same width) a code past K
// other than the pad code 0.  `what` is K's argument name (in_features, kernel_size).
// Same checks and messages: kernels/layout.py, unpack_codes.
void check_rows(const at::Tensor& packed, int64_t bits, int64_t K, const char* op, const char* what) {
  const int64_t width = packed.size(1), want = row_bytes_for(K, bits), block = 8 * bits;
  if (width != want) {
    std::string held = width == 0 ? std::string("0 codes")
        : width % block ? "not a whole number of " + std::to_string(block) + "-byte blocks"
                        : std::to_string(width / block * kBlock - kBlock + 1) + ".." +
                              std::to_string(width / block * kBlock) + " codes";
    TORCH_CHECK(false, "denseshift::", op, ": ", what, "=", K, " disagrees with the packed rows: ", K,
                " codes of ", bits, " bits take ", want, " bytes a row, the rows have ", width, " (", held, ")");
  }
  if (K <= 0 || K % kBlock == 0) return;  // no pad codes
  uint64_t mask[8];  // a block is `bits` 8-byte words; test the ones that hold pad codes
  pad_mask(K, int(bits), reinterpret_cast<uint8_t*>(mask));
  int words[8], nw = 0;
  for (int j = 0; j < int(bits); ++j)
    if (mask[j]) words[nw++] = j;
  const at::Tensor pk = packed.contiguous();
  const uint8_t* first = pk.data_ptr<uint8_t>() + width - block;  // last block of row 0
  const auto pad_bits = [&](const uint8_t* last) {
    uint64_t set = 0;
    for (int i = 0; i < nw; ++i) {
      uint64_t w;
      std::memcpy(&w, last + 8 * words[i], 8);
      set |= w & mask[words[i]];
    }
    return set;
  };
  uint64_t any = 0;  // no branch per row: the rows are nearly always right
  for (int64_t n = 0; n < packed.size(0); ++n) any |= pad_bits(first + n * width);
  if (any == 0) return;
  for (int64_t n = 0;; ++n) {
    const uint8_t* last = first + n * width;
    if (pad_bits(last) == 0) continue;
    const Planes P = planes_for(int(bits));
    int t = kBlock - 1;
    while (block_code(last, P, t) == 0) --t;
    const int64_t index = K - K % kBlock + t;
    TORCH_CHECK(false, "denseshift::", op, ": ", what, "=", K, " disagrees with the packed rows: they hold at least ",
                index + 1, " codes a row (row ", n, " has a code other than the pad code 0 at index ", index, ")");
  }
}

namespace {

// C (m x n, column-major, ldc) = A^T * B with A (k x m, lda), B (k x n, ldb).
void gemm_tn(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
             int64_t ldb, float* c, int64_t ldc) {
  if (sgemm_ != nullptr && m < INT32_MAX && n < INT32_MAX && lda < INT32_MAX && ldb < INT32_MAX &&
      ldc < INT32_MAX) {
    const int mi = int(m), ni = int(n), ki = int(k), ldai = int(lda), ldbi = int(ldb), ldci = int(ldc);
    const float one = 1.0f, zero = 0.0f;
    sgemm_("T", "N", &mi, &ni, &ki, &one, a, &ldai, b, &ldbi, &zero, c, &ldci);
    return;
  }
  auto opts = at::TensorOptions().dtype(at::kFloat);
  at::Tensor wt = at::from_blob(const_cast<float*>(a), {m, k}, {lda, 1}, opts);
  at::Tensor xt = at::from_blob(const_cast<float*>(b), {n, k}, {ldb, 1}, opts);
  at::Tensor r = at::mm(xt, wt.t());  // (n, m)
  at::from_blob(c, {n, ldc}, opts).narrow(1, 0, m).copy_(r);
}

enum class Isa { Scalar = 0, Avx2 = 1, Avx512 = 2 };

const char* isa_name(Isa i) {
  switch (i) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "scalar";
  }
}

bool cpu_supports(Isa i) {
  const CpuFeatures& f = cpu_features();
  switch (i) {
    case Isa::Avx512: return f.avx512 && f.avx2 && f.fma;
    case Isa::Avx2: return f.avx2 && f.fma;
    default: return true;
  }
}

std::vector<std::string> supported_isas() {
  std::vector<std::string> out;
  for (Isa i : {Isa::Avx512, Isa::Avx2, Isa::Scalar})
    if (cpu_supports(i)) out.push_back(isa_name(i));
  return out;
}

// "auto" -> $DENSESHIFT_ISA if set, else the best the CPU has.
Isa resolve_isa(std::string req) {
  if (req == "auto") {
    const char* env = std::getenv("DENSESHIFT_ISA");
    if (env && *env && std::string(env) != "auto") req = env;
  }
  if (req == "auto") {
    for (Isa i : {Isa::Avx512, Isa::Avx2})
      if (cpu_supports(i)) return i;
    return Isa::Scalar;
  }
  Isa want;
  if (req == "scalar") want = Isa::Scalar;
  else if (req == "avx2") want = Isa::Avx2;
  else if (req == "avx512") want = Isa::Avx512;
  else TORCH_CHECK(false, "denseshift: unknown isa '", req, "' (expected auto, scalar, avx2, avx512)");
  TORCH_CHECK(cpu_supports(want), "denseshift: isa '", req, "' requested but this CPU does not support it");
  return want;
}

enum class Method { Add = 0, Fma = 1, Gemm = 2 };
constexpr int64_t kGemmMinRows = 16;  // method "auto": rows of x from which gemm is used

Method resolve_method(const std::string& m) {
  if (m == "add") return Method::Add;
  if (m == "fma") return Method::Fma;
  if (m == "gemm") return Method::Gemm;
  TORCH_CHECK(false, "denseshift: unknown method '", m, "' (expected add, fma or gemm)");
  return Method::Add;
}

DecodeRows pick_decode(Isa isa) {
#if defined(DENSESHIFT_X86)
  if (isa == Isa::Avx512) return decode_rows_avx512;
  if (isa == Isa::Avx2) return decode_rows_avx2;
#endif
  (void)isa;
  return decode_rows_scalar;
}

LinKernel pick_linear(Isa isa, bool fma, int bits) {
#if defined(DENSESHIFT_X86)
  if (bits <= 4) {
    if (isa == Isa::Avx512) return fma ? linear_fma_avx512 : linear_add_avx512;
    if (isa == Isa::Avx2) return fma ? linear_fma_avx2 : linear_add_avx2;
  }
#endif
  (void)isa;
  (void)bits;
  return fma ? linear_fma_scalar : linear_add_scalar;
}

DwKernel pick_dw(Isa isa, bool fma) {
#if defined(DENSESHIFT_X86)
  if (isa == Isa::Avx512) return fma ? dw_fma_avx512 : dw_add_avx512;
  if (isa == Isa::Avx2) return fma ? dw_fma_avx2 : dw_add_avx2;
#endif
  (void)isa;
  return fma ? dw_fma_scalar : dw_add_scalar;
}

void check_common(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& alpha,
                  const c10::optional<at::Tensor>& bias, int64_t bits, int64_t K, const char* op,
                  const char* what) {
  TORCH_CHECK(bits >= 2 && bits <= 8, "denseshift::", op, ": bits must be in 2..8, got ", bits);
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == at::kFloat,
              "denseshift::", op, ": x must be a float32 CPU tensor, got ", x.scalar_type(), " on ", x.device());
  TORCH_CHECK(packed.device().is_cpu() && alpha.device().is_cpu() &&
                  (!bias.has_value() || bias->device().is_cpu()),
              "denseshift::", op, ": packed, alpha and bias must be CPU tensors");
  TORCH_CHECK(packed.scalar_type() == at::kByte && packed.dim() == 2,
              "denseshift::", op, ": packed must be a 2-D uint8 tensor, got ", packed.scalar_type(),
              " with ", packed.dim(), " dims");
  const int64_t N = packed.size(0);
  check_rows(packed, bits, K, op, what);
  TORCH_CHECK(alpha.scalar_type() == at::kFloat && alpha.dim() == 1 && alpha.size(0) == N,
              "denseshift::", op, ": alpha must be float32 of shape (", N, ",)");
  if (bias.has_value())
    TORCH_CHECK(bias->scalar_type() == at::kFloat && bias->dim() == 1 && bias->size(0) == N,
                "denseshift::", op, ": bias must be float32 of shape (", N, ",)");
}

at::Tensor linear_cpu(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& alpha,
                      const c10::optional<at::Tensor>& bias, int64_t bits, int64_t in_features,
                      c10::string_view isa_s, c10::string_view method_s) {
  const int64_t K = in_features;
  check_common(x, packed, alpha, bias, bits, K, "linear", "in_features");
  TORCH_CHECK(x.dim() >= 1 && x.size(-1) == K, "denseshift::linear: x must end with in_features=", K,
              " features, got shape ", x.sizes());
  const Isa isa = resolve_isa(std::string(isa_s));
  const int64_t N = packed.size(0);
  std::vector<int64_t> out_shape(x.sizes().begin(), x.sizes().end());
  out_shape.back() = N;
  at::Tensor x2 = x.reshape({-1, K}).contiguous();
  const int64_t M = x2.size(0);
  // auto: the shift kernel for few rows (streaming), tile-decode + sgemm for batches.
  const Method method = method_s == "auto" ? (M >= kGemmMinRows ? Method::Gemm : Method::Add)
                                           : resolve_method(std::string(method_s));
  const bool fma = method != Method::Add;  // fma and gemm: plain IEEE products
  at::Tensor out = at::empty({M, N}, x.options());
  if (M == 0 || N == 0) return out.reshape(out_shape);

  const int64_t Kp = (K + kBlock - 1) / kBlock * kBlock;
  const int B = int(bits);
  const float* xp = x2.data_ptr<float>();
  std::vector<std::vector<int64_t>> unsafe(M);
  bool any_unsafe = false;
  if (!fma) {
    for (int64_t m = 0; m < M; ++m)
      for (int64_t k = 0; k < K; ++k)
        if (!shift_safe(xp[m * K + k], B)) {
          unsafe[m].push_back(k);
          any_unsafe = true;
        }
  }
  std::vector<float> xbuf;
  std::vector<uint32_t> mbuf;
  const float* xk = xp;
  if (any_unsafe || Kp != K) {
    xbuf.assign(size_t(M * Kp), 0.0f);
    for (int64_t m = 0; m < M; ++m) std::memcpy(&xbuf[m * Kp], xp + m * K, sizeof(float) * K);
    if (any_unsafe) {
      mbuf.assign(size_t(M * Kp), 0xffffffffu);
      for (int64_t m = 0; m < M; ++m) {
        for (int64_t k = K; k < Kp; ++k) mbuf[m * Kp + k] = 0u;
        for (int64_t k : unsafe[m]) {
          xbuf[m * Kp + k] = 0.0f;
          mbuf[m * Kp + k] = 0u;
        }
      }
    }
    xk = xbuf.data();
  }
  LinArgs a;
  a.x = xk;
  a.mask = any_unsafe ? mbuf.data() : nullptr;
  const at::Tensor pk = packed.contiguous();  // kept alive for the whole call
  a.w = pk.data_ptr<uint8_t>();
  a.M = M;
  a.N = N;
  a.Kp = Kp;
  a.row_bytes = packed.size(1);
  a.bits = B;
  a.last_chunks = int(((K - 1) % kBlock) / 16 + 1);
  a.acc = out.data_ptr<float>();
  at::Tensor alpha_c = alpha.contiguous();
  at::Tensor bias_c = bias.has_value() ? bias->contiguous() : at::Tensor();
  const float* al = alpha_c.data_ptr<float>();
  const float* bi = bias.has_value() ? bias_c.data_ptr<float>() : nullptr;
  const LinKernel kern = pick_linear(isa, fma, B);
  const DecodeRows decode = pick_decode(isa);
  const Planes P = planes_for(B);
  // gemm: decode tiles of rows (<= ~256 KiB of floats, cache resident) and hand each to
  // the BLAS sgemm; the whole weight matrix is never unpacked.
  const int64_t tile = std::max<int64_t>(16, std::min<int64_t>(256, (1 << 16) / std::max<int64_t>(1, Kp)));
  const int64_t grain = method == Method::Gemm
      ? std::max<int64_t>(16, std::min<int64_t>(tile, (N + 1) / 2))
      : std::max<int64_t>(4, 32768 / std::max<int64_t>(1, M * Kp) + 1);
  at::parallel_for(0, N, grain, [&](int64_t n0, int64_t n1) {
    if (Kp > 0 && method == Method::Gemm) {
      std::vector<float> wbuf(size_t(std::min(tile, n1 - n0) * Kp));
      for (int64_t nb = n0; nb < n1; nb += tile) {
        const int64_t rows = std::min(tile, n1 - nb);
        decode(a.w + nb * a.row_bytes, rows, a.row_bytes, Kp, B, wbuf.data());
        // column-major view: C (rows x M, ldc N) = Wtile (Kp x rows)^T * X^T (Kp x M)
        gemm_tn(rows, M, K, wbuf.data(), Kp, a.x, Kp, a.acc + nb, N);  // padding skipped
      }
    } else if (Kp > 0) kern(a, n0, n1);
    else
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = n0; n < n1; ++n) a.acc[m * N + n] = 0.0f;
    for (int64_t n = n0; n < n1; ++n) {
      const uint8_t* wr = a.w + n * a.row_bytes;
      for (int64_t m = 0; m < M; ++m) {
        float v = a.acc[m * N + n];
        for (int64_t k : unsafe[m])  // IEEE product for the masked-out activations
          v += xp[m * K + k] * code_value(block_code(wr + (k / kBlock) * 8 * B, P, int(k % kBlock)), B);
        v = al[n] * v;
        if (bi) v += bi[n];
        a.acc[m * N + n] = v;
      }
    }
  });
  return out.reshape(out_shape);
}

at::Tensor dw_cpu(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& alpha,
                  const c10::optional<at::Tensor>& bias, int64_t bits, int64_t kernel_size,
                  int64_t padding, int64_t dilation, c10::string_view isa_s, c10::string_view method_s) {
  check_common(x, packed, alpha, bias, bits, kernel_size, "depthwise_conv1d", "kernel_size");
  TORCH_CHECK(x.dim() == 3 && x.size(1) == packed.size(0),
              "denseshift::depthwise_conv1d: x must be (batch, ", packed.size(0), ", time), got ", x.sizes());
  TORCH_CHECK(kernel_size >= 1 && padding >= 0 && dilation >= 1,
              "denseshift::depthwise_conv1d: bad kernel_size/padding/dilation");
  const Isa isa = resolve_isa(std::string(isa_s));
  const bool fma = method_s != "auto" && resolve_method(std::string(method_s)) != Method::Add;
  const int64_t Bn = x.size(0), C = x.size(1), T = x.size(2);
  const int64_t Tout = T + 2 * padding - dilation * (kernel_size - 1);
  TORCH_CHECK(Tout >= 0, "denseshift::depthwise_conv1d: input of length ", T,
              " is shorter than the kernel extent");
  at::Tensor out = at::empty({Bn, C, Tout}, x.options());
  if (Bn == 0 || C == 0 || Tout == 0) return out;
  at::Tensor xc = x.contiguous();
  at::Tensor pk = packed.contiguous();
  at::Tensor alpha_c = alpha.contiguous();
  at::Tensor bias_c = bias.has_value() ? bias->contiguous() : at::Tensor();
  const float* xp = xc.data_ptr<float>();
  const uint8_t* wp = pk.data_ptr<uint8_t>();
  const float* al = alpha_c.data_ptr<float>();
  const float* bi = bias.has_value() ? bias_c.data_ptr<float>() : nullptr;
  float* op = out.data_ptr<float>();
  const int B = int(bits);
  const int64_t K = kernel_size, rb = pk.size(1), L = T + 2 * padding + 16;
  const DwKernel kern = pick_dw(isa, fma);
  // Per-channel tap addends / values, decoded once per call.
  // value +-2^e -> addend: bits(+-2^e) - bits(1.0f) == (e << 23) + (neg << 31) mod 2^32.
  const int64_t Kp = (K + kBlock - 1) / kBlock * kBlock;
  std::vector<float> wv_all(size_t(C * Kp));
  std::vector<uint32_t> ad_all(size_t(C * Kp));
  pick_decode(isa)(wp, C, rb, Kp, B, wv_all.data());
  for (size_t i = 0; i < wv_all.size(); ++i) ad_all[i] = f2u(wv_all[i]) - f2u(1.0f);
  const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(1, K * Tout));
  at::parallel_for(0, Bn * C, grain, [&](int64_t r0, int64_t r1) {
    std::vector<float> xs(L, 0.0f);
    std::vector<uint32_t> mk(L, 0u);
    std::vector<int64_t> bad;
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t c = r % C;
      const uint32_t* ad = ad_all.data() + c * Kp;
      const float* wv = wv_all.data() + c * Kp;
      const float* xr = xp + r * T;
      bad.clear();
      // the padding stays +0.0 with mask 0; only the T interior slots are rewritten
      if (fma) {
        std::memcpy(xs.data() + padding, xr, sizeof(float) * T);
      } else {
        for (int64_t t = 0; t < T; ++t) {
          const float v = xr[t];
          const bool ok = shift_safe(v, B);
          xs[padding + t] = ok ? v : 0.0f;
          mk[padding + t] = ok ? 0xffffffffu : 0u;
          if (!ok) bad.push_back(t);
        }
      }
      DwArgs a;
      a.x = xs.data();
      a.mask = mk.data();
      a.addend = ad;
      a.wval = wv;
      a.k = K;
      a.dil = dilation;
      a.Tout = Tout;
      a.out = op + r * Tout;
      kern(a);
      for (int64_t tt : bad)
        for (int64_t j = 0; j < K; ++j) {
          const int64_t t = tt + padding - j * dilation;
          if (t >= 0 && t < Tout) a.out[t] += xr[tt] * wv[j];
        }
      const float al_c = al[c], bi_c = bi ? bi[c] : 0.0f;
      for (int64_t t = 0; t < Tout; ++t) a.out[t] = al_c * a.out[t] + bi_c;
    }
  });
  return out;
}

}  // namespace
}  // namespace denseshift

// Schemas: denseshift_speech/kernels/ops.py (defined once, in Python).
TORCH_LIBRARY_IMPL(denseshift, CPU, m) {
  m.impl("linear", &denseshift::linear_cpu);
  m.impl("depthwise_conv1d", &denseshift::dw_cpu);
}

namespace denseshift {
void bind_conformer_layer_plan(pybind11::module_& m);  // ops_fused.cpp
void bind_xvector_plan(pybind11::module_& m);          // ops_xvector.cpp
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "DenseShift fused shift kernel (registers torch.ops.denseshift.*)";
  denseshift::bind_conformer_layer_plan(m);
  denseshift::bind_xvector_plan(m);
  m.def("supported_isas", &denseshift::supported_isas, "ISA paths this CPU can run, best first");
  m.def("selected_isa", [](const std::string& req) { return std::string(denseshift::isa_name(denseshift::resolve_isa(req))); },
        "The ISA path `isa=req` resolves to (honours $DENSESHIFT_ISA for 'auto')");
  m.def("cpu_features", &denseshift::describe_cpu, "SIMD features detected on this CPU");
  m.def("tiled_paths", [] {
    std::vector<std::string> out;
    for (const auto& p : denseshift::available_paths()) out.push_back(p.name);
    return out;
  }, "tiled-kernel paths this CPU can run, best first");
  m.def("selected_tiled_path", [](const std::string& req) { return std::string(denseshift::resolve_path(req).name); },
        "The tiled path `isa=req` resolves to (honours $DENSESHIFT_ISA for 'auto')");
  m.def("parallel_min_ns", [](double ns) { return ns < 0 ? denseshift::par::min_part_ns() : denseshift::par::set_min_part_ns(ns); },
        pybind11::arg("ns") = -1.0,
        "The least single-thread work (ns) per thread before a tiled or fused stage is split; "
        "ns >= 0 sets it and returns the previous value");
  // Layout facts, checked against the Python side by tests/test_tiled.py.
  m.attr("BLOCK") = denseshift::kBlock;
  m.attr("TILE_LANES") = denseshift::tiled::kLanes;
  m.attr("TILE_GROUP_K") = denseshift::tiled::kGroupK;
  m.attr("TILE_GROUP_BYTES") = denseshift::tiled::kGroupBytes;
  m.attr("TILE_QUAD") = denseshift::tiled::kQuad;
  m.attr("TILE_MAX_BITS") = denseshift::tiled::kMaxBits;
  m.attr("TILE_HEADER_BYTES") = denseshift::tiled::kTileHeaderBytes;
  m.attr("INT8_MAX_K") = denseshift::tiled::kMaxInt8K;
}

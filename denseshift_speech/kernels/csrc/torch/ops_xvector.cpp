// Torch glue: a whole SpeechBrain x-vector network (Xvector TDNN + statistics pooling +
// Classifier) in one op call, so a packed keyword spotter's window reaches the kernels in
// one framework call instead of about sixty module calls.  Schema and the argument layout:
// denseshift_speech/kernels/ops.py; the program is built by denseshift_speech/packed/xvector.py.
// The op makes an XvectorPlan of its arguments and runs it; a fused spotter keeps the plan
// (kernels._C.XvectorPlan) and only runs it.
//
// The network is a program of records run on (B, T, C) frames, then, after the pooling, on
// (B, C) vectors.  A record is one int64 (few ints cross from Python quickly): the kind in
// its low 4 bits, then fields of 10 bits each (kernels/reference.py, xv_record):
//   CONV   slot, kernel, dilation, pad, pad_mode, gemm
//                                                 SpeechBrain Conv1d: `pad` frames each side
//          (0 zeros, 1 reflect, 2 replicate: F.pad's modes), then a stride-1 conv.  Packed
//          slots hold the codes tap-major (in_features index = tap * C_in + channel, which
//          packed/xvector.py makes from the file's channel-major rows): a frame's input row
//          is its taps' frames one after another, so it is gathered with k copies.  Float
//          slots (weight (N, C_in, k)) run at::conv1d on the padded (B, C_in, T + 2 pad)
//          tensor the module builds, so their output is the module's bit for bit; `gemm`
//          (the Python side checked that this torch computes such a conv of one sequence
//          as that gemm): at::addmm(bias, W, im2col) where torch picks its im2col + gemm
//          convolution (batch 1, no dilation, C_in x padded frames <= 20480), the same
//          gemm call without the convolution's per-call overhead.
//   LEAKY  float index of the negative slope      torch's leaky_relu
//   NORM   params index p, eps float index, fused batch norm in eval mode: params[4p..4p+3]
//          are running mean, running var, weight, bias; as torch computes it: invstd =
//          1 / sqrt(var + eps), a = invstd * w, b = bias - mean * a, y = x * a + b (`fused`:
//          the last two with one rounding each, as torch's x86 / aarch64 builds do; the
//          Python side probes which)
//   POOL   eps float index, lanes                 StatisticsPooling: (mean over time +
//          mean_noise, unbiased std over time + eps); the mean as torch sums a contiguous
//          time axis with vectors of `lanes` floats (xvector.h; the Python side probes the
//          width), or by at::mean on the channel-major frames the module holds (lanes 0);
//          the std by Welford's update in double (torch.std's CPU algorithm)
//   LINEAR slot                                   packed: the tiled kernel; float: at::linear
//   LOG_SOFTMAX                                   at::log_softmax over the last dimension
//   EMIT                                          the current vectors become the op's first
//                                                 output (the x-vector embedding)
// LEAKY and NORM records right after a CONV or LINEAR run on each output block as soon as
// a thread has computed it.  Packed layers quantize exactly the rows the module path
// quantizes (one frame's taps, or one vector), so on the int8 path every output equals
// the module path's bit for bit; on the exact path the tap-major order changes the float
// summation order (tolerance, not bits).
//
// Threads (parallel.h): the packed linears by output tiles, gathering + quantization by
// rows, the std by sequences, each only when its work pays for another thread; the float
// layers run ATen's own ops.  No split changes an output element: bit-identical on any
// thread count.
#include <torch/extension.h>

#include "cpu_features.h"
#include "parallel.h"
#include "tiled.h"
#include "xvector.h"

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

namespace denseshift {

tiled::Layer tiled_layer(const at::Tensor& tiles, const at::Tensor& row_sums, const at::Tensor& alpha,
                         const c10::optional<at::Tensor>& bias, int64_t bits, int64_t K, std::vector<at::Tensor>& keep);

namespace {

enum Kind : int64_t { kConv = 0, kLeaky = 1, kNorm = 2, kPool = 3, kLinear = 4, kLogSoftmax = 5, kEmit = 6 };
constexpr int kKindBits = 4, kFieldBits = 10, kFields = 6;  // one int64 per record
static_assert(kKindBits + kFields * kFieldBits <= 64, "a record is one int64");
constexpr int64_t kSlotTensors = 5;  // tiles, row_sums, alpha, bias, weight
enum PadMode : int64_t { kPadZeros = 0, kPadReflect = 1, kPadReplicate = 2 };

inline float* fptr(const at::Tensor& t) { return t.data_ptr<float>(); }
// t as contiguous float32 (no dispatch when it already is: most calls pass such tensors)
inline at::Tensor as_float(const at::Tensor& t) {
  const at::Tensor f = t.scalar_type() == at::kFloat ? t : t.to(at::kFloat);
  return f.is_contiguous() ? f : f.contiguous();
}

// One post-op of an epilogue: leaky relu (a == nullptr) or a per-channel affine.
struct PostOp {
  float slope = 0.0f;
  const float* a = nullptr;
  const float* b = nullptr;
  bool fused = false;
};

// The arguments of denseshift::xvector checked and prepared once: the tiled layouts of
// its packed slots, contiguous float32 batch-norm tensors, the resolved ISA.  A fused
// keyword spotter keeps one (packed/xvector.py) and pays the argument handling once
// instead of on every window (as ConformerLayerPlan, ops_fused.cpp).  Batch-norm terms are
// still made on every run from the held tensors, so in-place updates of them count.
class XvectorPlan {
 public:
  XvectorPlan(const std::vector<c10::optional<at::Tensor>>& slots, const std::vector<int64_t>& slot_ints,
              const std::vector<at::Tensor>& params, const std::vector<double>& floats,
              const std::vector<int64_t>& program, const std::string& path, const std::string& isa);
  std::tuple<at::Tensor, at::Tensor> run(const at::Tensor& x, const c10::optional<at::Tensor>& mean_noise) const;

  std::vector<c10::optional<at::Tensor>> slots;
  std::vector<int64_t> slot_ints;  // per slot: bits, in_features
  std::vector<at::Tensor> params;  // contiguous float32
  std::vector<double> floats;
  std::vector<int64_t> program;
  bool int8 = true;
  const PathInfo* info = nullptr;
  const xv::Ops* X = nullptr;
  std::vector<tiled::Layer> layers;  // per slot (packed slots only)
  std::vector<bool> packed;
  std::vector<at::Tensor> keep;      // contiguous copies the tiled layers point into
};

struct Net {
  const XvectorPlan& plan;
  std::vector<std::vector<float>> terms;  // batch norm a, b of this call

  bool int8() const { return plan.int8; }
  const xv::Ops* X() const { return plan.X; }
  int64_t records() const { return int64_t(plan.program.size()); }
  // field 0: the kind; fields 1..kFields: the record's fields
  int64_t field(int64_t r, int64_t i) const {
    const uint64_t rec = uint64_t(plan.program[size_t(r)]);
    if (i == 0) return int64_t(rec & ((1u << kKindBits) - 1));
    return int64_t((rec >> (kKindBits + (i - 1) * kFieldBits)) & ((1u << kFieldBits) - 1));
  }
  at::Tensor slot(int64_t s, int64_t i) const {
    const c10::optional<at::Tensor>& t = plan.slots[size_t(s * kSlotTensors + i)];
    return t.has_value() ? *t : at::Tensor();
  }
  double fl(int64_t i) const {
    TORCH_CHECK(i >= 0 && i < int64_t(plan.floats.size()), "denseshift::xvector: float index ", i, " out of range");
    return plan.floats[size_t(i)];
  }
  void check_slot(int64_t s) const {
    TORCH_CHECK(s >= 0 && (s + 1) * kSlotTensors <= int64_t(plan.slots.size()) &&
                    2 * s + 1 < int64_t(plan.slot_ints.size()),
                "denseshift::xvector: linear slot ", s, " out of range");
  }

  // Post-ops of the LEAKY / NORM records from r on (C channels); returns the next record.
  int64_t post_ops(int64_t r, int64_t C, std::vector<PostOp>& ops) {
    for (; r < records(); ++r) {
      const int64_t kind = field(r, 0);
      if (kind == kLeaky) {
        PostOp op;
        op.slope = float(fl(field(r, 1)));
        ops.push_back(op);
      } else if (kind == kNorm) {
        const int64_t p = field(r, 1);
        const std::vector<at::Tensor>& params = plan.params;
        TORCH_CHECK(p >= 0 && 4 * p + 3 < int64_t(params.size()), "denseshift::xvector: batch norm ", p,
                    " out of range");
        for (int i = 0; i < 4; ++i)
          TORCH_CHECK(params[size_t(4 * p + i)].numel() == C, "denseshift::xvector: batch norm ", p, " has ",
                      params[size_t(4 * p + i)].numel(), " channels, its input ", C);
        const float eps = float(fl(field(r, 2)));
        const bool fused = field(r, 3) != 0;
        const float *rm = fptr(params[size_t(4 * p)]), *rv = fptr(params[size_t(4 * p + 1)]);
        const float *w = fptr(params[size_t(4 * p + 2)]), *bias = fptr(params[size_t(4 * p + 3)]);
        std::vector<float> a(static_cast<size_t>(C)), b(static_cast<size_t>(C));
        for (int64_t c = 0; c < C; ++c) {
          const float invstd = 1.0f / std::sqrt(rv[c] + eps);
          a[size_t(c)] = invstd * w[c];
          b[size_t(c)] = fused ? std::fma(-rm[c], a[size_t(c)], bias[c]) : bias[c] - rm[c] * a[size_t(c)];
        }
        terms.push_back(std::move(a));
        terms.push_back(std::move(b));
        PostOp op;
        op.a = terms[terms.size() - 2].data();
        op.b = terms.back().data();
        op.fused = fused;
        ops.push_back(op);
      } else {
        break;
      }
    }
    return r;
  }

  // ops on y[rows, n0:n1] (row stride ld)
  void apply(const std::vector<PostOp>& ops, float* y, int64_t rows, int64_t ld, int64_t n0, int64_t n1) const {
    if (n1 <= n0 || rows <= 0) return;
    for (const PostOp& op : ops) {
      if (op.a == nullptr)
        X()->leaky_relu(y + n0, rows, n1 - n0, ld, op.slope);
      else
        X()->affine(y + n0, rows, n1 - n0, ld, op.a + n0, op.b + n0, op.fused);
    }
  }
  void apply_rows(const std::vector<PostOp>& ops, float* y, int64_t rows, int64_t N) const {
    if (ops.empty()) return;
    par::rows(rows, N * int64_t(ops.size()), [&](int64_t m0, int64_t m1) { apply(ops, y + m0 * N, m1 - m0, N, 0, N); });
  }

  const tiled::Layer& packed_layer(int64_t s, int64_t K) const {
    TORCH_CHECK(plan.packed[size_t(s)], "denseshift::xvector: slot ", s,
                " has neither packed tiles nor a float weight");
    TORCH_CHECK(plan.slot_ints[size_t(2 * s + 1)] == K, "denseshift::xvector: linear slot ", s, " has in_features=",
                plan.slot_ints[size_t(2 * s + 1)], " but its input has ", K, " features");
    return plan.layers[size_t(s)];
  }

  // Run a prepared tiled linear; ops on each block of output columns.
  void run_packed(TiledLinear& lin, const std::vector<PostOp>& ops, float* y, int64_t M, int64_t N) const {
    run_tiled({&lin}, [&](size_t, int64_t t0, int64_t t1) {
      apply(ops, y, M, N, TiledLinear::col(t0, N), TiledLinear::col(t1, N));
    });
  }

  // The frame F.pad puts at padded position s (s in [-pad, T + pad)), or -1 for a zero.
  static int64_t source_frame(int64_t s, int64_t T, int64_t mode) {
    if (s >= 0 && s < T) return s;
    if (mode == kPadZeros) return -1;
    if (mode == kPadReplicate) return s < 0 ? 0 : T - 1;
    return s < 0 ? -s : 2 * (T - 1) - s;  // reflect (pad < T)
  }

  // SpeechBrain Conv1d on h (B, T, C) contiguous -> (B, Tout, N), then ops.
  at::Tensor conv(const at::Tensor& h, int64_t r, const std::vector<PostOp>& ops) {
    const int64_t s = field(r, 1), k = field(r, 2), d = field(r, 3), pad = field(r, 4), mode = field(r, 5);
    check_slot(s);
    const int64_t B = h.size(0), T = h.size(1), C = h.size(2);
    TORCH_CHECK(k >= 1 && d >= 1 && pad >= 0, "denseshift::xvector: conv record ", r, " has kernel ", k,
                ", dilation ", d, ", padding ", pad);
    TORCH_CHECK(mode == kPadZeros || mode == kPadReflect || mode == kPadReplicate,
                "denseshift::xvector: unknown padding mode ", mode);
    if (pad > 0 && mode == kPadReflect)
      TORCH_CHECK(pad < T, "denseshift::xvector: reflect padding of ", pad, " frames needs more than ", pad,
                  " frames, got ", T, " (F.pad: padding size should be less than the input dimension)");
    const int64_t Tout = T + 2 * pad - d * (k - 1);
    TORCH_CHECK(Tout >= 1, "denseshift::xvector: ", T, " frames padded by ", pad, " are fewer than the kernel's span ",
                d * (k - 1) + 1);
    const at::Tensor w = slot(s, 4);
    if (w.defined()) return conv_float(h, s, k, d, pad, mode, Tout, field(r, 6) != 0, ops);

    const int64_t K = k * C, M = B * Tout;
    const tiled::Layer& L = packed_layer(s, K);
    const int64_t N = L.N;
    at::Tensor y = at::empty({B, Tout, N}, h.options());
    const bool direct = k == 1 && pad == 0;  // the rows are h's own frames
    at::Tensor xg = direct ? h : at::empty({M, K}, h.options());
    const float* hp = fptr(h);
    float* xp = fptr(xg);
    TiledLinear lin(*plan.info, L, int8(), xp, M, K, fptr(y), N);
    par::rows(M, K, [&](int64_t m0, int64_t m1) {
      if (!direct) {
        for (int64_t m = m0; m < m1; ++m) {
          const int64_t b = m / Tout, t = m % Tout;
          for (int64_t j = 0; j < k; ++j) {
            const int64_t src = source_frame(t + j * d - pad, T, mode);
            float* dst = xp + m * K + j * C;
            if (src < 0)
              std::memset(dst, 0, sizeof(float) * size_t(C));
            else
              std::memcpy(dst, hp + (b * T + src) * C, sizeof(float) * size_t(C));
          }
        }
      }
      lin.prepare_rows(m0, m1);
    });
    lin.finish_prepare();
    run_packed(lin, ops, fptr(y), M, N);
    return y;
  }

  at::Tensor conv_float(const at::Tensor& h, int64_t s, int64_t k, int64_t d, int64_t pad, int64_t mode, int64_t Tout,
                        bool gemm, const std::vector<PostOp>& ops) {
    const int64_t B = h.size(0), T = h.size(1), C = h.size(2), Tp = T + 2 * pad;
    const at::Tensor w = slot(s, 4), bias = slot(s, 3);
    TORCH_CHECK(w.dim() == 3 && w.size(1) == C && w.size(2) == k, "denseshift::xvector: float conv slot ", s,
                " must hold a (out, ", C, ", ", k, ") weight, got ", w.sizes());
    // the padded channel-major input the module's F.pad builds
    at::Tensor xp = at::empty({B, C, Tp}, h.options());
    const float* hp = fptr(h);
    float* xpp = fptr(xp);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t tt = 0; tt < Tp; ++tt) {
        const int64_t src = source_frame(tt - pad, T, mode);
        float* dst = xpp + b * C * Tp + tt;
        if (src < 0) {
          for (int64_t c = 0; c < C; ++c) dst[c * Tp] = 0.0f;
        } else {
          const float* row = hp + (b * T + src) * C;
          for (int64_t c = 0; c < C; ++c) dst[c * Tp] = row[c];
        }
      }
    const int64_t N = w.size(0);
    at::Tensor out;
    if (gemm && B == 1 && d == 1 && k > 1 && C * Tp <= 20480) {
      // torch's slow_conv2d for one sequence: output = bias, then gemm(im2col rows (c, tap))
      at::Tensor cols = at::empty({C * k, Tout}, h.options());
      float* cp = fptr(cols);
      for (int64_t c = 0; c < C; ++c)
        for (int64_t j = 0; j < k; ++j)
          std::memcpy(cp + (c * k + j) * Tout, xpp + c * Tp + j, sizeof(float) * size_t(Tout));
      const at::Tensor w2 = w.reshape({N, C * k});
      out = bias.defined() ? at::addmm(bias.view({N, 1}).expand({N, Tout}), w2, cols) : at::mm(w2, cols);
    } else {
      out = at::conv1d(xp, w, bias.defined() ? c10::optional<at::Tensor>(bias) : c10::nullopt, at::IntArrayRef{1},
                       at::IntArrayRef{0}, at::IntArrayRef{d}, 1);
    }
    out = out.contiguous();
    TORCH_CHECK(out.size(-1) == Tout, "denseshift::xvector: conv gave ", out.size(-1), " frames, expected ", Tout);
    at::Tensor y = at::empty({B, Tout, N}, h.options());
    const float* op = fptr(out);
    float* yp = fptr(y);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t n = 0; n < N; ++n) {
        const float* src = op + (b * N + n) * Tout;
        float* dst = yp + b * Tout * N + n;
        for (int64_t t = 0; t < Tout; ++t) dst[t * N] = src[t];
      }
    apply_rows(ops, yp, B * Tout, N);
    return y;
  }

  // Linear on vectors h (B, K) -> (B, N), then ops.
  at::Tensor linear(const at::Tensor& h, int64_t r, const std::vector<PostOp>& ops) {
    const int64_t s = field(r, 1);
    check_slot(s);
    const int64_t B = h.size(0), K = h.size(1);
    const at::Tensor w = slot(s, 4);
    if (w.defined()) {
      TORCH_CHECK(w.dim() == 2 && w.size(1) == K, "denseshift::xvector: float linear slot ", s, " must hold a (out, ",
                  K, ") weight, got ", w.sizes());
      const at::Tensor b = slot(s, 3);
      // (B, 1, K) as the module sees it after the pooling
      at::Tensor y = at::linear(h.view({B, 1, K}), w, b.defined() ? c10::optional<at::Tensor>(b) : c10::nullopt)
                         .reshape({B, -1})
                         .contiguous();
      apply_rows(ops, fptr(y), B, y.size(1));
      return y;
    }
    const tiled::Layer& L = packed_layer(s, K);
    at::Tensor y = at::empty({B, L.N}, h.options());
    TiledLinear lin(*plan.info, L, int8(), fptr(h), B, K, fptr(y), L.N);
    lin.prepare();
    run_packed(lin, ops, fptr(y), B, L.N);
    return y;
  }

  // StatisticsPooling: h (B, T, C) -> (B, 2C) = [mean + noise, std + eps].
  at::Tensor pool(const at::Tensor& h, int64_t r, const c10::optional<at::Tensor>& noise) {
    const int64_t B = h.size(0), T = h.size(1), C = h.size(2);
    const float eps = float(fl(field(r, 1)));
    const int64_t lanes = field(r, 2);
    TORCH_CHECK(lanes >= 0 && lanes <= xv::kMaxLanes, "denseshift::xvector: pooling lanes must be 0..",
                xv::kMaxLanes, ", got ", lanes);
    at::Tensor out = at::empty({B, 2 * C}, h.options());
    float* o = fptr(out);
    const float* hp = fptr(h);
    if (lanes == 0) {  // at::mean over time of channel-major frames, as the module computes it
      const at::Tensor mean = at::mean(h.transpose(1, 2).contiguous().transpose(1, 2), {1}).contiguous();
      for (int64_t b = 0; b < B; ++b) std::memcpy(o + b * 2 * C, fptr(mean) + b * C, sizeof(float) * size_t(C));
    }
    at::Tensor nz;
    if (noise.has_value()) {
      TORCH_CHECK(noise->numel() == B * C, "denseshift::xvector: mean_noise must have (batch, channels) = (", B, ", ",
                  C, ") entries, got ", noise->sizes());
      nz = as_float(*noise);
    }
    const float* np = nz.defined() ? fptr(nz) : nullptr;
    par::rows(B, T * C * 8, [&](int64_t b0, int64_t b1) {
      std::vector<double> scratch(size_t(2 * C));
      std::vector<float> mscratch(lanes ? size_t(xv::kMeanScratch) : 0);
      for (int64_t b = b0; b < b1; ++b) {
        float* mean = o + b * 2 * C;
        if (lanes) X()->mean_over_time(hp + b * T * C, T, C, C, lanes, mean, mscratch.data());
        if (np)
          for (int64_t c = 0; c < C; ++c) mean[c] = mean[c] + np[b * C + c];
        float* sd = mean + C;
        X()->std_over_time(hp + b * T * C, T, C, C, sd, scratch.data());
        for (int64_t c = 0; c < C; ++c) sd[c] = sd[c] + eps;
      }
    });
    return out;
  }
};

XvectorPlan::XvectorPlan(const std::vector<c10::optional<at::Tensor>>& slots_in, const std::vector<int64_t>& ints,
                         const std::vector<at::Tensor>& params_in, const std::vector<double>& floats_in,
                         const std::vector<int64_t>& program_in, const std::string& path, const std::string& isa)
    : slots(slots_in), slot_ints(ints), floats(floats_in), program(program_in) {
  TORCH_CHECK(slots.size() % kSlotTensors == 0 && slot_ints.size() == 2 * (slots.size() / kSlotTensors),
              "denseshift::xvector: expected ", kSlotTensors, " tensors and 2 ints per linear slot");
  TORCH_CHECK(!program.empty(), "denseshift::xvector: the program is empty");
  TORCH_CHECK(params_in.size() % 4 == 0, "denseshift::xvector: batch norms take 4 tensors each");
  TORCH_CHECK(path == "int8" || path == "exact", "denseshift::xvector: unknown path '", path,
              "' (expected int8 or exact)");
  int8 = path == "int8";
  info = &resolve_path(isa);
  X = &xv::ops_for(info->name);
  params.reserve(params_in.size());
  for (const at::Tensor& t : params_in) params.push_back(as_float(t));
  const int64_t n = int64_t(slots.size()) / kSlotTensors;
  layers.resize(size_t(n));
  packed.assign(size_t(n), false);
  for (int64_t s = 0; s < n; ++s) {
    const auto get = [&](int i) {
      const c10::optional<at::Tensor>& t = slots[size_t(s * kSlotTensors + i)];
      return t.has_value() ? *t : at::Tensor();
    };
    const at::Tensor w = get(4), alpha = get(2), b = get(3);
    if (w.defined() || !alpha.defined()) continue;  // float slot (or an unused one: refused where a record uses it)
    const int64_t K = slot_ints[size_t(2 * s + 1)];
    if (int8)
      TORCH_CHECK(K <= tiled::kMaxInt8K, "denseshift::xvector: the int8 path takes at most ", tiled::kMaxInt8K,
                  " input features, got ", K);
    layers[size_t(s)] = tiled_layer(get(0), get(1), alpha, b.defined() ? c10::optional<at::Tensor>(b) : c10::nullopt,
                                    slot_ints[size_t(2 * s)], K, keep);
    packed[size_t(s)] = true;
  }
}

std::tuple<at::Tensor, at::Tensor> XvectorPlan::run(const at::Tensor& x_in,
                                                    const c10::optional<at::Tensor>& mean_noise) const {
  TORCH_CHECK(x_in.dim() == 3 && x_in.device().is_cpu() && at::isFloatingType(x_in.scalar_type()),
              "denseshift::xvector: x must be a (batch, time, features) floating-point CPU tensor, got ",
              x_in.scalar_type(), " ", x_in.sizes());
  TORCH_CHECK(x_in.size(0) >= 1 && x_in.size(1) >= 1 && x_in.size(2) >= 1,
              "denseshift::xvector: x must have a batch, frames and features, got ", x_in.sizes());
  Net net{*this, {}};

  at::Tensor h = as_float(x_in);
  at::Tensor emit;
  bool frames = true, owned = false;  // owned: h is this call's own tensor
  const int64_t n = net.records();
  for (int64_t r = 0; r < n;) {
    const int64_t kind = net.field(r, 0);
    const int64_t C = frames ? h.size(2) : h.size(1);
    if (kind == kConv || kind == kLinear) {
      TORCH_CHECK(frames == (kind == kConv), "denseshift::xvector: record ", r, ": ",
                  kind == kConv ? "a conv after the pooling" : "a linear before the pooling");
      // the post-ops need the layer's output channels: slot weight rows or alpha entries
      const int64_t s = net.field(r, 1);
      net.check_slot(s);
      const at::Tensor w = net.slot(s, 4), alpha = net.slot(s, 2);
      const int64_t N = w.defined() ? w.size(0) : (alpha.defined() ? alpha.size(0) : 0);
      std::vector<PostOp> ops;
      const int64_t next = net.post_ops(r + 1, N, ops);
      h = kind == kConv ? net.conv(h, r, ops) : net.linear(h, r, ops);
      owned = true;
      r = next;
    } else if (kind == kLeaky || kind == kNorm) {
      std::vector<PostOp> ops;
      const int64_t next = net.post_ops(r, C, ops);
      if (!owned) h = h.clone();  // never the caller's x
      net.apply_rows(ops, fptr(h), h.numel() / C, C);
      owned = true;
      r = next;
    } else if (kind == kPool) {
      TORCH_CHECK(frames, "denseshift::xvector: record ", r, ": a second pooling");
      h = net.pool(h, r, mean_noise);
      frames = false;
      owned = true;
      ++r;
    } else if (kind == kLogSoftmax) {
      TORCH_CHECK(!frames, "denseshift::xvector: record ", r, ": log-softmax before the pooling");
      h = at::log_softmax(h, -1).contiguous();
      owned = true;
      ++r;
    } else if (kind == kEmit) {
      TORCH_CHECK(!frames, "denseshift::xvector: record ", r, ": emit before the pooling");
      emit = h.clone();
      ++r;
    } else {
      TORCH_CHECK(false, "denseshift::xvector: record ", r, " has unknown kind ", kind);
    }
  }
  TORCH_CHECK(!frames, "denseshift::xvector: the program has no pooling");
  if (!emit.defined()) emit = at::empty({h.size(0), 0}, h.options());
  return {emit, h};
}

// The op: a plan made for this one call.
std::tuple<at::Tensor, at::Tensor> xvector_cpu(const at::Tensor& x, const c10::optional<at::Tensor>& mean_noise,
                                               const c10::List<c10::optional<at::Tensor>>& slots,
                                               at::IntArrayRef slot_ints, at::TensorList params,
                                               at::ArrayRef<double> floats, at::IntArrayRef program,
                                               c10::string_view path, c10::string_view isa) {
  std::vector<c10::optional<at::Tensor>> slot_list;
  for (const c10::optional<at::Tensor>& t : slots) slot_list.push_back(t);
  const XvectorPlan plan(slot_list, slot_ints.vec(), params.vec(), floats.vec(), program.vec(), std::string(path),
                         std::string(isa));
  return plan.run(x, mean_noise);
}

}  // namespace

void bind_xvector_plan(pybind11::module_& m) {
  namespace py = pybind11;
  py::class_<XvectorPlan>(m, "XvectorPlan",
                          "The arguments of denseshift::xvector after their checks and preparation, made once: "
                          "run(x, mean_noise) equals the op called with them, bit for bit.")
      .def(py::init<const std::vector<c10::optional<at::Tensor>>&, const std::vector<int64_t>&,
                    const std::vector<at::Tensor>&, const std::vector<double>&, const std::vector<int64_t>&,
                    const std::string&, const std::string&>(),
           py::arg("slots"), py::arg("slot_ints"), py::arg("params"), py::arg("floats"), py::arg("program"),
           py::arg("path") = "int8", py::arg("isa") = "auto")
      .def("run", &XvectorPlan::run, py::arg("x"), py::arg("mean_noise"), py::call_guard<py::gil_scoped_release>());
}

}  // namespace denseshift

TORCH_LIBRARY_IMPL(denseshift, CPU, m) { m.impl("xvector", &denseshift::xvector_cpu); }

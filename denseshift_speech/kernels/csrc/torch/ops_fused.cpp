// Torch glue: a whole SpeechBrain conformer encoder layer (or some of its four blocks)
// in one op call, so a packed conformer reaches the kernels in one framework call per
// layer instead of about 300.  Same math as speechbrain 1.1's ConformerEncoderLayer with
// RelPosMHAXL attention and the non-causal/causal ConvolutionModule (normalize_before):
//   ffn1:      x = x + 0.5 * W2 swish(W1 LN(x))
//   attention: x = x + MHA_relpos(LN(x))          (key padding mask optional)
//   conv:      x = x + W swish(LN(DW(GLU(PW LN(x)))))   (masked where padded)
//   ffn2:      x = LN(x + 0.5 * W2 swish(W1 LN(x)))
// Linear "slots" are packed (tiles, row sums, alpha, bias -> the tiled kernels) or float
// (weight, bias -> at::linear).  Schema: denseshift_speech/kernels/ops.py.  The op makes a
// ConformerLayerPlan of its arguments and runs it; packed models keep the plan
// (kernels._C.ConformerLayerPlan, packed/fused.py) and only run it.
//
// Threads (parallel.h: ATen's intra-op pool, torch.set_num_threads, each stage split only
// when its work pays for a second thread): on the int8 path the linears by blocks of rows
// (each thread normalizes, quantizes and computes its own rows), else by output tiles
// (silu and the residual add on a thread's own output columns right after its tiles);
// the attention and the GLU + depthwise convolution by whole sequences, so a thread stays
// on the rows it just wrote, and by heads or channels (rows every thread wrote: only for
// more work, par::kForeignRows) when there are fewer sequences than threads.  The batch
// dimension holds independent sequences (several streams at once): the linears see all
// their rows in one call, so each weight tile is decoded once for every stream.  No split
// changes the arithmetic of an output element: outputs are bit-identical on any thread
// count (both paths).
#include <torch/extension.h>

#include "cpu_features.h"
#include "parallel.h"
#include "tiled.h"

#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace denseshift {

tiled::Layer tiled_layer(const at::Tensor& tiles, const at::Tensor& row_sums, const at::Tensor& alpha,
                         const c10::optional<at::Tensor>& bias, int64_t bits, int64_t K, std::vector<at::Tensor>& keep);

namespace {

// slot order (see denseshift_speech/packed/fused.py)
enum Slot { kFfn1In, kFfn1Out, kInProj, kPosProj, kOutProj, kPointwise, kConvOut, kFfn2In, kFfn2Out, kSlots };
constexpr int kSlotTensors = 5;  // tiles, row_sums, alpha, bias, weight
// params order: 6 layer norms (weight, bias): ffn1, norm1, conv, conv-after, ffn2, norm2;
// then pos_bias_u, pos_bias_v, depthwise weight (k, C), depthwise bias (C)
enum Norm { kNormFfn1, kNorm1, kNormConv, kNormConvAfter, kNormFfn2, kNorm2, kNorms };

inline float* fptr(const at::Tensor& t) { return t.data_ptr<float>(); }

// One linear slot prepared for a call: packed (a TiledLinear) or float (at::linear, then
// the epilogue over row ranges).
struct SlotLinear {
  std::unique_ptr<TiledLinear> tiled;
  at::Tensor w, b;  // float slot
  at::Tensor x, y;  // input (M, K) contiguous, output (M, N)
  int64_t M = 0, N = 0;
};

// A layer's arguments checked and prepared once: the tiled layouts of its packed slots,
// contiguous float32 parameters, the resolved ISA path.  conformer_layer does this on every
// call before it reads x (about 10 us at d_model 144, most of it turning 61 tensor
// arguments into C++ ones); a packed model keeps one plan per layer and pays it once.
// Tensors are held, not copied, where they already are contiguous float32: in-place
// updates of them reach the next run, as they reach the next conformer_layer call.
class ConformerLayerPlan {
 public:
  ConformerLayerPlan(const std::vector<c10::optional<at::Tensor>>& slots, const std::vector<int64_t>& slot_ints,
                     const std::vector<at::Tensor>& params, const std::vector<double>& eps,
                     const std::vector<int64_t>& conf, const std::string& path, const std::string& isa);
  at::Tensor run(const at::Tensor& x, const c10::optional<at::Tensor>& pos_embs,
                 const c10::optional<at::Tensor>& key_padding_mask, const std::string& stages) const;

  // One linear slot: packed (tiles, in_features) or float (weight, bias).
  struct Slot {
    bool packed = false;
    tiled::Layer tl{};
    int64_t in_features = 0;
    at::Tensor w, b;
  };
  std::vector<Slot> slot;
  std::vector<at::Tensor> params;  // contiguous float32 (layer norms, biases, depthwise taps)
  std::vector<double> eps;
  int64_t d_model = 0, heads = 0, kernel = 0, padding = 0, dilation = 0;
  bool int8 = true;
  const PathInfo* info = nullptr;  // isa resolved once
  std::vector<at::Tensor> keep;    // contiguous copies the tiled layers point into
};

struct Layer {
  const ConformerLayerPlan& plan;

  const PathInfo& P() const { return *plan.info; }
  bool int8() const { return plan.int8; }
  const at::Tensor& param(size_t i) const { return plan.params[i]; }
  tiled::LayerNormFn layer_norm_fn() const { return P().layer_norm ? P().layer_norm : tiled::layer_norm_scalar; }
  tiled::AxpyFn axpy_fn() const { return P().axpy ? P().axpy : tiled::axpy_scalar; }
  tiled::GluFn glu_fn() const { return P().glu ? P().glu : tiled::glu_scalar; }

  // Layer norm n of `rows` rows (row stride C) from src into dst.
  void norm_rows(int n, const float* src, int64_t rows, int64_t C, float* dst) const {
    layer_norm_fn()(src, rows, C, fptr(param(2 * n)), fptr(param(2 * n + 1)), float(plan.eps[size_t(n)]), dst);
  }

  // y = slot s (x), x: a contiguous (M, K) tensor whose rows are written by pre(m0, m1)
  // (run row range by row range just before those rows are quantized).
  SlotLinear make(int s, const at::Tensor& x) const {
    SlotLinear L;
    L.x = x;
    L.M = x.size(0);
    const int64_t K = x.size(1);
    const ConformerLayerPlan::Slot& sl = plan.slot[size_t(s)];
    if (!sl.packed) {
      L.w = sl.w;
      L.b = sl.b;
      L.N = sl.w.size(0);
      return L;
    }
    TORCH_CHECK(sl.in_features == K, "denseshift::conformer_layer: linear slot ", s, " has in_features=",
                sl.in_features, " but its input has ", K, " features");
    L.N = sl.tl.N;
    L.y = at::empty({L.M, L.N}, x.options());
    L.tiled = std::make_unique<TiledLinear>(P(), sl.tl, int8(), fptr(x), L.M, K, fptr(L.y), L.N);
    return L;
  }
  // pre(m0, m1) over the rows (threads by size), then quantize / pad them.
  template <class Pre>
  void prepare(SlotLinear& L, const Pre& pre) const {
    const int64_t K = L.x.size(1);
    par::rows(L.M, K, [&](int64_t m0, int64_t m1) {
      pre(m0, m1);
      if (L.tiled) L.tiled->prepare_rows(m0, m1);
    });
    if (L.tiled) L.tiled->finish_prepare();
  }
  static void no_pre(int64_t, int64_t) {}
  void prepare(SlotLinear& L) const { prepare(L, no_pre); }
  // Run prepared linears together (one split for all), epi(job, m0, m1, n0, n1) on the
  // output block each thread just computed.
  // prepare() then run() of one linear; on the int8 path, when its rows make whole
  // kRowBlock blocks for two parts or more, one fork-join by rows instead (each thread:
  // pre, quantization, every output tile and epi of its own blocks of rows): no join
  // between quantizing and the kernel, no more weight decoding than on one thread, and
  // balanced where a narrow layer has few tiles (144 outputs are 9 tiles, 5 against 4 on
  // two threads).  Same bits either way (TiledLinear::run_rows).
  template <class Pre, class Epi>
  void prepare_run(SlotLinear& L, const Pre& pre, const Epi& epi) const {
    if (L.tiled && int8()) {
      const double ns = double(L.M) * double(L.x.size(1)) / par::kElemPerNs + L.tiled->cost_ns();
      const int64_t blocks = (L.M + par::kRowBlock - 1) / par::kRowBlock;
      const int64_t n = par::parts_for(ns, blocks);
      if (n > 1) {
        par::run_parts(n, [&](int64_t p) {
          const auto b = par::chunk(blocks, p, n);
          const int64_t m0 = b.first * par::kRowBlock, m1 = std::min(L.M, b.second * par::kRowBlock);
          pre(m0, m1);
          L.tiled->prepare_rows(m0, m1);
          L.tiled->run_rows(m0, m1);
          epi(size_t(0), m0, m1, int64_t(0), L.N);
        });
        return;
      }
    }
    prepare(L, pre);
    run({&L}, epi);
  }
  template <class Epi>
  void run(std::vector<SlotLinear*> jobs, const Epi& epi) const {
    std::vector<TiledLinear*> tiled;
    std::vector<size_t> index;
    for (size_t i = 0; i < jobs.size(); ++i) {
      SlotLinear& L = *jobs[i];
      if (L.tiled) {
        tiled.push_back(L.tiled.get());
        index.push_back(i);
        continue;
      }
      L.y = at::linear(L.x, L.w, L.b.defined() ? c10::optional<at::Tensor>(L.b) : c10::nullopt).contiguous();
      par::rows(L.M, L.N, [&](int64_t m0, int64_t m1) { epi(i, m0, m1, int64_t(0), L.N); });
    }
    if (tiled.empty()) return;
    run_tiled(tiled, [&](size_t j, int64_t t0, int64_t t1) {
      const SlotLinear& L = *jobs[index[j]];
      epi(index[j], int64_t(0), L.M, TiledLinear::col(t0, L.N), TiledLinear::col(t1, L.N));
    });
  }
  // x[m, n0:n1] += a * y[m, n0:n1] (x: the residual stream, L.N == d_model columns)
  void residual(float* x, const SlotLinear& L, float a, int64_t m0, int64_t m1, int64_t n0, int64_t n1) const {
    const float* y = fptr(L.y);
    const tiled::AxpyFn axpy = axpy_fn();
    for (int64_t m = m0; m < m1; ++m) axpy(x + m * L.N + n0, y + m * L.N + n0, a, n1 - n0);
  }
  void silu_block(const SlotLinear& L, int64_t m0, int64_t m1, int64_t n0, int64_t n1) const {
    float* y = fptr(L.y);
    for (int64_t m = m0; m < m1; ++m) P().silu(y + m * L.N + n0, n1 - n0);
  }

  // x += a * W2 swish(W1 LN(x)) on x (M, C) in place.
  void ffn(int first, int norm_index, at::Tensor& x, float a) {
    const int64_t M = x.size(0) * x.size(1), C = x.size(2);
    float* xp = fptr(x);
    at::Tensor h = at::empty({M, C}, x.options());
    SlotLinear up = make(first, h);
    prepare_run(
        up, [&](int64_t m0, int64_t m1) { norm_rows(norm_index, xp + m0 * C, m1 - m0, C, fptr(h) + m0 * C); },
        [&](size_t, int64_t m0, int64_t m1, int64_t n0, int64_t n1) { silu_block(up, m0, m1, n0, n1); });
    SlotLinear down = make(first + 1, up.y);
    TORCH_CHECK(down.N == C, "denseshift::conformer_layer: feed-forward output has ", down.N, " features, expected ", C);
    prepare_run(down, no_pre, [&](size_t, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
      residual(xp, down, a, m0, m1, n0, n1);
    });
  }

  // x += MHA_relpos(LN(x)): RelPosMHAXL (speechbrain.nnet.attention), no dropout,
  // mask_pos_future off: the projections on the packed kernels, the attention itself in
  // the kernel core.
  void attention(at::Tensor& x, const at::Tensor& pos_in, const c10::optional<at::Tensor>& kpm) {
    const int64_t B = x.size(0), T = x.size(1), C = x.size(2), H = plan.heads, D = C / H, M = B * T;
    TORCH_CHECK(pos_in.dim() == 3 && pos_in.size(0) == 1 && pos_in.size(1) == 2 * T - 1 && pos_in.size(2) == C,
                "denseshift::conformer_layer: pos_embs must be (1, ", 2 * T - 1, ", ", C, "), got ", pos_in.sizes());
    float* xp = fptr(x);
    const at::Tensor pos = pos_in.to(at::kFloat).contiguous().view({2 * T - 1, C});
    at::Tensor h = at::empty({M, C}, x.options());
    SlotLinear in = make(kInProj, h), pk = make(kPosProj, pos);
    TORCH_CHECK(in.N == 3 * C && pk.N == C, "denseshift::conformer_layer: attention projections of ", in.N, " and ",
                pk.N, " features, expected ", 3 * C, " and ", C);
    const auto none = [](size_t, int64_t, int64_t, int64_t, int64_t) {};
    prepare_run(in, [&](int64_t m0, int64_t m1) { norm_rows(kNorm1, xp + m0 * C, m1 - m0, C, fptr(h) + m0 * C); }, none);
    prepare_run(pk, no_pre, none);

    const at::Tensor &bu = param(2 * kNorms), &bv = param(2 * kNorms + 1);
    at::Tensor mask;
    if (kpm.has_value()) mask = kpm->to(at::kBool).contiguous();
    const uint8_t* kp = mask.defined() ? reinterpret_cast<const uint8_t*>(mask.data_ptr<bool>()) : nullptr;
    at::Tensor o = at::empty({M, C}, x.options());
    const tiled::AttentionFn fn = P().attention;
    const float scale = float(1.0 / std::sqrt(double(C)));
    const float *qkv = fptr(in.y), *pkp = fptr(pk.y), *bup = fptr(bu), *bvp = fptr(bv);
    float* op = fptr(o);
    const int64_t Pn = 2 * T - 1, units = B * H;
    // per (sequence, head): about 4 T^2 D multiply-adds plus the softmax
    const double unit_ns = double(T) * double(4 * T * D + 30 * T + 8 * D) / par::kFlopPerNs;
    // Whole sequences per thread when there are enough of them (the rows the row-split
    // projection above left in that thread's cache); else heads, whose parts read columns
    // of every row (par::kForeignRows).
    const double work = unit_ns * double(units);
    const int64_t by_seq = par::parts_for(work, B);
    const int64_t n = by_seq > 1 ? 1 : par::parts_for(work / par::kForeignRows, units);
    const auto sequences = [&](int64_t b0, int64_t b1) {
      std::vector<float> scratch(size_t(tiled::attention_scratch(T, D)));
      for (int64_t b = b0; b < b1; ++b)
        fn(qkv + b * T * 3 * C, pkp, bup, bvp, kp ? kp + b * T : nullptr, T, H, D, scale, op + b * T * C,
           scratch.data());
    };
    if (by_seq > 1) {
      par::run_parts(by_seq, [&](int64_t p) {
        const auto r = par::chunk(B, p, by_seq);
        sequences(r.first, r.second);
      });
    } else if (n == 1) {
      sequences(0, B);
    } else {
      // one head at a time: its q|k|v, positional keys and output gathered contiguous, so
      // the kernel core runs unchanged with H = 1 (same arithmetic per head)
      par::run_parts(n, [&](int64_t p) {
        const auto r = par::chunk(units, p, n);
        std::vector<float> scratch(size_t(tiled::attention_scratch(T, D)));
        std::vector<float> q(size_t(T * 3 * D)), pkh(size_t(Pn * D)), oh(size_t(T * D));
        int64_t loaded = -1;  // head whose positional keys are in pkh
        for (int64_t u = r.first; u < r.second; ++u) {
          const int64_t b = u / H, hd = u % H;
          for (int64_t t = 0; t < T; ++t)
            std::memcpy(&q[size_t(t * 3 * D)], qkv + (b * T + t) * 3 * C + hd * 3 * D, sizeof(float) * size_t(3 * D));
          if (loaded != hd) {
            for (int64_t i = 0; i < Pn; ++i)
              std::memcpy(&pkh[size_t(i * D)], pkp + i * C + hd * D, sizeof(float) * size_t(D));
            loaded = hd;
          }
          fn(q.data(), pkh.data(), bup + hd * D, bvp + hd * D, kp ? kp + b * T : nullptr, T, 1, D, scale, oh.data(),
             scratch.data());
          for (int64_t t = 0; t < T; ++t)
            std::memcpy(op + (b * T + t) * C + hd * D, &oh[size_t(t * D)], sizeof(float) * size_t(D));
        }
      });
    }
    SlotLinear out = make(kOutProj, o);
    TORCH_CHECK(out.N == C, "denseshift::conformer_layer: attention output has ", out.N, " features, expected ", C);
    prepare_run(out, no_pre, [&](size_t, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
      residual(xp, out, 1.0f, m0, m1, n0, n1);
    });
  }

  // x += ConvolutionModule(x) on (B, T, C): pointwise -> GLU -> depthwise -> LN -> swish
  // -> linear (masked where padded).
  void conv(at::Tensor& x, const c10::optional<at::Tensor>& kpm) {
    const int64_t B = x.size(0), T = x.size(1), C = x.size(2), M = B * T;
    float* xp = fptr(x);
    at::Tensor h = at::empty({M, C}, x.options());
    SlotLinear pw = make(kPointwise, h);
    TORCH_CHECK(pw.N == 2 * C, "denseshift::conformer_layer: pointwise conv has ", pw.N, " outputs, expected ", 2 * C);
    prepare_run(
        pw, [&](int64_t m0, int64_t m1) { norm_rows(kNormConv, xp + m0 * C, m1 - m0, C, fptr(h) + m0 * C); },
        [](size_t, int64_t, int64_t, int64_t, int64_t) {});

    const at::Tensor &w = param(2 * kNorms + 2), &bias = param(2 * kNorms + 3);
    const int64_t K = plan.kernel, padding = plan.padding, dilation = plan.dilation;
    const int64_t Tout = T + 2 * padding - dilation * (K - 1);
    TORCH_CHECK(Tout >= T, "denseshift::conformer_layer: depthwise conv gives ", Tout, " frames for ", T);
    at::Tensor dw = at::empty({B, Tout, C}, x.options());
    const float* y = fptr(pw.y);
    float* dwp = fptr(dw);
    const int64_t cunits = (C + tiled::kLanes - 1) / tiled::kLanes;  // channel blocks of one vector
    const double ns = double(M) * double(C) * 20.0 / par::kFlopPerNs +
                      2.0 * double(B * Tout) * double(C) * double(K) / par::kFlopPerNs;
    // Whole sequences per thread when there are enough of them (their rows are the ones
    // that thread's row-split pointwise conv wrote); else channels, whose parts read
    // columns of every row (par::kForeignRows).
    const int64_t by_seq = par::parts_for(ns, B);
    const int64_t n = by_seq > 1 ? 1 : par::parts_for(ns / par::kForeignRows, cunits);
    if (by_seq > 1 || n == 1) {
      at::Tensor g = at::empty({M, C}, x.options());
      par::run_parts(by_seq, [&](int64_t p) {
        const auto r = par::chunk(B, p, by_seq);
        const int64_t b0 = r.first, nb = r.second - r.first;
        glu_fn()(y + b0 * T * 2 * C, nb * T, C, fptr(g) + b0 * T * C);
        P().depthwise(fptr(g) + b0 * T * C, nb, T, C, fptr(w), fptr(bias), K, padding, dilation, Tout,
                      dwp + b0 * Tout * C);
      });
    } else {
      // channels [c0, c1) gathered contiguous: GLU and depthwise are per channel
      par::run_parts(n, [&](int64_t p) {
        const auto r = par::chunk(cunits, p, n);
        const int64_t c0 = std::min(C, r.first * tiled::kLanes), c1 = std::min(C, r.second * tiled::kLanes);
        const int64_t cs = c1 - c0;
        if (cs <= 0) return;
        std::vector<float> yin(size_t(M * 2 * cs)), g(size_t(M * cs)), ws(size_t(K * cs)), o(size_t(B * Tout * cs));
        for (int64_t m = 0; m < M; ++m) {
          std::memcpy(&yin[size_t(m * 2 * cs)], y + m * 2 * C + c0, sizeof(float) * size_t(cs));
          std::memcpy(&yin[size_t(m * 2 * cs + cs)], y + m * 2 * C + C + c0, sizeof(float) * size_t(cs));
        }
        glu_fn()(yin.data(), M, cs, g.data());
        for (int64_t j = 0; j < K; ++j) std::memcpy(&ws[size_t(j * cs)], fptr(w) + j * C + c0, sizeof(float) * size_t(cs));
        P().depthwise(g.data(), B, T, cs, ws.data(), fptr(bias) + c0, K, padding, dilation, Tout, o.data());
        for (int64_t m = 0; m < B * Tout; ++m)
          std::memcpy(dwp + m * C + c0, &o[size_t(m * cs)], sizeof(float) * size_t(cs));
      });
    }

    // causal: the first T of Tout frames (the right end chomped)
    at::Tensor h2 = at::empty({M, C}, x.options());
    SlotLinear out = make(kConvOut, h2);
    TORCH_CHECK(out.N == C, "denseshift::conformer_layer: convolution output has ", out.N, " features, expected ", C);
    float* h2p = fptr(h2);
    at::Tensor mask;
    if (kpm.has_value()) mask = kpm->to(at::kBool).contiguous();
    const bool* mk = mask.defined() ? mask.data_ptr<bool>() : nullptr;
    const auto pre = [&](int64_t m0, int64_t m1) {
      for (int64_t m = m0; m < m1; ++m) norm_rows(kNormConvAfter, dwp + ((m / T) * Tout + m % T) * C, 1, C, h2p + m * C);
      P().silu(h2p + m0 * C, (m1 - m0) * C);
    };
    prepare_run(out, pre, [&](size_t, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
      if (mk) {
        float* yo = fptr(out.y);
        for (int64_t m = m0; m < m1; ++m)
          if (mk[m]) std::fill(yo + m * C + n0, yo + m * C + n1, 0.0f);
      }
      residual(xp, out, 1.0f, m0, m1, n0, n1);
    });
  }
};

ConformerLayerPlan::ConformerLayerPlan(const std::vector<c10::optional<at::Tensor>>& slots,
                                       const std::vector<int64_t>& slot_ints, const std::vector<at::Tensor>& params_in,
                                       const std::vector<double>& eps_in, const std::vector<int64_t>& conf,
                                       const std::string& path, const std::string& isa)
    : eps(eps_in) {
  TORCH_CHECK(slots.size() == size_t(kSlots * kSlotTensors) && slot_ints.size() == size_t(2 * kSlots),
              "denseshift::conformer_layer: expected ", kSlots, " linear slots");
  TORCH_CHECK(params_in.size() == size_t(2 * kNorms + 4) && eps.size() == size_t(kNorms) && conf.size() == 4,
              "denseshift::conformer_layer: malformed layer parameters");
  TORCH_CHECK(path == "int8" || path == "exact", "denseshift::conformer_layer: unknown path '", path,
              "' (expected int8 or exact)");
  int8 = path == "int8";
  info = &resolve_path(isa);
  heads = conf[0];
  kernel = conf[1];
  padding = conf[2];
  dilation = conf[3];
  for (const at::Tensor& t : params_in) params.push_back(t.to(at::kFloat).contiguous());
  const int64_t C = d_model = params[0].numel();
  TORCH_CHECK(heads >= 1 && C % heads == 0, "denseshift::conformer_layer: d_model ", C, " is not divisible by ",
              heads, " heads");
  for (int n = 0; n < kNorms; ++n)
    TORCH_CHECK(params[2 * n].numel() == C && params[2 * n + 1].numel() == C,
                "denseshift::conformer_layer: layer norm ", n, " has ", params[2 * n].numel(), " weights for d_model ", C);
  TORCH_CHECK(params[2 * kNorms].numel() == C && params[2 * kNorms + 1].numel() == C,
              "denseshift::conformer_layer: pos_bias_u / pos_bias_v must have d_model = ", C, " entries");
  TORCH_CHECK(params[2 * kNorms + 2].numel() == kernel * C && params[2 * kNorms + 3].numel() == C,
              "denseshift::conformer_layer: depthwise weight must be (", kernel, ", ", C, ") and its bias (", C, ")");
  const auto get = [&](int s, int i) {
    const c10::optional<at::Tensor>& t = slots[size_t(s * kSlotTensors + i)];
    return t.has_value() ? *t : at::Tensor();
  };
  for (int s = 0; s < kSlots; ++s) {
    Slot sl;
    sl.in_features = slot_ints[size_t(2 * s + 1)];
    const at::Tensor w = get(s, 4), b = get(s, 3), alpha = get(s, 2);
    if (w.defined()) {
      sl.w = w;
      sl.b = b;
    } else {
      TORCH_CHECK(alpha.defined(), "denseshift::conformer_layer: linear slot ", s,
                  " has neither packed tiles (tiles, row_sums, alpha) nor a float weight");
      if (int8)
        TORCH_CHECK(sl.in_features <= tiled::kMaxInt8K, "denseshift::conformer_layer: the int8 path takes at most ",
                    tiled::kMaxInt8K, " input features, got ", sl.in_features);
      sl.packed = true;
      sl.tl = tiled_layer(get(s, 0), get(s, 1), alpha, b.defined() ? c10::optional<at::Tensor>(b) : c10::nullopt,
                          slot_ints[size_t(2 * s)], sl.in_features, keep);
    }
    slot.push_back(sl);
  }
}

at::Tensor ConformerLayerPlan::run(const at::Tensor& x_in, const c10::optional<at::Tensor>& pos_embs,
                                   const c10::optional<at::Tensor>& key_padding_mask, const std::string& stages) const {
  TORCH_CHECK(x_in.dim() == 3 && x_in.scalar_type() == at::kFloat && x_in.device().is_cpu(),
              "denseshift::conformer_layer: x must be a (batch, time, d_model) float32 CPU tensor, got ",
              x_in.scalar_type(), " ", x_in.sizes());
  const int64_t C = d_model;
  TORCH_CHECK(x_in.size(2) == C, "denseshift::conformer_layer: x has ", x_in.size(2),
              " features but the layer's parameters are for d_model ", C);
  if (key_padding_mask.has_value())
    TORCH_CHECK(key_padding_mask->numel() == x_in.size(0) * x_in.size(1),
                "denseshift::conformer_layer: key_padding_mask must be (batch, time) = (", x_in.size(0), ", ",
                x_in.size(1), "), got ", key_padding_mask->sizes());
  const bool attention = stages.find("attention") != std::string::npos;
  TORCH_CHECK(!attention || pos_embs.has_value(), "denseshift::conformer_layer: RelPosMHAXL needs pos_embs");
  Layer L{*this};
  at::Tensor x = x_in.contiguous().clone();  // updated in place below, never the caller's
  if (x.numel() == 0) return x;
  if (stages.find("ffn1") != std::string::npos) L.ffn(kFfn1In, kNormFfn1, x, 0.5f);
  if (attention) L.attention(x, *pos_embs, key_padding_mask);
  if (stages.find("conv") != std::string::npos) L.conv(x, key_padding_mask);
  if (stages.find("ffn2") != std::string::npos) {
    L.ffn(kFfn2In, kNormFfn2, x, 0.5f);
    const int64_t M = x.size(0) * x.size(1);
    at::Tensor y = at::empty_like(x);
    par::rows(M, C, [&](int64_t m0, int64_t m1) { L.norm_rows(kNorm2, fptr(x) + m0 * C, m1 - m0, C, fptr(y) + m0 * C); });
    x = y;
  }
  return x;
}

// The op: a plan made for this one call.
at::Tensor conformer_layer_cpu(const at::Tensor& x, const c10::optional<at::Tensor>& pos_embs,
                               const c10::optional<at::Tensor>& key_padding_mask,
                               const c10::List<c10::optional<at::Tensor>>& slots, at::IntArrayRef slot_ints,
                               at::TensorList params, at::ArrayRef<double> eps, at::IntArrayRef conf,
                               c10::string_view stages, c10::string_view path, c10::string_view isa) {
  std::vector<c10::optional<at::Tensor>> slot_list;
  for (const c10::optional<at::Tensor>& t : slots) slot_list.push_back(t);
  const ConformerLayerPlan plan(slot_list, slot_ints.vec(), params.vec(), eps.vec(), conf.vec(), std::string(path),
                                std::string(isa));
  return plan.run(x, pos_embs, key_padding_mask, std::string(stages));
}

}  // namespace

void bind_conformer_layer_plan(pybind11::module_& m) {
  namespace py = pybind11;
  py::class_<ConformerLayerPlan>(m, "ConformerLayerPlan",
                                 "The arguments of denseshift::conformer_layer after `stages`-independent checks and "
                                 "preparation, made once: run(x, pos_embs, key_padding_mask, stages) equals the op "
                                 "called with them, bit for bit.")
      .def(py::init<const std::vector<c10::optional<at::Tensor>>&, const std::vector<int64_t>&,
                    const std::vector<at::Tensor>&, const std::vector<double>&, const std::vector<int64_t>&,
                    const std::string&, const std::string&>(),
           py::arg("slots"), py::arg("slot_ints"), py::arg("params"), py::arg("eps"), py::arg("conf"),
           py::arg("path") = "int8", py::arg("isa") = "auto")
      .def("run", &ConformerLayerPlan::run, py::arg("x"), py::arg("pos_embs"), py::arg("key_padding_mask"),
           py::arg("stages"), py::call_guard<py::gil_scoped_release>());
}

}  // namespace denseshift

TORCH_LIBRARY_IMPL(denseshift, CPU, m) { m.impl("conformer_layer", &denseshift::conformer_layer_cpu); }

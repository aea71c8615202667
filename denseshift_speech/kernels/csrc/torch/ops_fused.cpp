// Torch glue: a whole SpeechBrain conformer encoder layer (or some of its four blocks)
// in one op call, so a packed conformer reaches the kernels in one framework call per
// layer instead of about 300.  Same math as speechbrain 1.1's ConformerEncoderLayer with
// RelPosMHAXL attention and the non-causal/causal ConvolutionModule (normalize_before):
//   ffn1:      x = x + 0.5 * W2 swish(W1 LN(x))
//   attention: x = x + MHA_relpos(LN(x))          (key padding mask optional)
//   conv:      x = x + W swish(LN(DW(GLU(PW LN(x)))))   (masked where padded)
//   ffn2:      x = LN(x + 0.5 * W2 swish(W1 LN(x)))
// Linear "slots" are packed (tiles, row sums, alpha, bias -> the tiled kernels) or float
// (weight, bias -> at::linear).  Schema: denseshift_speech/kernels/ops.py.
#include <torch/extension.h>

#include "cpu_features.h"
#include "tiled.h"

#include <cmath>
#include <string>
#include <vector>

namespace denseshift {

const PathInfo& resolve_path(const std::string& req);
at::Tensor linear_tiled_cpu(const at::Tensor& x, const at::Tensor& tiles, const at::Tensor& row_sums,
                            const at::Tensor& alpha, const c10::optional<at::Tensor>& bias, int64_t bits,
                            int64_t in_features, c10::string_view path_s, c10::string_view isa_s);

namespace {

// slot order (see denseshift_speech/packed/fused.py)
enum Slot { kFfn1In, kFfn1Out, kInProj, kPosProj, kOutProj, kPointwise, kConvOut, kFfn2In, kFfn2Out, kSlots };
constexpr int kSlotTensors = 5;  // tiles, row_sums, alpha, bias, weight
// params order: 6 layer norms (weight, bias): ffn1, norm1, conv, conv-after, ffn2, norm2;
// then pos_bias_u, pos_bias_v, depthwise weight (k, C), depthwise bias (C)
enum Norm { kNormFfn1, kNorm1, kNormConv, kNormConvAfter, kNormFfn2, kNorm2, kNorms };

struct Layer {
  const c10::List<c10::optional<at::Tensor>>& slots;
  at::IntArrayRef slot_ints;  // per slot: bits, in_features
  at::TensorList params;
  at::ArrayRef<double> eps;
  int64_t heads, kernel, padding, dilation;
  c10::string_view path, isa;
  const PathInfo* info;  // isa resolved once per call (the post-ops, attention, depthwise)

  at::Tensor slot(int s, int i) const {
    c10::optional<at::Tensor> t = slots.get(size_t(s * kSlotTensors + i));
    return t.has_value() ? *t : at::Tensor();
  }
  at::Tensor linear(int s, const at::Tensor& x) const {
    const at::Tensor w = slot(s, 4), b = slot(s, 3);
    c10::optional<at::Tensor> bias = b.defined() ? c10::optional<at::Tensor>(b) : c10::nullopt;
    if (w.defined()) return at::linear(x, w, bias);
    return linear_tiled_cpu(x, slot(s, 0), slot(s, 1), slot(s, 2), bias, slot_ints[2 * s], slot_ints[2 * s + 1],
                            path, isa);
  }
  // Row-wise post-ops in the kernel core (one framework call each would cost more than
  // the arithmetic at streaming sizes); the scalar ones where a path has none.
  const PathInfo& P() const { return *info; }
  at::Tensor norm(int n, const at::Tensor& x_in) const {
    const at::Tensor x = x_in.contiguous(), w = params[2 * n].contiguous(), b = params[2 * n + 1].contiguous();
    at::Tensor out = at::empty_like(x);
    const int64_t C = x.size(-1);
    (P().layer_norm ? P().layer_norm : tiled::layer_norm_scalar)(x.data_ptr<float>(), x.numel() / C, C,
                                                                w.data_ptr<float>(), b.data_ptr<float>(),
                                                                float(eps[n]), out.data_ptr<float>());
    return out;
  }
  void silu_(at::Tensor& h) const {  // h: a fresh contiguous kernel output
    P().silu(h.data_ptr<float>(), h.numel());
  }
  static void axpy_(const PathInfo& p, at::Tensor& y, const at::Tensor& x_in, float a) {  // y: contiguous
    const at::Tensor x = x_in.contiguous();
    (p.axpy ? p.axpy : tiled::axpy_scalar)(y.data_ptr<float>(), x.data_ptr<float>(), a, y.numel());
  }
  at::Tensor glu(const at::Tensor& h_in) const {
    const at::Tensor h = h_in.contiguous();
    const int64_t C = h.size(-1) / 2;
    std::vector<int64_t> shape(h.sizes().begin(), h.sizes().end());
    shape.back() = C;
    at::Tensor out = at::empty(shape, h.options());
    (P().glu ? P().glu : tiled::glu_scalar)(h.data_ptr<float>(), h.numel() / (2 * C), C, out.data_ptr<float>());
    return out;
  }
  at::Tensor ffn(int first, int norm_index, const at::Tensor& x) const {
    at::Tensor h = linear(first, norm(norm_index, x)).contiguous();
    silu_(h);
    return linear(first + 1, h);
  }

  // RelPosMHAXL (speechbrain.nnet.attention), no dropout, mask_pos_future off: the
  // projections on the packed kernels, the attention itself in the kernel core.
  at::Tensor attention(const at::Tensor& x, const at::Tensor& pos, const c10::optional<at::Tensor>& kpm) const {
    const int64_t B = x.size(0), T = x.size(1), C = x.size(2), H = heads, D = C / H;
    TORCH_CHECK(pos.dim() == 3 && pos.size(0) == 1 && pos.size(1) == 2 * T - 1 && pos.size(2) == C,
                "denseshift::conformer_layer: pos_embs must be (1, ", 2 * T - 1, ", ", C, "), got ", pos.sizes());
    const at::Tensor qkv = linear(kInProj, x).contiguous();
    const at::Tensor pk = linear(kPosProj, pos).contiguous();
    const at::Tensor bu = params[2 * kNorms].contiguous(), bv = params[2 * kNorms + 1].contiguous();
    at::Tensor mask;
    if (kpm.has_value()) mask = kpm->to(at::kBool).contiguous();
    at::Tensor o = at::empty({B, T, C}, x.options());
    std::vector<float> scratch(size_t(tiled::attention_scratch(T, D)));
    const tiled::AttentionFn fn = P().attention;
    const float scale = float(1.0 / std::sqrt(double(C)));
    for (int64_t b = 0; b < B; ++b)
      fn(qkv.data_ptr<float>() + b * T * 3 * C, pk.data_ptr<float>(), bu.data_ptr<float>(), bv.data_ptr<float>(),
         mask.defined() ? reinterpret_cast<const uint8_t*>(mask.data_ptr<bool>()) + b * T : nullptr, T, H, D, scale,
         o.data_ptr<float>() + b * T * C, scratch.data());
    return linear(kOutProj, o);
  }

  // ConvolutionModule on (B, T, C): pointwise -> GLU -> depthwise -> LN -> swish -> linear.
  at::Tensor conv(const at::Tensor& x, const c10::optional<at::Tensor>& kpm) const {
    const int64_t B = x.size(0), T = x.size(1), C = x.size(2);
    const at::Tensor g = glu(linear(kPointwise, norm(kNormConv, x)));
    const at::Tensor w = params[2 * kNorms + 2].contiguous(), bias = params[2 * kNorms + 3].contiguous();
    const int64_t K = kernel;
    const int64_t Tout = T + 2 * padding - dilation * (K - 1);
    at::Tensor out = at::empty({B, Tout, C}, x.options());
    P().depthwise(g.data_ptr<float>(), B, T, C, w.data_ptr<float>(), bias.data_ptr<float>(),
                  K, padding, dilation, Tout, out.data_ptr<float>());
    at::Tensor h = out;
    if (Tout != T) h = h.narrow(1, 0, T);  // causal: chomp the right end
    h = norm(kNormConvAfter, h).contiguous();
    silu_(h);
    h = linear(kConvOut, h);
    if (kpm.has_value()) h.masked_fill_(kpm->unsqueeze(-1), 0.0);
    return h;
  }
};

at::Tensor conformer_layer_cpu(const at::Tensor& x_in, const c10::optional<at::Tensor>& pos_embs,
                               const c10::optional<at::Tensor>& key_padding_mask,
                               const c10::List<c10::optional<at::Tensor>>& slots, at::IntArrayRef slot_ints,
                               at::TensorList params, at::ArrayRef<double> eps, at::IntArrayRef conf,
                               c10::string_view stages_s, c10::string_view path, c10::string_view isa) {
  TORCH_CHECK(x_in.dim() == 3 && x_in.scalar_type() == at::kFloat && x_in.device().is_cpu(),
              "denseshift::conformer_layer: x must be a (batch, time, d_model) float32 CPU tensor, got ",
              x_in.scalar_type(), " ", x_in.sizes());
  TORCH_CHECK(slots.size() == size_t(kSlots * kSlotTensors) && slot_ints.size() == size_t(2 * kSlots),
              "denseshift::conformer_layer: expected ", kSlots, " linear slots");
  TORCH_CHECK(params.size() == size_t(2 * kNorms + 4) && eps.size() == size_t(kNorms) && conf.size() == 4,
              "denseshift::conformer_layer: malformed layer parameters");
  const std::string stages(stages_s);
  Layer L{slots, slot_ints, params, eps, conf[0], conf[1], conf[2], conf[3], path, isa,
          &resolve_path(std::string(isa))};
  TORCH_CHECK(L.heads >= 1 && x_in.size(2) % L.heads == 0, "denseshift::conformer_layer: d_model ", x_in.size(2),
              " is not divisible by ", L.heads, " heads");
  at::Tensor x = x_in.contiguous().clone();  // updated in place below, never the caller's
  const PathInfo& P = L.P();
  if (stages.find("ffn1") != std::string::npos) Layer::axpy_(P, x, L.ffn(kFfn1In, kNormFfn1, x), 0.5f);
  if (stages.find("attention") != std::string::npos) {
    TORCH_CHECK(pos_embs.has_value(), "denseshift::conformer_layer: RelPosMHAXL needs pos_embs");
    Layer::axpy_(P, x, L.attention(L.norm(kNorm1, x), *pos_embs, key_padding_mask), 1.0f);
  }
  if (stages.find("conv") != std::string::npos) Layer::axpy_(P, x, L.conv(x, key_padding_mask), 1.0f);
  if (stages.find("ffn2") != std::string::npos) {
    Layer::axpy_(P, x, L.ffn(kFfn2In, kNormFfn2, x), 0.5f);
    x = L.norm(kNorm2, x);
  }
  return x;
}

}  // namespace
}  // namespace denseshift

TORCH_LIBRARY_IMPL(denseshift, CPU, m) { m.impl("conformer_layer", &denseshift::conformer_layer_cpu); }

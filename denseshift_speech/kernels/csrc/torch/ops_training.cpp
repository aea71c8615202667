// Torch glue of the training weight (denseshift::latent_weight[_backward]; schemas in
// denseshift_speech/kernels/ops.py, loops in core/latent_weight.cpp): argument checks,
// outputs, threads over rows (at::parallel_for).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include "latent_weight.h"

namespace denseshift {
namespace {

namespace tr = training;

int64_t checked_levels(const at::Tensor& value, const char* op) {
  // a table of 2**(levels+1) + 1 entries names the levels
  const int64_t size = value.size(-1);
  for (int levels = 1; levels <= tr::kMaxLevels; levels = 2 * levels + 1)
    if (size == tr::table_size(levels)) return levels;
  TORCH_CHECK(false, "denseshift::", op, ": a table of ", size, " entries matches no thermometer width; "
              "expected 2**(levels+1) + 1 for levels 1, 3 or 7 (2-4 bits)");
  return 0;
}

void check_float_cpu(const at::Tensor& t, const char* name, const char* op) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat, "denseshift::", op, ": ", name,
              " must be a float32 CPU tensor, got ", t.scalar_type(), " on ", t.device());
}

int64_t alpha_stride_for(const at::Tensor& alpha, int64_t rows, const char* op) {
  TORCH_CHECK(alpha.dim() == 1 && (alpha.numel() == rows || alpha.numel() == 1), "denseshift::", op,
              ": alpha must have one value per row (", rows, ") or one for the tensor, got shape ",
              alpha.sizes());
  return alpha.numel() == 1 ? 0 : 1;
}

// rows of ~16k values per task: a thread's share stays large, the split stays even
int64_t grain(int64_t cols) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1)); }

std::tuple<at::Tensor, at::Tensor> latent_weight_cpu(const at::Tensor& sign_latent, const at::Tensor& thermo,
                                                     const at::Tensor& alpha, const at::Tensor& value) {
  const char* op = "latent_weight";
  for (auto [t, name] : {std::pair{&sign_latent, "sign_latent"}, {&thermo, "thermo"}, {&alpha, "alpha"},
                         {&value, "value"}})
    check_float_cpu(*t, name, op);
  const int64_t levels = checked_levels(value, op);
  TORCH_CHECK(sign_latent.dim() >= 1 && thermo.dim() == sign_latent.dim() + 1 && thermo.size(0) == levels &&
                  thermo.sizes().slice(1) == sign_latent.sizes(),
              "denseshift::latent_weight: thermometer latents of shape ", thermo.sizes(),
              " do not match a sign latent of shape ", sign_latent.sizes(), " with ", levels, " levels");
  const int64_t n = sign_latent.numel(), rows = sign_latent.size(0), cols = rows ? n / rows : 0;
  const int64_t astride = alpha_stride_for(alpha, rows, op);
  at::Tensor s = sign_latent.contiguous(), t = thermo.contiguous(), a = alpha.contiguous(), v = value.contiguous();
  at::Tensor w = at::empty_like(s);
  at::Tensor index = at::empty(s.sizes(), s.options().dtype(at::kShort));
  at::parallel_for(0, rows, grain(cols), [&](int64_t r0, int64_t r1) {
    tr::latent_weight_rows(s.data_ptr<float>(), t.data_ptr<float>(), a.data_ptr<float>(), astride,
                           v.data_ptr<float>(), int(levels), n, cols, r0, r1, index.data_ptr<int16_t>(),
                           w.data_ptr<float>());
  });
  return {w, index};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> latent_weight_backward_cpu(
    const at::Tensor& grad, const at::Tensor& index, const at::Tensor& alpha, const at::Tensor& grads,
    const at::Tensor& value, bool need_latents, bool need_alpha) {
  const char* op = "latent_weight_backward";
  for (auto [t, name] : {std::pair{&grad, "grad"}, {&alpha, "alpha"}, {&grads, "grads"}, {&value, "value"}})
    check_float_cpu(*t, name, op);
  TORCH_CHECK(index.device().is_cpu() && index.scalar_type() == at::kShort && index.sizes() == grad.sizes(),
              "denseshift::latent_weight_backward: index must be the int16 CPU tensor latent_weight returned "
              "(shape ", grad.sizes(), "), got ", index.scalar_type(), " ", index.sizes());
  const int64_t levels = checked_levels(value, op);
  TORCH_CHECK(grads.dim() == 2 && grads.size(0) == levels + 1 && grads.size(1) == value.size(0),
              "denseshift::latent_weight_backward: grads must be (levels + 1, ", value.size(0), "), got ",
              grads.sizes());
  const int64_t n = grad.numel(), rows = grad.dim() ? grad.size(0) : 1, cols = rows ? n / rows : 0;
  const int64_t astride = alpha_stride_for(alpha, rows, op);
  at::Tensor g = grad.contiguous(), a = alpha.contiguous(), gt = grads.contiguous(), v = value.contiguous();
  at::Tensor g_sign, g_thermo, row_sum;
  std::vector<int64_t> thermo_shape{levels};
  thermo_shape.insert(thermo_shape.end(), grad.sizes().begin(), grad.sizes().end());
  g_sign = need_latents ? at::empty_like(g) : at::empty({0}, g.options());
  g_thermo = need_latents ? at::empty(thermo_shape, g.options()) : at::empty({0}, g.options());
  row_sum = at::zeros({need_alpha ? rows : 0}, g.options().dtype(at::kDouble));
  at::parallel_for(0, rows, grain(cols), [&](int64_t r0, int64_t r1) {
    tr::latent_weight_backward_rows(g.data_ptr<float>(), index.data_ptr<int16_t>(), a.data_ptr<float>(), astride,
                                    gt.data_ptr<float>(), v.data_ptr<float>(), int(levels), n, cols, r0, r1,
                                    need_latents ? g_sign.data_ptr<float>() : nullptr,
                                    need_latents ? g_thermo.data_ptr<float>() : nullptr,
                                    need_alpha ? row_sum.data_ptr<double>() : nullptr);
  });
  // alpha's gradient before the factor alpha ln 2: per row, or summed for one alpha
  at::Tensor g_alpha_sum = need_alpha ? (astride ? row_sum : row_sum.sum(0, true)).to(at::kFloat)
                                      : at::empty({0}, g.options());
  return {g_sign, g_thermo, g_alpha_sum};
}

}  // namespace
}  // namespace denseshift

TORCH_LIBRARY_IMPL(denseshift, CPU, m) {
  m.impl("latent_weight", &denseshift::latent_weight_cpu);
  m.impl("latent_weight_backward", &denseshift::latent_weight_backward_cpu);
}

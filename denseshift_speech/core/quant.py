"""DenseShift math: zero-free power-of-two values, codes, binarizers and initializers.

Pure functions over tensors; nothing here knows about SpeechBrain or modules.

Conventions (the contract every other part relies on):

* A b-bit DenseShift weight is ``w = alpha * s * 2**e`` with ``s in {-1, +1}``,
  ``e in {0, ..., E-1}``, ``E = 2**(b-1)``; ``alpha`` is a full-precision scale
  (per output channel, i.e. per index of dim 0, or per tensor).  There is no zero.
* The b-bit *code* of ``s * 2**e`` is ``(neg << (b-1)) | e`` where ``neg = 1`` for
  ``s = -1``: the sign is the top bit, the exponent the low ``b-1`` bits.  Codes are
  stored as ``torch.uint8``; all ``2**b`` codes are valid values.
* Training keeps, for every weight, one sign latent and ``E-1`` thermometer latents
  (docs/METHOD.md section 2).  The exponent is the length of the run of positive
  thermometer latents ending at the last one:
  ``S_1 = B01(T_1); S_k = (S_{k-1} + 1) * B01(T_k); e = S_{E-1}``.
"""
from __future__ import annotations

import math

import torch

# The code format lives with the kernels (one place); re-exported here with the math.
from ..kernels.codes import (MAX_BITS, MIN_BITS, check_bits, decode,  # noqa: F401
                             num_exponents, value_set)
# the training weight's ops for dtypes the C++ kernel does not take (see _table_ops)
from ..kernels import reference as kernel_reference

# Standard deviation of the low-variance random initialization (docs/METHOD.md section 3).
LOW_VARIANCE_SIGMA = 1e-3


def encode_sign_exponent(neg: torch.Tensor, exponent: torch.Tensor, bits: int) -> torch.Tensor:
    """(neg in {0,1}, exponent in 0..E-1) -> uint8 codes."""
    E = num_exponents(bits)
    exponent = exponent.to(torch.int64)
    if exponent.numel() and (exponent.min() < 0 or exponent.max() >= E):
        raise ValueError(f"exponent out of range 0..{E - 1} for {bits}-bit DenseShift")
    return ((neg.to(torch.int64) << (bits - 1)) | exponent).to(torch.uint8)


def encode(values: torch.Tensor, bits: int) -> torch.Tensor:
    """Exact DenseShift values ``s * 2**e`` -> uint8 codes; anything else is an error."""
    E = num_exponents(bits)
    if not values.is_floating_point():
        raise TypeError(f"encode expects floating values, got {values.dtype}")
    mant, exp = torch.frexp(values.abs())
    exponent = exp.to(torch.int64) - 1  # |v| = 2**exponent iff mantissa == 0.5
    bad = (mant != 0.5) | (exponent < 0) | (exponent >= E) | ~torch.isfinite(values)
    if bad.any():
        first = values[bad].flatten()[0].item()
        raise ValueError(
            f"{first!r} is not a {bits}-bit DenseShift value (expected +-2**e, e in 0..{E - 1})"
        )
    return encode_sign_exponent(values < 0, exponent, bits)


def nearest_codes(w: torch.Tensor, alpha: torch.Tensor, bits: int) -> torch.Tensor:
    """Codes of the DenseShift value nearest (in squared error) to ``w / alpha``.

    ``alpha`` broadcasts against ``w``.  Between 2**e and 2**(e+1) the midpoint
    1.5 * 2**e is the threshold; magnitudes are clamped into [1, 2**(E-1)].
    """
    E = num_exponents(bits)
    r = (w / alpha).abs()
    # floor(log2(r / 1.5)) + 1 is the exponent whose interval (0.75*2^e, 1.5*2^e] holds r.
    e = torch.floor(torch.log2(r.clamp_min(1e-30) / 1.5)) + 1
    e = e.clamp(0, E - 1)
    return encode_sign_exponent(w < 0, e, bits)


# ---------------------------------------------------------------------------
# Straight-through binarizers and the sign-scale decomposition
# ---------------------------------------------------------------------------

def binary01(t: torch.Tensor) -> torch.Tensor:
    """1 where t > 0 else 0; straight-through (identity) gradient."""
    hard = (t > 0).to(t.dtype)
    return t + (hard - t).detach()


def binary_pm1(t: torch.Tensor) -> torch.Tensor:
    """+1 where t >= 0 else -1; straight-through (identity) gradient."""
    hard = torch.where(t >= 0, torch.ones_like(t), -torch.ones_like(t))
    return t + (hard - t).detach()


def thermometer_exponent(thermo: torch.Tensor) -> torch.Tensor:
    """Exponent from stacked thermometer latents ``thermo[k-1] = T_k`` (shape (E-1, *W)).

    Forward: integer-valued float tensor in 0..E-1.  Backward: straight-through
    through every binarizer, following the chain rule of the recurrence.
    """
    s = binary01(thermo[0])
    for k in range(1, thermo.shape[0]):
        s = (s + 1) * binary01(thermo[k])
    return s


def sign_scale_weight(sign_latent: torch.Tensor, thermo: torch.Tensor) -> torch.Tensor:
    """Unscaled DenseShift weight ``s * 2**e`` with the sqrt(e+1) backward surrogate.

    Forward value is exactly ``s * 2**e``; gradients flow as if ``w = s * sqrt(e+1)``.
    """
    s = binary_pm1(sign_latent)
    e = thermometer_exponent(thermo)
    backward_value = s * torch.sqrt(e + 1)
    forward_value = s * torch.exp2(e)
    return backward_value + (forward_value - backward_value).detach()


def effective_alpha(log_alpha: torch.Tensor, pow2_scale: bool = False) -> torch.Tensor:
    """The scale the forward uses: ``2**log_alpha``, with the exponent rounded
    (straight-through) when ``pow2_scale`` keeps the layer multiplication-free."""
    if pow2_scale:
        log_alpha = log_alpha + (torch.round(log_alpha) - log_alpha).detach()
    return torch.exp2(log_alpha)


def reference_weight(sign_latent: torch.Tensor, thermo: torch.Tensor, log_alpha: torch.Tensor,
                     pow2_scale: bool = False) -> torch.Tensor:
    """``alpha * s * 2**e`` built from the functions above, op by op, through autograd.

    The reference the fused :func:`fused_weight` is tested against (same forward values,
    same gradients); it loops over the thermometer levels and keeps every intermediate
    for the backward.  ``alpha`` is per index of dim 0 (``log_alpha`` of shape
    ``(out,)``) or one per tensor (shape ``(1,)``).
    """
    w = sign_scale_weight(sign_latent, thermo)
    alpha = effective_alpha(log_alpha, pow2_scale)
    return alpha.reshape(-1, *([1] * (w.dim() - 1))) * w


# ---------------------------------------------------------------------------
# The fused training weight: one autograd node for alpha * s * 2**e
# ---------------------------------------------------------------------------

#: Widest thermometer (E-1 levels) decoded through one lookup table indexed by the
#: level pattern: E-1 <= 7 (2-4 bits, the widths the project targets).
_LUT_MAX_LEVELS = 7
_LN2 = math.log(2.0)
_TABLES: dict = {}


def _pattern_tables(levels: int, dtype, device):
    """Tables for 2-4 bits, indexed by ``i = positive * 2**levels + pattern`` (pattern bit
    k-1 is ``B01(T_k)``).

    Returns ``(value, grads)``: ``value[i] = s 2**e``; ``grads[0, i] = sqrt(e+1)``
    and ``grads[k, i] = s (S_{k-1} + 1) prod_{j>k} B01(T_j) / 2``, which divided by
    ``sqrt(e+1)`` is d(s sqrt(e+1))/dT_k through the straight-through recurrence.  One
    more entry, ``i = 2**(levels+1)``, is NaN: where a latent is NaN (so is the reference's
    weight).
    """
    key = (levels, dtype, device)
    tables = _TABLES.get(key)
    if tables is None:
        n = 2 ** (levels + 1)
        value = torch.full((n + 1,), math.nan, dtype=torch.float64)
        grads = torch.full((levels + 1, n + 1), math.nan, dtype=torch.float64)
        exponent = torch.full((n + 1,), math.nan, dtype=torch.float64)
        for i in range(n):
            s = 1.0 if i >> levels else -1.0
            b = [(i >> k) & 1 for k in range(levels)]
            run = [0] * (levels + 1)                     # run[k] = S_k, S_0 = 0
            for k in range(1, levels + 1):
                run[k] = (run[k - 1] + 1) * b[k - 1]
            e = exponent[i] = run[levels]
            value[i] = s * 2.0 ** e
            for k in range(1, levels + 1):
                through = all(b[j - 1] for j in range(k + 1, levels + 1))
                grads[k, i] = s * (run[k - 1] + 1) / 2 if through else 0.0
        value, grads = value.to(dtype), grads.to(dtype)
        # sqrt(e + 1) exactly as the reference gets it: torch.sqrt in the latents' dtype
        # (torch's float64 sqrt is not always the correctly rounded one)
        grads[0] = _sqrt1(exponent, dtype)
        tables = tuple(t.to(device=device) for t in (value, grads))
        _TABLES[key] = tables
    return tables


def _sqrt1(exponent: torch.Tensor, dtype) -> torch.Tensor:
    """``torch.sqrt(e + 1)`` in ``dtype``, computed as the reference computes it."""
    return torch.sqrt(exponent.to(dtype) + 1)


def _exponent_tables(E: int, dtype, device):
    """Tables for 5-8 bits, indexed by ``i = positive * E + e``: ``value = s 2**e``,
    ``sqrt1 = sqrt(e+1)``, ``ssqrt1 = s sqrt(e+1)`` (and NaN at ``i = 2E``, a NaN latent);
    and the level numbers ``k = 1..E-1`` (int16, (E-1, 1))."""
    key = ("exponent", E, dtype, device)
    tables = _TABLES.get(key)
    if tables is None:
        e = torch.arange(E, dtype=torch.float64).repeat(2)
        s = torch.tensor([-1.0, 1.0], dtype=dtype).repeat_interleave(E)
        sqrt1 = _sqrt1(e, dtype)
        nan = torch.full((1,), math.nan, dtype=dtype)
        tables = tuple(torch.cat([t.to(dtype), nan]).to(device=device)
                       for t in ((s.double() * torch.exp2(e)), sqrt1, s * sqrt1))
        tables += (torch.arange(1, E, dtype=torch.int16, device=device).reshape(-1, 1),)
        _TABLES[key] = tables
    return tables


def _table_ops(dtype):
    """The 2-4-bit ops: ``torch.ops.denseshift.latent_weight[_backward]`` (the C++ kernel on
    CPU, its reference elsewhere) for float32, the reference itself for other dtypes."""
    if dtype == torch.float32:
        return torch.ops.denseshift.latent_weight, torch.ops.denseshift.latent_weight_backward
    return kernel_reference.latent_weight, kernel_reference.latent_weight_backward


class _FusedWeight(torch.autograd.Function):
    """``alpha * s * 2**e`` in one node; see :func:`fused_weight`."""

    @staticmethod
    def forward(ctx, sign_latent, thermo, log_alpha, pow2_scale):
        levels = thermo.shape[0]
        if levels < 1 or (levels + 1) & levels or thermo.shape[1:] != sign_latent.shape:
            raise ValueError(f"thermometer latents of shape {tuple(thermo.shape)} do not match "
                             f"a sign latent of shape {tuple(sign_latent.shape)} (expected "
                             f"(2**(bits-1) - 1, *sign.shape))")
        shape, n = sign_latent.shape, sign_latent.numel()
        alpha = effective_alpha(log_alpha, pow2_scale).reshape(-1)
        ctx.levels = levels
        if levels <= _LUT_MAX_LEVELS:
            value, _ = _pattern_tables(levels, sign_latent.dtype, sign_latent.device)
            weight_op, _ = _table_ops(sign_latent.dtype)
            w, index = weight_op(sign_latent.contiguous(), thermo.contiguous(), alpha, value)
            ctx.save_for_backward(index, alpha)
            return w
        # 5-8 bits: B01(t) = 1 iff t > 0, Bpm(s) = +1 iff s >= 0
        alpha_b = alpha.reshape(-1, *([1] * (len(shape) - 1)))
        positive = (sign_latent >= 0).reshape(n).view(torch.uint8)
        on = (thermo > 0).reshape(levels, n).view(torch.uint8)
        value, _, _, _ = _exponent_tables(levels + 1, sign_latent.dtype, sign_latent.device)
        # c_k = number of zeros among B01(T_k..T_{E-1}): e = #(c == 0); the run that
        # ends just before the last zero has #(c == 1) - 1 levels.
        zeros = (1 - on).flip(0).cumsum(0, dtype=torch.uint8).flip(0)
        e = (zeros == 0).sum(0, dtype=torch.uint8)
        run1 = (zeros == 1).sum(0, dtype=torch.uint8)       # S_{r-1} + 1
        index = (e + positive * (levels + 1)).to(torch.int32)
        nan = sign_latent.isnan().reshape(n) | thermo.isnan().reshape(levels, n).any(0)
        index.masked_fill_(nan, 2 * (levels + 1))  # the tables' NaN entry
        w = alpha_b * value.index_select(0, index).reshape(shape)
        ctx.save_for_backward(index, alpha, run1)
        return w

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        index, alpha, *run1 = ctx.saved_tensors
        levels = ctx.levels
        grad = grad.contiguous()  # (a linear layer's weight gradient arrives transposed)
        need_sign, need_thermo, need_alpha, _ = ctx.needs_input_grad
        # Each gradient is rounded as the reference's autograd chain rounds it: one
        # product for the sign; (g alpha s) / (2 sqrt(e+1)) times S_{k-1} + 1 for T_k.
        if levels <= _LUT_MAX_LEVELS:
            value, grads = _pattern_tables(levels, grad.dtype, grad.device)
            _, backward_op = _table_ops(grad.dtype)
            g_sign, g_thermo, row_sum = backward_op(grad, index, alpha, grads, value,
                                                    need_sign or need_thermo, need_alpha)
            g_sign, g_thermo = (g_sign if need_sign else None), (g_thermo if need_thermo else None)
        else:
            g_sign, g_thermo, row_sum = _wide_backward(grad, index, alpha, run1[0], levels,
                                                       need_sign, need_thermo, need_alpha)
        # dL/dlog2(alpha) = sum(dL/dw s 2**e) alpha ln 2, straight through the rounding
        g_alpha = row_sum * alpha * _LN2 if need_alpha else None
        return g_sign, g_thermo, g_alpha, None


def _wide_backward(grad, index, alpha, run1, levels, need_sign, need_thermo, need_alpha):
    """5-8 bits: (dL/dsign, dL/dthermo, sum_row dL/dw s 2**e), None where not needed."""
    shape, n = grad.shape, grad.numel()
    value, sqrt1, ssqrt1, k = _exponent_tables(levels + 1, grad.dtype, grad.device)
    alpha_b = alpha.reshape(-1, *([1] * (len(shape) - 1)))
    ga = (grad * alpha_b).reshape(n)                    # dL/d(s 2**e)
    g_sign = (ga * sqrt1.index_select(0, index)).reshape(shape) if need_sign else None
    g_thermo = row_sum = None
    if need_thermo:
        # d e / d T_k = (S_{k-1} + 1) prod_{j>k} B01(T_j): k - r above the last zero
        # r = E-1-e, S_{r-1} + 1 at it, 0 below it.
        r = levels - (index % (levels + 1)).to(torch.int16)
        run = torch.where(k > r, k - r, torch.where(k == r, run1, 0))
        g_thermo = (run * (ga / ssqrt1.index_select(0, index)).mul_(0.5)).reshape(levels, *shape)
    if need_alpha:
        rows = alpha.shape[0]
        row_sum = (grad * value.index_select(0, index).reshape(shape)).reshape(rows, -1).sum(1)
    return g_sign, g_thermo, row_sum


def fused_weight(sign_latent: torch.Tensor, thermo: torch.Tensor, log_alpha: torch.Tensor,
                 pow2_scale: bool = False) -> torch.Tensor:
    """The effective training weight ``alpha * s * 2**e`` and its surrogate gradients in one
    autograd node: the same forward values and latent gradients as :func:`reference_weight`
    (alpha's gradient, a sum, to float rounding).

    Forward: ``B01`` of every thermometer level at once; the sign and the level pattern
    (2-4 bits: the ``denseshift::latent_weight`` op, one pass in C++ on CPU) or the run
    length (5-8 bits: a reversed cumulative sum) index a table of ``s 2**e``.  Saved for
    backward: that index (2-4 bits int16; 5-8 bits int32 and one more byte) and alpha --
    none of the reference's per-level intermediates.  Backward, straight-through
    binarizers and the ``sqrt(e+1)`` surrogate, from tables indexed the same way:

    * ``dL/dW_sign = g alpha sqrt(e+1)``
    * ``dL/dT_k = g alpha s (S_{k-1} + 1) prod_{j>k} B01(T_j) / (2 sqrt(e+1))``
    * ``dL/dlog2 alpha = ln2 sum g alpha s 2**e`` (per row, or over the tensor), straight
      through the rounding when ``pow2_scale``.

    No Python loop over the levels; ``thermo`` is ``(E-1, *sign_latent.shape)``.
    """
    return _FusedWeight.apply(sign_latent, thermo, log_alpha, bool(pow2_scale))


def latent_codes(sign_latent: torch.Tensor, thermo: torch.Tensor, bits: int) -> torch.Tensor:
    """The uint8 codes the latents currently decode to (no autograd)."""
    with torch.no_grad():
        neg = sign_latent < 0
        e = torch.zeros_like(sign_latent, dtype=torch.int64)
        for k in range(thermo.shape[0]):
            e = (e + 1) * (thermo[k] > 0)
        return encode_sign_exponent(neg, e, bits)


# ---------------------------------------------------------------------------
# Initializers
# ---------------------------------------------------------------------------

def exponent_distribution_under_random_latents(bits: int) -> torch.Tensor:
    """P(e = k) when every latent is independently positive with probability 1/2."""
    E = num_exponents(bits)
    p = torch.tensor([2.0 ** -(k + 1) for k in range(E - 1)] + [2.0 ** -(E - 1)])
    return p


def low_variance_latents(shape, bits: int, sigma: float = LOW_VARIANCE_SIGMA, generator=None):
    """(sign_latent, thermo) drawn from N(0, sigma^2) (docs/METHOD.md section 3)."""
    E = num_exponents(bits)
    sign_latent = torch.randn(shape, generator=generator) * sigma
    thermo = torch.randn((E - 1, *shape), generator=generator) * sigma
    return sign_latent, thermo


def low_variance_alpha(w: torch.Tensor, bits: int, per_channel: bool = True) -> torch.Tensor:
    """Scale so the randomly initialized DenseShift weight has ``w``'s RMS.

    With random latents ``E[(s 2^e)^2] = sum_k P(e=k) 4^k``; matching the second
    moment keeps the layer's output variance what the float initializer intended.
    """
    p = exponent_distribution_under_random_latents(bits)
    second_moment = float((p * 4.0 ** torch.arange(len(p))).sum())
    rms = _rms(w, per_channel)
    return (rms / math.sqrt(second_moment)).clamp_min(1e-12)


def fit_alpha(w: torch.Tensor, bits: int, per_channel: bool = True, grid: int = 96,
              refinements: int = 3) -> torch.Tensor:
    """Scale minimizing ``||w - alpha * q(w / alpha)||^2`` (per channel or per tensor).

    A grid search over alpha in log space (from max|w| mapping to the largest
    value down to the RMS mapping to the smallest), then a few Lloyd steps
    (codes fixed -> least-squares alpha -> codes again).
    """
    w = w.detach().to(torch.float64)
    rows = w.reshape(w.shape[0], -1) if per_channel else w.reshape(1, -1)
    E = num_exponents(bits)
    top = rows.abs().amax(dim=1).clamp_min(1e-30)
    # Candidates: alpha = top / 2**(E-1) * 2**u, u from -2 (clip the largest weights)
    # to E+1 (every weight maps to +-1).
    us = torch.linspace(-2.0, E + 1.0, grid, dtype=torch.float64)
    cands = top[:, None] / 2.0 ** (E - 1) * 2.0 ** us[None, :]  # (rows, grid)
    best_err = torch.full_like(top, float("inf"))
    best = cands[:, 0].clone()
    for j in range(grid):
        a = cands[:, j : j + 1]
        err = _quant_error(rows, a, bits)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best = torch.where(better, a[:, 0], best)
    alpha = best[:, None]
    for _ in range(refinements):
        q = decode(nearest_codes(rows, alpha, bits), bits, torch.float64)
        new = ((rows * q).sum(1, keepdim=True) / (q * q).sum(1, keepdim=True)).clamp_min(1e-30)
        keep = _quant_error(rows, new, bits) < _quant_error(rows, alpha, bits)
        alpha = torch.where(keep[:, None], new, alpha)
    return alpha[:, 0].to(torch.float32)


def latents_for_codes(codes: torch.Tensor, bits: int, margin: float):
    """Latents that decode to ``codes``, each ``margin`` away from its threshold."""
    if margin <= 0:
        raise ValueError(f"init margin must be > 0, got {margin}")
    E = num_exponents(bits)
    c = codes.to(torch.int64)
    e = c & (E - 1)
    neg = (c >> (bits - 1)) & 1
    sign_latent = torch.where(neg.bool(), -margin, margin).to(torch.float32)
    # e = run of positive latents ending at T_{E-1}: T_k > 0 iff k > E-1-e.
    k = torch.arange(1, E, dtype=torch.int64).view(-1, *([1] * codes.dim()))
    thermo = torch.where(k > (E - 1 - e).unsqueeze(0), margin, -margin).to(torch.float32)
    return sign_latent, thermo


def relative_error(w: torch.Tensor, w_hat: torch.Tensor) -> float:
    """||w - w_hat|| / ||w||."""
    w = w.detach().double()
    return float((w - w_hat.detach().double()).norm() / w.norm().clamp_min(1e-30))


def naive_pow2_rounding(w: torch.Tensor, bits: int) -> torch.Tensor:
    """Baseline: per-tensor scale = max|w| / 2**(E-1), then nearest value (log domain)."""
    E = num_exponents(bits)
    alpha = w.abs().max().clamp_min(1e-30) / 2.0 ** (E - 1)
    r = (w / alpha).abs().clamp_min(1e-30)
    e = torch.round(torch.log2(r)).clamp(0, E - 1)
    return alpha * torch.where(w < 0, -1.0, 1.0) * torch.exp2(e)


def _rms(w: torch.Tensor, per_channel: bool) -> torch.Tensor:
    w = w.detach().float()
    if per_channel:
        return w.reshape(w.shape[0], -1).pow(2).mean(1).sqrt()
    return w.pow(2).mean().sqrt().reshape(1)


def _quant_error(rows: torch.Tensor, alpha: torch.Tensor, bits: int) -> torch.Tensor:
    q = decode(nearest_codes(rows, alpha, bits), bits, rows.dtype)
    return (rows - alpha * q).pow(2).sum(1)

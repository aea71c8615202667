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

"""DenseShift training layers.

One mechanism quantizes every kind of weight: :class:`DenseShiftWeight`, a
``torch.nn.utils.parametrize`` parametrization.  Registered on a parameter
(``Linear.weight``, ``Conv1d.weight`` including depthwise/grouped, ``Conv2d.weight``,
``MultiheadAttention.in_proj_weight``, SpeechBrain ``RelPosMHAXL.in_proj_weight``,
LSTM/GRU ``weight_ih_l*``/``weight_hh_l*``), it replaces the float tensor by three
trainable tensors -- the sign latent, the stacked thermometer latents and the scale
alpha -- while ``module.<name>`` keeps returning the effective weight
``alpha * s * 2**e`` that the module's own forward uses.  Code that reads
``module.weight`` therefore keeps working, and no module class is rewritten.

State-dict keys become ``<module>.parametrizations.<name>.original0`` (sign latent),
``original1`` (thermometer latents, shape ``(E-1, *weight.shape)``) and
``original2`` (log2 of the scale alpha, shape ``(out_channels,)`` or ``(1,)``).

The scale is trained in the log domain: an Adam step then changes alpha by a fixed
*fraction* (lr ~ 1e-3 -> 0.1 %), whatever its magnitude; trained directly, a scale of
~1e-3 moved by ~1e-3 per step swings by 100 % (docs/METHOD.md, "The scale alpha, trained
as log2 alpha", has what was measured).

The effective weight and its surrogate gradients come from one autograd node
(``quant.fused_weight``: no per-level Python loop; what it keeps for the backward is a
4-byte table index per weight besides the weight itself).  ``impl="reference"`` (or
:func:`set_impl_`) computes the same values and gradients op by op
(``quant.reference_weight``), for tests and benchmarks; the state dict is the same
either way.

In eval mode with gradients off, the effective weight is computed once and cached
until a latent changes (optimizer step or ``load_state_dict``).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from . import quant

SCALE_TYPES = ("channel", "tensor")
INIT_MODES = ("low_variance", "from_float")
#: how the effective weight is computed: one fused autograd node, or the op-by-op reference
IMPLS = ("fused", "reference")


class DenseShiftWeight(nn.Module):
    """Parametrization: (sign latent, thermometer latents, log2 alpha) -> DenseShift weight."""

    impl = "fused"  # class defaults: also what instances pickled before these existed use
    init_scale_gain = 1.0

    def __init__(self, bits: int = 3, scale: str = "channel", pow2_scale: bool = False,
                 init: str = "low_variance", sigma: float = quant.LOW_VARIANCE_SIGMA,
                 init_margin: float = 5e-3, impl: str = "fused", init_scale_gain: float = 1.0):
        super().__init__()
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        self.impl = impl
        self.bits = quant.check_bits(bits)
        if scale not in SCALE_TYPES:
            raise ValueError(f"scale must be one of {SCALE_TYPES}, got {scale!r}")
        if init not in INIT_MODES:
            raise ValueError(f"init must be one of {INIT_MODES}, got {init!r}")
        self.scale = scale
        self.pow2_scale = bool(pow2_scale)
        self.init = init
        self.sigma = float(sigma)
        self.init_margin = float(init_margin)
        if not init_scale_gain > 0:
            raise ValueError(f"init_scale_gain must be > 0, got {init_scale_gain!r}")
        self.init_scale_gain = float(init_scale_gain)
        self._cache_key = None
        self._cache = None

    @property
    def per_channel(self) -> bool:
        return self.scale == "channel"

    def extra_repr(self) -> str:
        return (f"bits={self.bits}, scale={self.scale}, pow2_scale={self.pow2_scale}, "
                f"init={self.init}")

    # -- parametrize protocol ------------------------------------------------
    def right_inverse(self, weight: torch.Tensor):
        """Float weight -> latents (used at registration and on ``module.weight = w``)."""
        if not weight.is_floating_point():
            raise TypeError(f"DenseShift needs a floating-point weight, got {weight.dtype}")
        w = weight.detach().float().cpu()
        if w.dim() < 2:
            raise ValueError(f"DenseShift quantizes matrices/kernels, got shape {tuple(w.shape)}")
        if self.init == "from_float":
            alpha = quant.fit_alpha(w, self.bits, self.per_channel)
            codes = quant.nearest_codes(w, _expand(alpha, w.dim()), self.bits)
            sign_latent, thermo = quant.latents_for_codes(codes, self.bits, self.init_margin)
        else:
            alpha = quant.low_variance_alpha(w, self.bits, self.per_channel) * self.init_scale_gain
            sign_latent, thermo = quant.low_variance_latents(w.shape, self.bits, self.sigma)
        log_alpha = torch.log2(alpha)
        if self.pow2_scale:
            log_alpha = torch.round(log_alpha)
        dev = weight.device
        return sign_latent.to(dev), thermo.to(dev), log_alpha.to(dev)

    def forward(self, sign_latent, thermo, log_alpha):
        if self.training or torch.is_grad_enabled():
            return self._weight(sign_latent, thermo, log_alpha)
        key = tuple((t.data_ptr(), t._version, t.device) for t in (sign_latent, thermo, log_alpha))
        if key != self._cache_key:
            self._cache = self._weight(sign_latent, thermo, log_alpha)
            self._cache_key = key
        return self._cache

    def train(self, mode: bool = True):
        self._cache_key, self._cache = None, None
        return super().train(mode)

    # -- math ----------------------------------------------------------------
    def _weight(self, sign_latent, thermo, log_alpha):
        if self.impl == "reference":
            return quant.reference_weight(sign_latent, thermo, log_alpha, self.pow2_scale)
        return quant.fused_weight(sign_latent, thermo, log_alpha, self.pow2_scale)

    def effective_alpha(self, log_alpha: torch.Tensor) -> torch.Tensor:
        """The scale the forward uses: 2**log_alpha, with the exponent rounded
        (straight-through) when ``pow2_scale`` keeps the layer multiplication-free."""
        return quant.effective_alpha(log_alpha, self.pow2_scale)


def _expand(alpha: torch.Tensor, dim: int) -> torch.Tensor:
    return alpha.reshape(-1, *([1] * (dim - 1)))


# ---------------------------------------------------------------------------
# Access helpers (used by diagnostics, packing and tests)
# ---------------------------------------------------------------------------

def is_denseshift(module: nn.Module, name: str) -> bool:
    """True if ``module.<name>`` is DenseShift-parametrized."""
    return (parametrize.is_parametrized(module, name)
            and any(isinstance(p, DenseShiftWeight) for p in module.parametrizations[name]))


def parametrization(module: nn.Module, name: str) -> DenseShiftWeight:
    for p in module.parametrizations[name]:
        if isinstance(p, DenseShiftWeight):
            return p
    raise KeyError(f"{type(module).__name__}.{name} is not DenseShift-quantized")


def latents(module: nn.Module, name: str):
    """(sign_latent, thermo, log2_alpha) Parameters of a quantized ``module.<name>``."""
    plist = module.parametrizations[name]
    return plist.original0, plist.original1, plist.original2


def codes_and_scale(module: nn.Module, name: str):
    """(uint8 codes shaped like the weight, float32 alpha of shape (out,) or (1,)).

    Effective weight == alpha.reshape(-1, 1, ...) * quant.decode(codes, bits).
    """
    p = parametrization(module, name)
    sign_latent, thermo, log_alpha = latents(module, name)
    with torch.no_grad():
        codes = quant.latent_codes(sign_latent, thermo, p.bits)
        scale = p.effective_alpha(log_alpha).detach().float().clone()
    return codes, scale


def set_impl_(model: nn.Module, impl: str) -> int:
    """Compute every DenseShift weight of ``model`` with ``impl`` ("fused" or
    "reference"); returns how many parametrizations were switched."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    count = 0
    for _, module, pname in iter_denseshift(model):
        p = parametrization(module, pname)
        p.impl, p._cache_key, p._cache = impl, None, None
        count += 1
    return count


def iter_denseshift(model: nn.Module):
    """Yield (qualified parameter name, module, param name) for every quantized weight."""
    for mod_name, module in model.named_modules():
        if not parametrize.is_parametrized(module):
            continue
        for pname in list(module.parametrizations.keys()):
            if is_denseshift(module, pname):
                yield (f"{mod_name}.{pname}" if mod_name else pname), module, pname


def denseshift_linear(in_features: int, out_features: int, bias: bool = True,
                      **kwargs) -> nn.Linear:
    """An ``nn.Linear`` with a DenseShift weight (kwargs go to DenseShiftWeight)."""
    layer = nn.Linear(in_features, out_features, bias=bias)
    parametrize.register_parametrization(layer, "weight", DenseShiftWeight(**kwargs))
    return layer

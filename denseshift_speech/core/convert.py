"""`quantize_(model, config)`: swap DenseShift weights into any torch model, in place.

Which weights are eligible (the "quantizable" set):
    nn.Linear.weight, nn.Conv1d.weight (grouped / depthwise too), nn.Conv2d.weight,
    nn.MultiheadAttention.in_proj_weight (or q/k/v_proj_weight),
    speechbrain RelPosMHAXL.in_proj_weight (or q/k/v_proj_weight),
    and, when ``config.quantize_rnn`` is set, nn.LSTM / nn.GRU / nn.RNN
    ``weight_ih_l*`` and ``weight_hh_l*``.
SpeechBrain wrappers (``speechbrain.nnet.linear.Linear`` holding ``.w``,
``speechbrain.nnet.CNN.Conv1d/Conv2d`` holding ``.conv``) are found through the torch
modules they wrap.  Embeddings, norms, biases and positional biases stay full precision.

Selection, in order:
1. ``include`` / ``exclude``: shell-style patterns (fnmatch) matched against the
   qualified parameter name (``encoder.layers.0.mha_layer.in_proj_weight``) and
   against its module's name (``encoder.layers.0.mha_layer``).
2. ``keep_first`` keeps the feature-extraction conv in full precision: the first
   eligible weight in module registration order, when it is a Conv1d/Conv2d.  ``keep_last`` keeps the last eligible weight in registration
   order, normally the output projection -- both as the paper does.  Registration order
   is not always data-flow order (SpeechBrain's TransformerASR registers its input
   projection last), and models with several heads have several outputs: name those
   layers in ``exclude`` (the recipes do: ``*ctc_lin*``, ``*seq_lin*``).
"""
from __future__ import annotations

import dataclasses
import fnmatch
import re
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize

from . import quant
from .nn import INIT_MODES, SCALE_TYPES, DenseShiftWeight, is_denseshift, latents
from .optim import tag_latents

_RNN_WEIGHT = re.compile(r"^weight_(ih|hh)_l\d+(_reverse)?$")
_PROJ_NAMES = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")


@dataclass
class DenseShiftConfig:
    """What to quantize and how.  Usable from HyperPyYAML:

    .. code-block:: yaml

        denseshift: !new:denseshift_speech.DenseShiftConfig
            bits: 3
            exclude: ["*ctc_lin*", "*seq_lin*"]
    """

    bits: int = 3
    scale: str = "channel"          # "channel" (per output channel) or "tensor"
    pow2_scale: bool = False        # round alpha to a power of two: multiplication-free
    init: str = "low_variance"      # "low_variance" (paper) or "from_float" (fine-tuning)
    sigma: float = quant.LOW_VARIANCE_SIGMA
    init_scale_gain: float = 1.0    # low_variance: alpha = gain x the RMS-matching scale
    init_margin: float = 5e-3       # from_float: latents sit this far from their thresholds
    include: list = field(default_factory=lambda: ["*"])
    exclude: list = field(default_factory=list)
    keep_first: bool = True
    keep_last: bool = True
    quantize_rnn: bool = True

    def __post_init__(self):
        quant.check_bits(self.bits)
        if self.scale not in SCALE_TYPES:
            raise ValueError(f"DenseShiftConfig.scale must be one of {SCALE_TYPES}, got {self.scale!r}")
        if self.init not in INIT_MODES:
            raise ValueError(f"DenseShiftConfig.init must be one of {INIT_MODES}, got {self.init!r}")
        if not self.sigma > 0:
            raise ValueError(f"DenseShiftConfig.sigma must be > 0, got {self.sigma!r}")
        if not self.init_scale_gain > 0:
            raise ValueError(f"DenseShiftConfig.init_scale_gain must be > 0, got {self.init_scale_gain!r}")
        if not self.init_margin > 0:
            raise ValueError(f"DenseShiftConfig.init_margin must be > 0, got {self.init_margin!r}")
        for key in ("include", "exclude"):
            value = getattr(self, key)
            if isinstance(value, str):
                setattr(self, key, [value])
            elif not all(isinstance(p, str) for p in getattr(self, key)):
                raise TypeError(f"DenseShiftConfig.{key} must be a list of name patterns")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def parametrization(self) -> DenseShiftWeight:
        return DenseShiftWeight(bits=self.bits, scale=self.scale, pow2_scale=self.pow2_scale,
                                init=self.init, sigma=self.sigma, init_margin=self.init_margin,
                                init_scale_gain=self.init_scale_gain)


@dataclass
class QuantizedEntry:
    name: str
    module_type: str
    shape: tuple
    numel: int
    bits: int
    init_rel_error: float | None = None  # from_float: ||W - W_q|| / ||W||


@dataclass
class QuantizeSummary:
    """What ``quantize_`` did: quantized weights and those kept in full precision."""

    entries: list
    kept: dict            # eligible parameter name -> reason kept in full precision
    total_params: int     # all float parameters of the model before quantization
    bits: int

    @property
    def quantized_weights(self) -> int:
        return sum(e.numel for e in self.entries)

    @property
    def quantized_fraction(self) -> float:
        return self.quantized_weights / max(self.total_params, 1)

    def names(self) -> list:
        return [e.name for e in self.entries]

    def __str__(self) -> str:
        lines = [f"DenseShift {self.bits}-bit: {len(self.entries)} weights, "
                 f"{self.quantized_weights:,} of {self.total_params:,} parameters "
                 f"({100 * self.quantized_fraction:.1f}%)"]
        for e in self.entries:
            err = "" if e.init_rel_error is None else f"  init rel. error {e.init_rel_error:.3f}"
            lines.append(f"  q {e.name:60s} {e.module_type:20s} {str(list(e.shape)):18s}{err}")
        for name, why in self.kept.items():
            lines.append(f"  - {name:60s} kept full precision ({why})")
        return "\n".join(lines)


def eligible_parameters(model: nn.Module):
    """(qualified name, module name, module, parameter name) of every quantizable weight."""
    out = []
    for mod_name, module in model.named_modules():
        for pname in _eligible_names(module):
            qual = f"{mod_name}.{pname}" if mod_name else pname
            out.append((qual, mod_name, module, pname))
    return out


def _eligible_names(module: nn.Module):
    if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
        return ["weight"]
    if isinstance(module, nn.MultiheadAttention) or type(module).__name__ == "RelPosMHAXL":
        return [n for n in _PROJ_NAMES if _has_weight(module, n)]
    if isinstance(module, nn.RNNBase):
        return [n for n in module._flat_weights_names if _RNN_WEIGHT.match(n)]
    if isinstance(module, nn.RNNCellBase):  # attention decoders step GRU/LSTM cells
        return ["weight_ih", "weight_hh"]
    return []


def _has_weight(module, name):
    if parametrize.is_parametrized(module, name):
        return True
    return isinstance(module._parameters.get(name), torch.Tensor)


def _matches(patterns, *names) -> bool:
    return any(fnmatch.fnmatchcase(n, p) for p in patterns for n in names)


def plan(model: nn.Module, config: DenseShiftConfig):
    """Decide what ``quantize_`` would do, without touching the model.

    Returns (to_quantize: list of (qual, module, pname), kept: dict name -> reason).
    Raises ValueError / TypeError for anything that would leave a half-converted model.
    """
    candidates = eligible_parameters(model)
    if not candidates:
        raise ValueError(f"{type(model).__name__} has no quantizable weight "
                         "(Linear, Conv1d, Conv2d, attention in_proj, RNN weights)")
    for pattern in config.include:
        if not any(_matches([pattern], q, m) for q, m, _, _ in candidates):
            raise ValueError(
                f"include pattern {pattern!r} matches no quantizable weight "
                f"(eligible names look like {candidates[0][0] if candidates else 'none'!r})")
    chosen, kept = [], {}
    for qual, mod_name, module, pname in candidates:
        if is_denseshift(module, pname):
            raise ValueError(f"{qual} is already DenseShift-quantized: quantize_ was called twice")
        if isinstance(module, nn.RNNBase) and not config.quantize_rnn:
            kept[qual] = "quantize_rnn is off"
            continue
        if not _matches(config.include, qual, mod_name):
            kept[qual] = "not in include"
            continue
        if _matches(config.exclude, qual, mod_name):
            kept[qual] = "excluded"
            continue
        chosen.append((qual, module, pname))
    for flag, qual in (("keep_first", _first_layer(candidates)), ("keep_last", candidates[-1][0])):
        if getattr(config, flag) and qual is not None and qual not in kept:
            kept[qual] = flag
            chosen = [c for c in chosen if c[0] != qual]
    for qual, module, pname in chosen:
        weight = getattr(module, pname)
        if not weight.is_floating_point():
            raise TypeError(f"{qual} has dtype {weight.dtype}; DenseShift needs a floating-point weight")
    if not chosen:
        raise ValueError("quantize_ found nothing to quantize with this config "
                         f"(include={config.include}, exclude={config.exclude})")
    return chosen, kept


def _first_layer(candidates):
    """The feature-extraction conv: the first eligible weight, if it is a conv.

    Registration order is the only order a module tree has; a model whose first
    quantizable weight is not a conv (a bare TransformerASR registers its encoder layers
    first) has no recognizable front-end conv, and nothing is kept for keep_first.
    """
    qual, _, module, _ = candidates[0]
    return qual if isinstance(module, (nn.Conv1d, nn.Conv2d)) else None


def quantize_(model: nn.Module, config: DenseShiftConfig | None = None) -> QuantizeSummary:
    """Replace the selected weights of ``model`` by DenseShift weights, in place.

    All checks run before the first change; if registration still fails, every
    weight already converted is restored, so the model is never left half-converted.
    """
    config = config or DenseShiftConfig()
    if not isinstance(config, DenseShiftConfig):
        raise TypeError(f"quantize_ expects a DenseShiftConfig, got {type(config).__name__}")
    total = sum(p.numel() for p in model.parameters() if p.is_floating_point())
    chosen, kept = plan(model, config)
    done, entries = [], []
    try:
        for qual, module, pname in chosen:
            original = module._parameters[pname]
            parametrize.register_parametrization(module, pname, config.parametrization())
            done.append((module, pname, original))
            tag_latents(*latents(module, pname))
            err = None
            if config.init == "from_float":
                with torch.no_grad():
                    err = quant.relative_error(original, getattr(module, pname))
            module_type = type(module).__name__.removeprefix("Parametrized")
            entries.append(QuantizedEntry(qual, module_type, tuple(original.shape),
                                          original.numel(), config.bits, err))
    except Exception:
        for module, pname, original in reversed(done):
            parametrize.remove_parametrizations(module, pname, leave_parametrized=True)
            module._parameters[pname] = original
        raise
    # nn.RNNBase re-reads its (parametrized) weights at every forward when they change.
    return QuantizeSummary(entries, kept, total, config.bits)

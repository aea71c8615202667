"""`pack_(model)`: DenseShift-parametrized weights -> packed inference modules, in place.

``pack_(model)`` converts, in place, every DenseShift-parametrized weight of a model
(see :func:`denseshift_speech.core.nn.iter_denseshift`) into packed b-bit codes
(:mod:`denseshift_speech.kernels.layout`) plus one float32 scale per output channel:

* ``nn.Linear``          -> :class:`PackedLinear` (the fused kernel in its forward);
* ``nn.Conv1d``          -> :class:`PackedConv1d`: pointwise (k=1) and groups=1 convs run
  the fused linear kernel (groups=1, k>1 through unfold + the kernel), depthwise
  stride-1 convs (the conformer's kernel-31 conv) the fused depthwise kernel; other
  grouped/strided convs decode their weight once at load (``mode='dense'``);
* anything else (``MultiheadAttention`` / SpeechBrain ``RelPosMHAXL.in_proj_weight``,
  LSTM/GRU weights, ``Conv2d``): no module can be swapped without rewriting the
  owner's forward, so the packed codes are stored in buffers
  (``<param>_ds_packed``, ``<param>_ds_alpha``) and the parameter is replaced by the
  dense float weight decoded once (``alpha * s * 2**e``, exactly the quantized value).
  These weights are small in the file but use fp32 memory and fp32 matmuls at run time.

Packed modules are for inference (no autograd through the kernel).
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..core.nn import codes_and_scale, iter_denseshift, parametrization
from ..kernels import layout as packing
from .fused import fuse_
from .modules import DEFAULT_PATH, PackedConv1d, PackedLinear, _PackedBase, check_path


@dataclasses.dataclass
class PackedEntry:
    name: str          # qualified parameter name
    module: str        # qualified module name
    param: str
    kind: str          # "linear" | "conv1d" | "dense"
    bits: int
    shape: tuple
    packed_bytes: int  # codes + scales
    fp32_bytes: int


@dataclasses.dataclass
class PackSummary:
    entries: list

    @property
    def packed_bytes(self) -> int:
        return sum(e.packed_bytes for e in self.entries)

    @property
    def fp32_bytes(self) -> int:
        return sum(e.fp32_bytes for e in self.entries)

    def __str__(self):
        ratio = self.fp32_bytes / max(self.packed_bytes, 1)
        lines = [f"packed {len(self.entries)} weights: {self.packed_bytes:,} bytes "
                 f"(fp32 {self.fp32_bytes:,} bytes, {ratio:.1f}x smaller)"]
        for e in self.entries:
            lines.append(f"  {e.name:60s} {e.kind:7s} {e.bits}-bit {list(e.shape)}")
        return "\n".join(lines)


def _conv1d_geometry(conv: nn.Conv1d):
    """(padding int) if the conv can be packed as a PackedConv1d, else None."""
    if conv.padding_mode != "zeros":
        return None
    k, d = conv.kernel_size[0], conv.dilation[0]
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            return 0
        total = d * (k - 1)
        return total // 2 if total % 2 == 0 else None
    return int(conv.padding[0])


def _split(name: str):
    return name.rpartition(".")[::2]


def swap_module_(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` where the submodule ``name`` (dotted) of ``model`` is."""
    parent_name, child = _split(name)
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def unparametrize_(module: nn.Module, name: str, value: torch.Tensor):
    """Drop the parametrization of ``module.<name>`` and make it the Parameter ``value``.

    Unlike ``torch.nn.utils.parametrize.remove_parametrizations``, this never edits the
    module's class: ``copy.deepcopy`` of a parametrized model shares the generated
    ``Parametrized<Class>`` between original and copy, and ``remove_parametrizations``
    deletes the property from that shared class, which breaks the other model
    (``AttributeError: ... has no attribute 'in_proj_weight'``).  Here the instance gets
    a fresh class carrying only the properties of its remaining parametrizations.
    """
    if parametrize.is_parametrized(module, name):
        cls = type(module)
        base = cls.__bases__[0]
        remaining = [n for n in module.parametrizations.keys() if n != name]
        del module.parametrizations[name]
        if remaining:
            module.__class__ = type(cls.__name__, (base,), {n: cls.__dict__[n] for n in remaining})
        else:
            del module.parametrizations
            module.__class__ = base
    if name in module._parameters:
        del module._parameters[name]
    setattr(module, name, nn.Parameter(value, requires_grad=False))


def _densify(module: nn.Module, pname: str, packed, alpha, bits: int, shape):
    """Store packed codes on `module` and make `module.<pname>` the decoded float weight."""
    ref = module.parametrizations[pname].original0 if parametrize.is_parametrized(module, pname) \
        else getattr(module, pname)
    dense = packing.decode_packed(packed, alpha, bits, shape).to(ref.device)
    unparametrize_(module, pname, dense)
    old = dense
    module.register_buffer(f"{pname}_ds_packed", packed.to(old.device))
    module.register_buffer(f"{pname}_ds_alpha", alpha.to(old.device))
    reg = dict(getattr(module, "_ds_dense", {}))
    reg[pname] = {"bits": int(bits), "shape": list(shape)}
    module._ds_dense = reg


def _ds_config_of(module, pname):
    p = parametrization(module, pname)
    return {"bits": p.bits, "scale": p.scale, "pow2_scale": p.pow2_scale}


def set_path_(model: nn.Module, path: str, isa: str | None = None) -> int:
    """Switch every packed module of ``model`` to kernel ``path`` (int8, exact, shift) and,
    when given, ``isa``.  Returns how many modules were switched."""
    check_path(path)
    count = 0
    for module in model.modules():
        if isinstance(module, _PackedBase):
            module.path = path
            if isa is not None:
                module.isa = isa
            count += 1
    return count


def pack_(model: nn.Module, path: str | None = None) -> PackSummary:
    """Convert every DenseShift weight of ``model`` in place to packed inference form.

    Returns a :class:`PackSummary`.  ``path`` (int8, exact, shift; default
    :data:`~denseshift_speech.packed.modules.DEFAULT_PATH`) is the kernel path of the new
    modules; it is saved with the model.  The model is put in eval mode, and its
    SpeechBrain conformer layers run one fused op per layer (:func:`.fused.fuse_`).
    """
    path = check_path(path if path is not None else DEFAULT_PATH)
    model.eval()
    targets = list(iter_denseshift(model))
    for qual, module, pname in targets:
        codes, alpha = codes_and_scale(module, pname)
        bits = parametrization(module, pname).bits
        cfg = _ds_config_of(module, pname)
        mod_name = qual[: -len(pname) - 1] if qual != pname else ""
        new = None
        if mod_name and pname == "weight":
            if isinstance(module, nn.Linear):
                new = PackedLinear(module.in_features, module.out_features, bits,
                                   bias=module.bias is not None)
            elif isinstance(module, nn.Conv1d) and _conv1d_geometry(module) is not None:
                new = PackedConv1d(module.in_channels, module.out_channels, module.kernel_size[0],
                                   bits, module.stride[0], _conv1d_geometry(module),
                                   module.dilation[0], module.groups, bias=module.bias is not None)
        if new is not None:
            new.set_codes(codes, alpha)
            if module.bias is not None:
                new.bias.data.copy_(module.bias.detach().float().cpu())
            new.ds_config = cfg
            new.path = path
            dev = module.bias.device if module.bias is not None else alpha.device
            swap_module_(model, mod_name, new.to(dev))
        else:
            packed, alpha_n = packing.pack_weight(codes, alpha, bits)
            _densify(module, pname, packed, alpha_n, bits, tuple(codes.shape))
            module._ds_dense[pname]["config"] = cfg
    fuse_(model)
    return packed_summary(model)


def _packed_items(model: nn.Module):
    """Yield (entry, packed, alpha, state keys holding the packed storage) per weight."""
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        if isinstance(module, _PackedBase):
            shape = module.weight_shape
            numel = 1
            for s in shape:
                numel *= s
            kind = "linear" if isinstance(module, PackedLinear) else "conv1d"
            yield (PackedEntry(prefix + "weight", mod_name, "weight", kind, module.bits, tuple(shape),
                               module.packed_bytes(), 4 * numel),
                   module.packed, module.alpha, module,
                   [prefix + "packed", prefix + "alpha"])
        for pname, info in getattr(module, "_ds_dense", {}).items():
            packed = getattr(module, f"{pname}_ds_packed")
            alpha = getattr(module, f"{pname}_ds_alpha")
            numel = getattr(module, pname).numel()
            yield (PackedEntry(prefix + pname, mod_name, pname, "dense", info["bits"],
                               tuple(info["shape"]), packed.numel() + 4 * alpha.numel(), 4 * numel),
                   packed, alpha, module,
                   [prefix + pname, f"{prefix}{pname}_ds_packed", f"{prefix}{pname}_ds_alpha"])


def packed_summary(model: nn.Module) -> PackSummary:
    return PackSummary([item[0] for item in _packed_items(model)])


def decode_to_float_(model: nn.Module) -> int:
    """Replace every packed module of ``model`` by a dense fp32 ``nn.Linear`` /
    ``nn.Conv1d`` holding the exact quantized weight (``alpha * s * 2**e``), after giving
    fused conformer layers their stock forward back: the full-precision-compute twin of
    the same model.  Returns how many modules were replaced."""
    from .fused import unfuse_
    unfuse_(model)
    replaced = 0
    for name, module in list(model.named_modules()):
        if isinstance(module, PackedLinear):
            new = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
        elif isinstance(module, PackedConv1d):
            new = nn.Conv1d(module.in_channels, module.out_channels, module.kernel_size,
                            stride=module.stride, padding=module.padding, dilation=module.dilation,
                            groups=module.groups, bias=module.bias is not None)
        else:
            continue
        with torch.no_grad():
            new.weight.copy_(module.dequantized_weight().reshape(new.weight.shape))
            if module.bias is not None:
                new.bias.copy_(module.bias)
        swap_module_(model, name, new.eval())
        replaced += 1
    return replaced

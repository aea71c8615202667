"""Packed inference modules, `pack_(model)`, and the packed model file.

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

File format (``save_packed`` / ``load_packed``): a safetensors file (no pickle).  Header
metadata (strings): ``format`` = ``denseshift-packed``, ``format_version`` = ``1``,
``config`` (JSON: the DenseShift config that produced it), ``layers`` (JSON: one
record per quantized weight: name, module, param, kind, bits, shape, conv geometry),
``user`` (JSON: free-form string metadata), ``blobs`` (JSON: names), ``sizes`` (JSON),
and ``sha256``, a digest over every other header field and every tensor (name, dtype,
shape, bytes).  Tensors: ``q.<name>.packed`` (uint8) and ``q.<name>.alpha`` (float32)
for each quantized weight, ``f.<state-dict key>`` for everything else the model holds
(norms, biases, excluded layers; stored as they are, fp32), ``blob.<name>`` (uint8) for
named byte blobs (e.g. the hparams YAML text, the SentencePiece model).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from . import kernels
from .kernels import layout as packing
from .core import quant
from .core.nn import codes_and_scale, iter_denseshift, parametrization

FORMAT = "denseshift-packed"
FORMAT_VERSION = 1
# Kernel path of new packed modules: "auto" (integer-add shift path below 16 rows of
# activations, tile decode + sgemm above), "add", "fma" or "gemm" (see kernels).
DEFAULT_METHOD = "auto"


class PackedFileError(ValueError):
    """A packed model file that cannot be used (message names the file and the problem)."""


# ---------------------------------------------------------------------------
# Inference modules
# ---------------------------------------------------------------------------

class _PackedBase(nn.Module):
    def _init_storage(self, rows: int, k: int, bits: int, bias: bool):
        self.bits = quant.check_bits(bits)
        self.register_buffer("packed", torch.zeros(rows, packing.row_bytes(k, bits), dtype=torch.uint8))
        self.register_buffer("alpha", torch.ones(rows))
        if bias:
            self.bias = nn.Parameter(torch.zeros(rows), requires_grad=False)
        else:
            self.register_parameter("bias", None)
        self.isa = "auto"
        self.method = DEFAULT_METHOD
        self.ds_config = {}

    def set_codes(self, codes: torch.Tensor, alpha: torch.Tensor):
        packed, alpha = packing.pack_weight(codes, alpha, self.bits)
        if packed.shape != self.packed.shape:
            raise ValueError(f"codes of shape {tuple(codes.shape)} do not fit {self}")
        self.packed.copy_(packed)
        self.alpha.copy_(alpha)
        return self

    def dequantized_weight(self) -> torch.Tensor:
        """The dense float32 weight ``alpha * s * 2**e`` (decoded on each call)."""
        return packing.decode_packed(self.packed, self.alpha, self.bits, self.weight_shape)

    @property
    def weight(self) -> torch.Tensor:
        return self.dequantized_weight()

    def packed_bytes(self) -> int:
        return self.packed.numel() + 4 * self.alpha.numel()


class PackedLinear(_PackedBase):
    """``nn.Linear`` replacement running the fused DenseShift kernel (inference only)."""

    def __init__(self, in_features: int, out_features: int, bits: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self._init_storage(self.out_features, self.in_features, bits, bias)

    @property
    def weight_shape(self):
        return (self.out_features, self.in_features)

    def forward(self, x):
        dtype = x.dtype
        if x.device.type != "cpu":  # the reference handles any device
            return kernels.reference.linear(x.float(), self.packed.to(x.device), self.alpha.to(x.device),
                                            None if self.bias is None else self.bias.to(x.device),
                                            self.bits, self.in_features).to(dtype)
        y = torch.ops.denseshift.linear(x.float(), self.packed, self.alpha, self.bias, self.bits,
                                        self.in_features, self.isa, self.method)
        return y if dtype == torch.float32 else y.to(dtype)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bits={self.bits}, bias={self.bias is not None}, method={self.method}")


class PackedConv1d(_PackedBase):
    """``nn.Conv1d`` replacement (zero padding) with DenseShift weights.

    ``mode``: ``pointwise`` (k=1, groups=1: fused linear), ``depthwise`` (groups ==
    channels, stride 1, symmetric padding: fused depthwise kernel), ``unfold`` (groups=1:
    unfold + fused linear), ``dense`` (anything else: weight decoded once, F.conv1d).
    """

    def __init__(self, in_channels, out_channels, kernel_size, bits, stride=1, padding=0,
                 dilation=1, groups=1, bias=True):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride = int(kernel_size), int(stride)
        self.padding, self.dilation, self.groups = int(padding), int(dilation), int(groups)
        self.mode = self.choose_mode(self.in_channels, self.out_channels, self.kernel_size,
                                     self.stride, self.padding, self.groups)
        k = self.in_channels // self.groups * self.kernel_size
        self._init_storage(self.out_channels, k, bits, bias)
        self.register_buffer("_dense", None, persistent=False)

    @staticmethod
    def choose_mode(cin, cout, k, stride, padding, groups):
        if groups == 1 and k == 1 and stride == 1 and padding == 0:
            return "pointwise"
        if groups == cin == cout and stride == 1:
            return "depthwise"
        if groups == 1:
            return "unfold"
        return "dense"

    @property
    def weight_shape(self):
        return (self.out_channels, self.in_channels // self.groups, self.kernel_size)

    def _apply(self, fn, *args, **kwargs):
        self._dense = None
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, *args, **kwargs):
        self._dense = None
        return super()._load_from_state_dict(*args, **kwargs)

    def _linear(self, x2):
        return torch.ops.denseshift.linear(x2, self.packed, self.alpha, self.bias, self.bits,
                                           x2.shape[-1], self.isa, self.method)

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        if self.mode == "dense" or x.device.type != "cpu":
            if self._dense is None or self._dense.device != x.device:
                self._dense = self.dequantized_weight().to(x.device)
            y = F.conv1d(x, self._dense, self.bias, self.stride, self.padding, self.dilation,
                         self.groups)
        elif self.mode == "pointwise":
            y = self._linear(x.transpose(1, 2)).transpose(1, 2).contiguous()
        elif self.mode == "depthwise":
            y = torch.ops.denseshift.depthwise_conv1d(x, self.packed, self.alpha, self.bias,
                                                      self.bits, self.kernel_size, self.padding,
                                                      self.dilation, self.isa, self.method)
        else:  # unfold: (B, C, T) -> (B, Tout, C*k) patches -> fused linear
            if self.padding:
                x = F.pad(x, (self.padding, self.padding))
            span = self.dilation * (self.kernel_size - 1) + 1
            patches = x.unfold(2, span, self.stride)[..., ::self.dilation]  # (B, C, Tout, k)
            patches = patches.permute(0, 2, 1, 3).reshape(x.shape[0], patches.shape[2], -1)
            y = self._linear(patches).transpose(1, 2).contiguous()
        return y if dtype == torch.float32 else y.to(dtype)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"groups={self.groups}, bits={self.bits}, mode={self.mode}, method={self.method}")


# ---------------------------------------------------------------------------
# pack_
# ---------------------------------------------------------------------------

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


def pack_(model: nn.Module, method: str | None = None) -> PackSummary:
    """Convert every DenseShift weight of ``model`` in place to packed inference form.

    Returns a :class:`PackSummary`.  ``method`` (auto, add, fma, gemm) sets the kernel path
    of the new modules (default :data:`DEFAULT_METHOD`).  The model is put in eval mode.
    """
    if method is not None and method not in kernels.ALL_METHODS:
        raise ValueError(f"method must be one of {kernels.ALL_METHODS}, got {method!r}")
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
            if method is not None:
                new.method = method
            dev = module.bias.device if module.bias is not None else alpha.device
            parent_name, child = _split(mod_name)
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, new.to(dev))
        else:
            packed, alpha_n = packing.pack_weight(codes, alpha, bits)
            _densify(module, pname, packed, alpha_n, bits, tuple(codes.shape))
            module._ds_dense[pname]["config"] = cfg
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


# ---------------------------------------------------------------------------
# File format
# ---------------------------------------------------------------------------

def _digest(meta: dict, tensors: dict) -> str:
    h = hashlib.sha256()
    for key in sorted(meta):
        if key == "sha256":
            continue
        h.update(f"m:{key}={meta[key]}\n".encode())
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"t:{name}:{t.dtype}:{list(t.shape)}\n".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _layer_record(entry: PackedEntry, module) -> dict:
    rec = {"name": entry.name, "module": entry.module, "param": entry.param, "kind": entry.kind,
           "bits": entry.bits, "shape": list(entry.shape)}
    if entry.kind == "linear":
        rec.update(bias=module.bias is not None, config=module.ds_config)
    elif entry.kind == "conv1d":
        rec.update(bias=module.bias is not None, stride=module.stride, padding=module.padding,
                   dilation=module.dilation, groups=module.groups, config=module.ds_config)
    else:
        rec.update(config=module._ds_dense[entry.param].get("config", {}))
    return rec


def save_packed(model: nn.Module, path, metadata: dict | None = None, blobs: dict | None = None,
                config=None, rebuilt_buffers=()) -> dict:
    """Write a model converted by :func:`pack_` to ``path`` (safetensors, no pickle).

    ``metadata``: free-form ``{str: str}``; ``blobs``: ``{name: bytes}`` stored verbatim;
    ``config``: the DenseShiftConfig (or dict) that produced the model (recorded as is;
    per-layer bits/scale are always recorded).  ``rebuilt_buffers``: fnmatch patterns of
    buffers the architecture recomputes when it is built (e.g. SpeechBrain's sinusoidal
    ``*positional_encoding*.pe``, 1.4 MB for a d144 conformer): they are left out of the
    file, listed in its header, and left as built by ``load_packed``.  Returns the size
    report (bytes).
    """
    from safetensors.torch import save_file

    pending = [name for name, _, _ in iter_denseshift(model)]
    if pending:
        raise ValueError(f"save_packed: {len(pending)} DenseShift weights are not packed yet "
                         f"(first: {pending[0]}); call pack_(model) first")
    metadata = dict(metadata or {})
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"packed-file metadata must map str to str, got {k!r}: {type(v).__name__}")
    blobs = dict(blobs or {})
    tensors, layers, skip = {}, [], set()
    q_bytes = q_fp32 = 0
    for entry, packed, alpha, module, keys in _packed_items(model):
        tensors[f"q.{entry.name}.packed"] = packed.detach().cpu().contiguous().clone()
        tensors[f"q.{entry.name}.alpha"] = alpha.detach().cpu().float().contiguous().clone()
        layers.append(_layer_record(entry, module))
        skip.update(keys)
        q_bytes += entry.packed_bytes
        q_fp32 += entry.fp32_bytes
    omitted = _rebuilt_keys(model, rebuilt_buffers)
    f_bytes = 0
    for key, value in model.state_dict().items():
        if key in skip or key in omitted:
            continue
        tensors[f"f.{key}"] = value.detach().cpu().contiguous().clone()
        f_bytes += value.numel() * value.element_size()
    blob_bytes = 0
    for name, data in blobs.items():
        if isinstance(data, str):
            data = data.encode()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"blob {name!r} must be bytes or str, got {type(data).__name__}")
        tensors[f"blob.{name}"] = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data \
            else torch.zeros(0, dtype=torch.uint8)
        blob_bytes += len(data)
    if config is not None and hasattr(config, "to_dict"):
        config = config.to_dict()
    elif config is not None and dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    bits_used = sorted({rec["bits"] for rec in layers})
    sizes = {"quantized_packed_bytes": q_bytes, "quantized_fp32_bytes": q_fp32,
             "float_bytes": f_bytes, "blob_bytes": blob_bytes}
    meta = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps({"config": config, "bits": bits_used}, sort_keys=True),
        "layers": json.dumps(layers),
        "user": json.dumps(metadata, sort_keys=True),
        "blobs": json.dumps(sorted(blobs)),
        "sizes": json.dumps(sizes, sort_keys=True),
        "rebuilt": json.dumps(sorted(omitted)),
        "torch_version": torch.__version__.split("+")[0],
    }
    meta["sha256"] = _digest(meta, tensors)
    path = os.fspath(path)
    tmp = path + ".tmp"
    save_file(tensors, tmp, metadata=meta)
    os.replace(tmp, path)
    sizes["file_bytes"] = os.path.getsize(path)
    return sizes


def _rebuilt_keys(model: nn.Module, patterns) -> set:
    """State-dict keys of buffers (never parameters) matching ``patterns``."""
    import fnmatch
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    return {name for name, _ in model.named_buffers()
            if any(fnmatch.fnmatchcase(name, p) for p in patterns)}


def format_sizes(sizes: dict) -> str:
    """One line for a size report returned by save_packed / read_packed_metadata."""
    q, f32 = sizes["quantized_packed_bytes"], sizes["quantized_fp32_bytes"]
    line = (f"quantized weights {q:,} bytes packed vs {f32:,} bytes fp32 "
            f"({f32 / max(q, 1):.1f}x smaller); other tensors {sizes['float_bytes']:,} bytes; "
            f"blobs {sizes['blob_bytes']:,} bytes")
    if "file_bytes" in sizes:
        line += f"; whole file {sizes['file_bytes']:,} bytes"
    return line


def _read(path, load_tensors=True):
    from safetensors import safe_open

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise PackedFileError(f"{path}: no such packed model file")
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()} if load_tensors else None
    except Exception as err:  # safetensors raises its own error types
        raise PackedFileError(f"{path}: not a readable packed model file (truncated or "
                              f"corrupt safetensors data: {err})") from None
    if meta.get("format") != FORMAT:
        raise PackedFileError(f"{path}: not a DenseShift packed model file "
                              f"(format={meta.get('format')!r}, expected {FORMAT!r})")
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise PackedFileError(f"{path}: format version {meta.get('format_version')!r} is not "
                              f"supported (this denseshift-speech reads version {FORMAT_VERSION})")
    if load_tensors and _digest(meta, tensors) != meta.get("sha256"):
        raise PackedFileError(f"{path}: integrity check failed (sha256 mismatch): the file is "
                              "corrupt or was modified")
    try:
        parsed = {k: json.loads(meta[k]) for k in ("config", "layers", "user", "blobs", "sizes")}
    except (KeyError, ValueError) as err:
        raise PackedFileError(f"{path}: corrupt header ({err})") from None
    parsed["sizes"]["file_bytes"] = os.path.getsize(path)
    return meta, parsed, tensors


def read_packed_metadata(path) -> dict:
    """Header of a packed file (no tensor is loaded; the digest is checked by load_packed).

    Keys: format_version, config, layers, metadata (the user's str->str dict), blobs
    (names), sizes (bytes: quantized_packed, quantized_fp32, float, blob, file).
    """
    meta, parsed, _ = _read(path, load_tensors=False)
    return {"format_version": int(meta["format_version"]), "config": parsed["config"],
            "layers": parsed["layers"], "metadata": parsed["user"], "blobs": parsed["blobs"],
            "sizes": parsed["sizes"], "torch_version": meta.get("torch_version")}


def read_packed_blobs(path) -> dict:
    """``{name: bytes}`` of the blobs stored in a packed file (digest checked)."""
    _, parsed, tensors = _read(path)
    return {n: tensors[f"blob.{n}"].numpy().tobytes() for n in parsed["blobs"]}


@dataclasses.dataclass
class PackedInfo:
    metadata: dict
    blobs: dict
    config: dict
    layers: list
    sizes: dict


def _mismatch(path, msg):
    return PackedFileError(f"{path}: architecture mismatch: {msg}")


def load_packed(model: nn.Module, path) -> PackedInfo:
    """Load a packed file into ``model`` (its float or quantized architecture), in place.

    Every quantized layer is replaced by its packed inference module (or decoded dense
    weight, see the module docstring), every other tensor is loaded from the file, and
    the model is put in eval mode.  Raises :class:`PackedFileError` naming the file for a
    missing, truncated, corrupt, wrong-version or mismatched file.
    """
    meta, parsed, tensors = _read(path)
    path = os.fspath(path)
    model.eval()
    for rec in parsed["layers"]:
        try:
            packed = tensors[f"q.{rec['name']}.packed"]
            alpha = tensors[f"q.{rec['name']}.alpha"]
            mod_name, pname, kind, bits = rec["module"], rec["param"], rec["kind"], int(rec["bits"])
            shape = tuple(int(s) for s in rec["shape"])
        except KeyError as err:
            raise PackedFileError(f"{path}: corrupt layer table (missing {err})") from None
        try:
            module = model.get_submodule(mod_name) if mod_name else model
        except AttributeError:
            raise _mismatch(path, f"the model has no module {mod_name!r}") from None
        if kind in ("linear", "conv1d"):
            if kind == "linear":
                ok = isinstance(module, (nn.Linear, PackedLinear)) and \
                    (module.out_features, module.in_features) == shape
                new = PackedLinear(shape[1], shape[0], bits, bias=rec["bias"]) if ok else None
            else:
                ok = isinstance(module, (nn.Conv1d, PackedConv1d))
                if ok:
                    geo = (module.padding if isinstance(module, PackedConv1d) else _conv1d_geometry(module))
                    stride = module.stride if isinstance(module, PackedConv1d) else module.stride[0]
                    dil = module.dilation if isinstance(module, PackedConv1d) else module.dilation[0]
                    wshape = (module.out_channels, module.in_channels // module.groups,
                              module.kernel_size if isinstance(module, PackedConv1d) else module.kernel_size[0])
                    ok = (wshape == shape and geo == rec["padding"] and stride == rec["stride"]
                          and dil == rec["dilation"] and module.groups == rec["groups"])
                new = PackedConv1d(shape[1] * rec["groups"], shape[0], shape[2], bits, rec["stride"],
                                   rec["padding"], rec["dilation"], rec["groups"],
                                   bias=rec["bias"]) if ok else None
            if not ok:
                raise _mismatch(path, f"{mod_name!r} is {type(module).__name__} "
                                f"{_describe(module)}, the file has a {kind} with weight {list(shape)}")
            if packed.shape != new.packed.shape or alpha.shape != new.alpha.shape:
                raise PackedFileError(f"{path}: corrupt tensors for {rec['name']!r}")
            new.packed.copy_(packed)
            new.alpha.copy_(alpha)
            new.ds_config = rec.get("config", {})
            parent_name, child = _split(mod_name)
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, new)
        elif kind == "dense":
            cur = getattr(module, pname, None)
            if cur is None or not isinstance(cur, torch.Tensor) or tuple(cur.shape) != shape:
                have = None if cur is None else list(getattr(cur, "shape", []))
                raise _mismatch(path, f"{rec['name']!r} has shape {have}, the file has {list(shape)}")
            _densify(module, pname, packed, alpha, bits, shape)
            module._ds_dense[pname]["config"] = rec.get("config", {})
        else:
            raise PackedFileError(f"{path}: unknown layer kind {kind!r} for {rec['name']!r}")
    # Everything that is not packed storage comes from the f.* tensors.
    skip = set()
    for _, _, _, _, keys in _packed_items(model):
        skip.update(keys)
    rebuilt = set(json.loads(meta.get("rebuilt", "[]")))
    state = {k: v for k, v in model.state_dict().items() if k not in skip and k not in rebuilt}
    stored = {k[2:]: v for k, v in tensors.items() if k.startswith("f.")}
    missing = sorted(set(state) - set(stored))
    unexpected = sorted(set(stored) - set(state))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"model tensors not in the file: {', '.join(missing[:5])}"
                         + (" ..." if len(missing) > 5 else ""))
        if unexpected:
            parts.append(f"file tensors not in the model: {', '.join(unexpected[:5])}"
                         + (" ..." if len(unexpected) > 5 else ""))
        raise _mismatch(path, "; ".join(parts))
    for key, target in state.items():
        src = stored[key]
        if tuple(src.shape) != tuple(target.shape):
            raise _mismatch(path, f"{key!r} has shape {list(target.shape)} in the model, "
                            f"{list(src.shape)} in the file")
        with torch.no_grad():
            target.copy_(src)
    blobs = {n: tensors[f"blob.{n}"].numpy().tobytes() for n in parsed["blobs"]}
    return PackedInfo(parsed["user"], blobs, parsed["config"], parsed["layers"], parsed["sizes"])


def _describe(module):
    w = getattr(module, "weight", None)
    return f"with weight {list(w.shape)}" if isinstance(w, torch.Tensor) else ""

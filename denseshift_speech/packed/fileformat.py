"""The packed model file: ``save_packed`` / ``load_packed`` / ``read_packed_metadata``.

File format (``save_packed`` / ``load_packed``): a safetensors file (no pickle).  Header
metadata (strings): ``format`` = ``denseshift-packed``, ``format_version`` = ``2``,
``config`` (JSON: the DenseShift config that produced it), ``layers`` (JSON: one
record per quantized weight: name, module, param, kind, bits, shape, conv geometry),
``user`` (JSON: free-form string metadata), ``blobs`` (JSON: names), ``sizes`` (JSON),
and ``sha256``, a digest over every other header field and every tensor (name, dtype,
shape, bytes).  Tensors: ``q.<name>.codes`` (uint8) and ``q.<name>.alpha`` (float32)
for each quantized weight, ``f.<state-dict key>`` for everything else the model holds
(norms, biases, excluded layers; stored as they are, fp32), ``blob.<name>`` (uint8) for
named byte blobs (e.g. the hparams YAML text, the SentencePiece model).

``q.<name>.codes`` is the dense code stream of :func:`~denseshift_speech.kernels.layout.
pack_dense`: the weight's ``N x K`` codes (``K`` = product of the other dimensions of the
recorded shape), row-major, ``bits`` bits each, little-endian bit order, no per-row
padding, ``ceil(N*K*bits/8)`` bytes.  ``load_packed`` unpacks it and rebuilds the
in-memory block layout (:func:`~denseshift_speech.kernels.layout.pack_codes`, rows padded
to 64 codes) that the modules hold.

Version 1 (still read): the same, except that each quantized weight was stored as
``q.<name>.packed``, the block layout itself (uint8, shape ``(N, row_bytes)``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import torch
from torch import nn

from ..fsio import atomic_path
from ..core.nn import iter_denseshift
from ..kernels import layout
from .fused import fuse_
from .modules import DEFAULT_PATH, PATHS, PackedConv1d, PackedLinear
from .pack import PackedEntry, _conv1d_geometry, _densify, _packed_items, swap_module_

FORMAT = "denseshift-packed"
FORMAT_VERSION = 2
#: versions load_packed reads (1: block layout in the file, 2: dense code streams)
READABLE_VERSIONS = (1, 2)


class PackedFileError(ValueError):
    """A packed model file that cannot be used (message names the file and the problem)."""


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
        rec.update(bias=module.bias is not None, config=module.ds_config, path=module.path)
    elif entry.kind == "conv1d":
        rec.update(bias=module.bias is not None, stride=module.stride, padding=module.padding,
                   dilation=module.dilation, groups=module.groups, config=module.ds_config,
                   path=module.path)
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
        n, k = _rows_cols(entry.shape)
        codes = layout.unpack_codes(packed.detach().cpu().contiguous(), entry.bits, k)
        tensors[f"q.{entry.name}.codes"] = layout.pack_dense(codes, entry.bits)
        tensors[f"q.{entry.name}.alpha"] = alpha.detach().cpu().float().contiguous().clone()
        layers.append(_layer_record(entry, module))
        skip.update(keys)
        q_bytes += tensors[f"q.{entry.name}.codes"].numel() + 4 * alpha.numel()
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
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=meta)
        os.chmod(tmp, 0o666 & ~current_umask())  # safetensors creates its file 0600
    sizes["file_bytes"] = os.path.getsize(path)
    return sizes


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (/proc), so that a
    file written through a private temporary file (safetensors makes its files 0600) can be
    given the mode ``open()`` would have given it: ``0o666 & ~current_umask()``."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, and put it back at once
    os.umask(mask)
    return mask


def _rows_cols(shape):
    """(N, K) of a weight of shape (N, *rest): rows and codes per row."""
    shape = tuple(int(s) for s in shape)
    k = 1
    for s in shape[1:]:
        k *= s
    return shape[0], k


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
    if meta.get("format_version") not in [str(v) for v in READABLE_VERSIONS]:
        raise PackedFileError(f"{path}: format version {meta.get('format_version')!r} is not "
                              f"supported (this denseshift-speech reads versions "
                              f"{', '.join(map(str, READABLE_VERSIONS))}; it writes version "
                              f"{FORMAT_VERSION})")
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
    version = int(meta["format_version"])
    model.eval()
    for rec in parsed["layers"]:
        try:
            stored = tensors[f"q.{rec['name']}.{'packed' if version == 1 else 'codes'}"]
            alpha = tensors[f"q.{rec['name']}.alpha"]
            mod_name, pname, kind, bits = rec["module"], rec["param"], rec["kind"], int(rec["bits"])
            shape = tuple(int(s) for s in rec["shape"])
        except KeyError as err:
            raise PackedFileError(f"{path}: corrupt layer table (missing {err})") from None
        packed = stored if version == 1 else _block_layout(path, rec["name"], stored, bits, shape)
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
            # the kernel path chosen at pack time (files before it was recorded: the default)
            new.path = rec.get("path", DEFAULT_PATH) if rec.get("path") in PATHS else DEFAULT_PATH
            swap_module_(model, mod_name, new)
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
    fuse_(model)
    return PackedInfo(parsed["user"], blobs, parsed["config"], parsed["layers"], parsed["sizes"])


def _block_layout(path, name, stream, bits, shape):
    """The in-memory block layout (``layout.pack_codes``) of a version-2 code stream."""
    try:
        n, k = _rows_cols(shape)
        codes = layout.unpack_dense(stream, bits, n, k)
        return layout.pack_codes_u8(codes, bits)  # the bytes of layout.pack_codes, faster
    except (ValueError, TypeError, IndexError) as err:
        raise PackedFileError(f"{path}: corrupt tensors for {name!r} ({err})") from None


def _describe(module):
    w = getattr(module, "weight", None)
    return f"with weight {list(w.shape)}" if isinstance(w, torch.Tensor) else ""

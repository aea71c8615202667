"""ONNX export of a packed DenseShift model for stock onnxruntime (no custom op).

How (:func:`export_onnx`):

1. :func:`float_twin` copies the packed model, gives fused conformer layers their stock
   forward back and replaces every :class:`PackedLinear` / :class:`PackedConv1d` by a plain
   ``nn.Linear`` / ``nn.Conv1d`` holding ``alpha * s * 2**e`` in fp32.  Those values are
   exactly representable, so the float twin computes with the exact quantized weights.
2. ``torch.onnx.export(dynamo=False)`` writes the float twin (dynamic batch / time axes).
3. :func:`quantize_graph` rewrites, in the ONNX graph, every ``MatMul`` whose B is an
   initializer holding a DenseShift weight (found by value: ``B == (alpha * q)^T``
   bit for bit, checked) and every pointwise ``Conv`` (kernel 1, groups 1, stride 1, no
   padding) with such a weight, into the pattern onnxruntime's own
   ``quantize_dynamic(per_channel=True)`` emits for MatMul::

       x_q, x_s, x_zp = DynamicQuantizeLinear(x)           # uint8, per tensor, per call
       y_i = MatMulInteger(x_q, W_q, x_zp, W_zp)           # W_q int8 (K, N) = q^T exactly,
                                                           #   W_zp int8 zeros (N,)
       y   = Mul(Cast<float>(y_i), Mul(x_s, W_scale))      # W_scale (N,) = alpha per row

   (the bias ``Add`` of the float graph stays after it).  onnxruntime fuses this at load
   time into its contrib ``DynamicQuantizeMatMul`` (per-column scales included, checked
   with onnxruntime 1.32), or ``MatMulIntegerToFloat`` where one quantized activation
   feeds several MatMuls; the file itself is plain ONNX (opset 17) either way.

4-bit weights reach ``+-128``; int8 holds -128 but not +128.  A layer whose codes contain
``+-128`` is split as in the tiled int8 kernel (:func:`kernels.layout.int8_parts`):
``q = lo + hi`` with ``|lo|, |hi| <= 64`` (``hi`` is ``+-64`` where ``|q| = 128``, else 0),
two ``MatMulInteger`` on the same quantized activation, their int32 outputs added
(``Add`` on int32), then one Cast and one Mul: still exact integer dot products
(``split_sum="float"`` instead scales each part and adds in fp32, which onnxruntime
fuses to two MatMulIntegerToFloat; same speed measured, see :data:`SPLIT_SUMS`).  Every
MatMulInteger gets its own scale / zero-point initializers: onnxruntime does not fuse a
MatMulInteger whose scale initializer has another consumer.  Keeping
every weight part within +-64 also rules out the int16 saturation of u8s8 ``vpmaddubsw``
on AVX2 machines without VNNI (255 * 64 * 2 < 32767).  Layers of more than 4 bits
(values up to 2**(2**(b-1)-1)) stay fp32 MatMuls with their exact float weights.

Everything else keeps exact fp32 weights (``alpha * s * 2**e``): depthwise and other
non-pointwise convs (the conformer's depthwise conv, the CNN front-end's Conv2d),
``Gemm`` nodes (2-D inputs; the conformer has none), biases, layer norms.

Activations are quantized per tensor (asymmetric uint8, one scale per call) by
onnxruntime, whereas the packed int8 path quantizes per row: outputs agree with the
packed model to about the int8 rounding of the activations, not bit for bit.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
import warnings

import numpy as np
import torch
from torch import nn

from ..kernels import layout
from ..kernels.codes import decode
from .pack import _packed_items, decode_to_float_

#: the int8 pattern handles codes of at most this many bits (4-bit: +-128 split lo + hi)
INT8_MAX_BITS = 4
#: |part| bound of the lo + hi split (kernels.layout.int8_parts)
SPLIT = 64
#: lo + hi of a split weight: "int32" (the default) adds the integer parts, then one Cast +
#: Mul (exact integer dot product, one rounding; onnxruntime leaves these MatMulInteger
#: unfused); "float" scales each part and adds in fp32, so onnxruntime fuses each part to
#: MatMulIntegerToFloat.  Measured the same speed on conformer-small (x86, VNNI, 1 thread).
SPLIT_SUMS = ("int32", "float")
OPSET = 17
PRODUCER = "denseshift_speech"


@dataclasses.dataclass
class QuantWeight:
    """One DenseShift weight as rows ``alpha[n] * q[n, :]`` (q integer +-2^e)."""
    name: str
    bits: int
    q: np.ndarray       # int64 (N, K)
    alpha: np.ndarray   # float32 (N,)

    def weight(self) -> np.ndarray:
        """The float32 weight (N, K), exactly what the float twin holds."""
        return (self.alpha.reshape(-1, 1) * self.q.astype(np.float32)).astype(np.float32)


def quantized_weights(model: nn.Module) -> list:
    """Every packed DenseShift weight of ``model`` (packed modules and "dense" entries)."""
    out = []
    for entry, packed, alpha, _module, _keys in _packed_items(model):
        n = entry.shape[0]
        k = int(np.prod(entry.shape[1:])) if len(entry.shape) > 1 else 1
        codes = layout.unpack_codes(packed.detach().cpu(), entry.bits, k)
        q = decode(codes, entry.bits, torch.float64).long().numpy()
        a = alpha.detach().float().cpu().reshape(-1).numpy()
        if a.size == 1 and n != 1:
            a = np.repeat(a, n)
        out.append(QuantWeight(entry.name, int(entry.bits), q, a.astype(np.float32)))
    return out


def float_twin(model: nn.Module) -> nn.Module:
    """A copy of packed ``model`` computing in fp32 with the exact quantized weights:
    fused layers unfused, packed modules replaced by ``nn.Linear`` / ``nn.Conv1d``."""
    twin = copy.deepcopy(model).cpu().eval()
    decode_to_float_(twin)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


def _key(w: np.ndarray) -> tuple:
    w = np.ascontiguousarray(w, dtype=np.float32)
    return w.shape, hashlib.sha1(w.tobytes()).hexdigest()


@dataclasses.dataclass
class QuantizeReport:
    int8: list        # weight names rewritten to MatMulInteger (one int8 part)
    split: list       # 4-bit weight names rewritten as lo + hi int8 parts
    kept_fp32: list   # DenseShift weights found in the graph but left fp32 (bits > 4)
    missing: list     # DenseShift weights not found as a MatMul / pointwise Conv weight

    def __str__(self):
        return (f"{len(self.int8) + len(self.split)} DenseShift MatMuls as int8 "
                f"({len(self.split)} of them split lo + hi for +-128), "
                f"{len(self.kept_fp32)} kept fp32 (> {INT8_MAX_BITS} bits), "
                f"{len(self.missing)} left as exact fp32 weights of other ops")


def _attr(node, name, default=None):
    from onnx import helper
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def quantize_graph(model, weights: list, split_sum: str = "int32"):
    """Rewrite ``model`` (an ``onnx.ModelProto``, edited in place and returned) as described
    in the module docstring.  ``split_sum``: how the lo + hi parts of a 4-bit weight are
    summed (see :data:`SPLIT_SUMS`).  Returns ``(model, QuantizeReport)``."""
    if split_sum not in SPLIT_SUMS:
        raise ValueError(f"split_sum must be one of {SPLIT_SUMS}, got {split_sum!r}")
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    by_key = {}
    for w in weights:
        by_key.setdefault(_key(w.weight()), w)
    inits = {i.name: i for i in graph.initializer}
    arrays = {}

    def array(name):
        if name not in arrays:
            arrays[name] = numpy_helper.to_array(inits[name])
        return arrays[name]

    def lookup(name, transpose):
        """The QuantWeight whose float weight (N, K) is initializer ``name``, if any."""
        if name not in inits or inits[name].data_type != TensorProto.FLOAT:
            return None
        b = array(name)
        w = b.T if transpose else b.reshape(b.shape[0], -1)
        if w.ndim != 2:
            return None
        hit = by_key.get(_key(w))
        if hit is not None and np.array_equal(hit.weight(), w):
            return hit
        return None

    new_nodes, new_inits = [], []
    quantized_inputs = {}   # activation name -> (x_q, x_scale, x_zp)
    weight_inits = {}       # weight name -> [int8 init names]
    uses = {}
    report = QuantizeReport([], [], [], [])
    seen = set()
    uniq = [0]

    def fresh(base):
        uniq[0] += 1
        return f"{base}_ds{uniq[0]}"

    def dql(x):
        if x not in quantized_inputs:
            outs = (f"{x}_quantized", f"{x}_scale", f"{x}_zero_point")
            new_nodes.append(helper.make_node("DynamicQuantizeLinear", [x], list(outs),
                                              name=f"{x}_DynamicQuantizeLinear"))
            quantized_inputs[x] = outs
        return quantized_inputs[x]

    def weight_tensors(w: QuantWeight):
        if w.name not in weight_inits:
            qt = w.q.T  # (K, N) as MatMul's B
            if np.abs(qt).max(initial=0) > 127:  # +-128 (4-bit): lo + hi, as int8_parts
                lo = np.clip(qt, -SPLIT, SPLIT)
                parts = [lo, qt - lo]
            else:
                parts = [qt]
            base = w.name.replace(".", "/")
            names = []
            for i, p in enumerate(parts):
                nm = f"{base}_int8" + ("" if len(parts) == 1 else ("_lo", "_hi")[i])
                new_inits.append(numpy_helper.from_array(np.ascontiguousarray(p.astype(np.int8)), nm))
                names.append(nm)
            weight_inits[w.name] = names
        return weight_inits[w.name]

    def scale_tensors(w: QuantWeight, tag: str):
        """Per-channel scale and zero point for ONE MatMulInteger: onnxruntime fuses a
        MatMulInteger + Cast + Mul only when these initializers have no other consumer."""
        base = w.name.replace(".", "/")
        k = uses[(w.name, tag)] = uses.get((w.name, tag), -1) + 1
        sfx = tag + (f"_{k}" if k else "")
        scale, zp = f"{base}_scale{sfx}", f"{base}_zero_point{sfx}"
        new_inits.append(numpy_helper.from_array(w.alpha.astype(np.float32), scale))
        new_inits.append(numpy_helper.from_array(np.zeros(w.alpha.shape, np.int8), zp))
        return scale, zp

    def int8_matmul(x, w: QuantWeight, y):
        x_q, x_s, x_zp = dql(x)
        names = weight_tensors(w)
        stem = fresh(y)
        split = len(names) == 2
        tags = ["_lo", "_hi"] if split else [""]
        if split and split_sum == "int32":
            tags = ["", ""]  # one scale for the summed parts
        scales = [scale_tensors(w, t) for t in dict.fromkeys(tags)]

        def scaled(ints, out, scale, tag=""):
            new_nodes.append(helper.make_node("Mul", [x_s, scale], [f"{stem}_scales{tag}"],
                                              name=f"{stem}_ScalesMul{tag}"))
            new_nodes.append(helper.make_node("Cast", [ints], [f"{stem}_float{tag}"],
                                              to=TensorProto.FLOAT, name=f"{stem}_Cast{tag}"))
            new_nodes.append(helper.make_node("Mul", [f"{stem}_float{tag}", f"{stem}_scales{tag}"],
                                              [out], name=f"{stem}_Mul{tag}"))

        outs = []
        for i, nm in enumerate(names):
            out = f"{stem}_int32" + (f"_{i}" if split else "")
            zp = scales[min(i, len(scales) - 1)][1]
            new_nodes.append(helper.make_node("MatMulInteger", [x_q, nm, x_zp, zp], [out],
                                              name=f"{stem}_MatMulInteger{i}"))
            outs.append(out)
        if not split:
            scaled(outs[0], y, scales[0][0])
        elif split_sum == "int32":
            new_nodes.append(helper.make_node("Add", outs, [f"{stem}_int32"],
                                              name=f"{stem}_AddParts"))
            scaled(f"{stem}_int32", y, scales[0][0])
        else:  # each part the standard (fusable) pattern, summed in float
            for i, out in enumerate(outs):
                scaled(out, f"{stem}_part{i}", scales[i][0], tags[i])
            new_nodes.append(helper.make_node("Add", [f"{stem}_part0", f"{stem}_part1"], [y],
                                              name=f"{stem}_AddParts"))
        (report.split if split else report.int8).append(w.name)

    for node in graph.node:
        w = None
        if node.op_type == "MatMul" and len(node.input) == 2:
            w = lookup(node.input[1], transpose=True)
        elif (node.op_type == "Conv" and len(node.input) >= 2 and node.input[1] in inits
              and len(inits[node.input[1]].dims) == 3 and inits[node.input[1]].dims[2] == 1
              and _attr(node, "group", 1) == 1 and list(_attr(node, "strides", [1])) == [1]
              and list(_attr(node, "dilations", [1])) == [1]
              and not any(_attr(node, "pads", [0, 0]))
              and _attr(node, "auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET", b"VALID", "VALID")):
            w = lookup(node.input[1], transpose=False)
        if w is None:
            new_nodes.append(node)
            continue
        seen.add(w.name)
        if w.bits > INT8_MAX_BITS:
            report.kept_fp32.append(w.name)
            new_nodes.append(node)
            continue
        if node.op_type == "MatMul":
            int8_matmul(node.input[0], w, node.output[0])
            continue
        # pointwise Conv (B, C, T): transpose to (B, T, C), int8 MatMul, bias, back
        x, y = node.input[0], node.output[0]
        stem = fresh(y)
        new_nodes.append(helper.make_node("Transpose", [x], [f"{stem}_btc"], perm=[0, 2, 1],
                                          name=f"{stem}_TransposeIn"))
        mm = f"{stem}_matmul"
        int8_matmul(f"{stem}_btc", w, mm)
        if len(node.input) > 2 and node.input[2]:
            new_nodes.append(helper.make_node("Add", [mm, node.input[2]], [f"{stem}_biased"],
                                              name=f"{stem}_AddBias"))
            mm = f"{stem}_biased"
        new_nodes.append(helper.make_node("Transpose", [mm], [y], perm=[0, 2, 1],
                                          name=f"{stem}_TransposeOut"))
    report.missing = [w.name for w in weights if w.name not in seen]
    del graph.node[:]
    graph.node.extend(new_nodes)
    graph.initializer.extend(new_inits)
    used = {i for n in graph.node for i in n.input}
    keep = [i for i in graph.initializer if i.name in used
            or i.name in {o.name for o in graph.output}]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return model, report


def torch_export(module: nn.Module, example, path, input_names=("x",), output_names=("y",),
                 dynamic_axes=None, opset: int = OPSET):
    """``torch.onnx.export(dynamo=False)`` of ``module(*example)`` with dynamic batch and time
    axes on every input and output (the settings of the bench's fp32 baselines)."""
    example = example if isinstance(example, tuple) else (example,)
    if dynamic_axes is None:
        dynamic_axes = {n: {0: "batch", 1: "time"} for n in (*input_names, *output_names)}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation, tracer warnings
        torch.onnx.export(module.eval(), example, os.fspath(path), dynamo=False,
                          opset_version=opset, input_names=list(input_names),
                          output_names=list(output_names), dynamic_axes=dynamic_axes)
    return path


def export_onnx(module: nn.Module, example, path, packed_model: nn.Module | None = None,
                metadata: dict | None = None, input_names=("x",), output_names=("y",),
                dynamic_axes=None, opset: int = OPSET, split_sum: str = "int32"):
    """Write ``module(*example)`` as ONNX at ``path`` with DenseShift MatMuls in int8.

    ``module`` may hold packed modules (it is exported through :func:`float_twin`) or be a
    float module whose weights came from ``packed_model`` (the model the DenseShift weights
    are read from; default ``module`` itself).  A model with no DenseShift weight (an fp32
    twin) is written as a plain fp32 ONNX model.  ``metadata`` (str -> str) goes to the
    model's ``metadata_props``.  Returns the :class:`QuantizeReport`.
    """
    import onnx

    weights = quantized_weights(packed_model if packed_model is not None else module)
    twin = float_twin(module)
    torch_export(twin, example, path, input_names, output_names, dynamic_axes, opset)
    proto = onnx.load(os.fspath(path))
    proto, report = quantize_graph(proto, weights, split_sum)
    proto.producer_name = PRODUCER
    meta = {"denseshift.onnx": str(report), **(metadata or {})}
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = str(k), str(v)
    onnx.checker.check_model(proto)
    onnx.save(proto, os.fspath(path))
    return report


def size_report(onnx_path, packed_path=None) -> str:
    """One line: the ONNX file's size, its int8 / fp32 initializer bytes, vs the packed file."""
    import onnx
    from onnx import TensorProto

    proto = onnx.load(os.fspath(onnx_path))
    by_type = {}
    for init in proto.graph.initializer:
        n = int(np.prod(init.dims)) if len(init.dims) else 1
        size = n * (1 if init.data_type in (TensorProto.INT8, TensorProto.UINT8) else 4)
        by_type[init.data_type] = by_type.get(init.data_type, 0) + size
    int8 = by_type.get(TensorProto.INT8, 0)
    fp32 = by_type.get(TensorProto.FLOAT, 0)
    line = (f"ONNX {os.path.getsize(onnx_path):,} B (int8 weights {int8:,} B, fp32 tensors "
            f"{fp32:,} B)")
    if packed_path is not None:
        line += f", packed file {os.path.getsize(packed_path):,} B"
    return line

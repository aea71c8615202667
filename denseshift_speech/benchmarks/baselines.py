"""What a user would run instead of a packed DenseShift model, ready to be timed.

Four baselines of one fp32 network, at two granularities:

* whole encoder (a SpeechBrain conformer ``TransformerASR``, :data:`GEOMETRIES`):
  torch fp32 eager (:func:`build_encoder`), torch dynamic int8 (:func:`torch_dynamic_int8`),
  onnxruntime fp32 (:func:`export_onnx` + :class:`OrtModel`) and onnxruntime dynamic int8
  (:func:`ort_int8`), all four at once with :func:`encoder_baselines`;
* one linear layer ``y = x @ W.T + b`` (:func:`layer_baselines`): ``F.linear``, torch dynamic
  int8 (:func:`torch_linear_int8`), a one-node ONNX MatMul+Add model in onnxruntime fp32
  (:func:`ort_linear`) and its ``quantize_dynamic`` twin (:func:`ort_linear_int8`).

Settings, chosen to make the baselines as strong as what is shipped today:

* onnxruntime sessions (:func:`denseshift_speech.onnx_runtime.ort_session`): CPU provider,
  ``intra_op_num_threads=threads``, ``inter_op_num_threads=1``, sequential execution,
  ``ORT_ENABLE_ALL`` graph optimizations.
* onnxruntime int8 (:func:`ort_int8`): ``quantize_dynamic(op_types_to_quantize=["MatMul"],
  weight_type=QInt8, per_channel=False)``, the recipe icefall / sherpa-onnx ship. Weights are
  int8, symmetric, one scale per tensor; activations are quantized per call to uint8 with a
  per-tensor scale and zero point (``DynamicQuantizeLinear``); every MatMul with a constant
  weight becomes ``MatMulInteger`` (ORT fuses it to ``DynamicQuantizeMatMul`` at load).
  Activation-by-activation MatMuls (attention scores and context) stay fp32. Conv is left out
  on purpose: quantizing it (ORT's default op list) turns the conformer's pointwise and
  depthwise Conv1d into ``ConvInteger``, which made the encoder slower with no accuracy
  gain. ``per_channel=True`` is an option, not the default: it barely lowers the encoder's
  output error and slows single layers down.
* torch dynamic int8: ``torch.ao.quantization.quantize_dynamic({nn.Linear}, qint8)``, i.e.
  fbgemm with per-tensor weights and 7-bit (``reduce_range``) activations. It only sees
  ``nn.Linear`` modules: ``RelPosMHAXL``'s in-projection is a bare parameter and stays fp32.
* ONNX export (:func:`export_onnx`): the TorchScript exporter (``dynamo=False``, opset 17)
  with a dynamic batch and time axis. The relative positional encoding is built from the
  traced input shape, so one file serves every T (checked at T=7, 16 and 100 against torch).
  The TorchScript exporter does not need ``onnxscript`` (only ``dynamo=True`` does).

Calls are made as cheap as onnxruntime allows: :class:`OrtModel` binds the input and output
names once and calls the session's C++ ``run`` directly (``InferenceSession._sess.run``,
falling back to the public ``run``), which costs less per call than the public ``run`` or
IOBinding. Torch int8 layer callables call ``torch.ops.quantized.linear_dynamic`` with the
module's own packed weights and ``reduce_range``, skipping the module's Python ``forward``.

Threads: onnxruntime callables use the ``threads`` their session was made with; torch ones
use ``torch.get_num_threads()``, so set ``torch.set_num_threads`` to the same number.

The measurements behind these settings: docs/results/2026-12-02-onnxruntime-baseline-settings.md.

Nothing here downloads anything; onnxruntime / onnx are imported only when needed (see
:func:`available`).
"""
from __future__ import annotations

import contextlib
import copy
import logging
import os
import tempfile
import warnings
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..onnx_runtime import ort_session

__all__ = [
    "GEOMETRIES", "Availability", "available", "build_encoder", "example_input",
    "EncoderWrapper", "export_onnx", "OrtModel", "ort_int8",
    "torch_dynamic_int8", "encoder_baselines", "linear_onnx", "ort_linear", "ort_linear_int8",
    "torch_linear_fp32", "torch_linear_int8", "layer_baselines", "op_counts",
]

#: Settings shared by both geometries (SpeechBrain conformer, CTC encoder only).
COMMON = dict(encoder_module="conformer", attention_type="RelPosMHAXL", normalize_before=True,
              causal=False, dropout=0.0, num_decoder_layers=0)

#: Whole-encoder geometries. ``input_size`` is the feature size entering ``TransformerASR``,
#: i.e. after the recipes' CNN front-end (2 blocks of stride 2, 32 output channels):
#: ``n_mels // 4 * 32`` as in hparams/conformer_fp.yaml, 320 for the demo's 40 mels and 640
#: for conformer-small's 80 mels (SpeechBrain's LibriSpeech conformer-small recipe uses 640).
#: Pass ``input_size=`` to :func:`build_encoder` to time the encoder on raw mels instead.
GEOMETRIES = {
    "demo": dict(input_size=320, d_model=96, nhead=4, num_encoder_layers=4, d_ffn=384,
                 kernel_size=15, activation="GELU", **COMMON),
    "conformer-small": dict(input_size=640, d_model=144, nhead=4, num_encoder_layers=12,
                            d_ffn=1024, kernel_size=31, activation="GELU", **COMMON),
}


class Availability(NamedTuple):
    """``ok`` is whether onnxruntime (and onnx) import; ``message`` says what or why not."""
    ok: bool
    message: str

    def __bool__(self):
        return self.ok


def available() -> Availability:
    """Whether the onnxruntime baselines can run here, with the import error text if not."""
    try:
        import onnx
        import onnxruntime
        from onnxruntime.quantization import quantize_dynamic  # noqa: F401
    except Exception as e:  # ImportError, or a broken binary wheel
        return Availability(False, f"{type(e).__name__}: {e}")
    return Availability(True, f"onnxruntime {onnxruntime.__version__}, onnx {onnx.__version__}")


# ------------------------------------------------------------------ whole encoder -----------

def _geometry(geometry) -> dict:
    if isinstance(geometry, dict):
        return dict(geometry)
    try:
        return dict(GEOMETRIES[geometry])
    except KeyError:
        raise ValueError(f"unknown geometry {geometry!r}; known: {sorted(GEOMETRIES)}") from None


def build_encoder(geometry="demo", num_layers: int | None = None, seed: int = 0,
                  input_size: int | None = None):
    """A randomly initialised (seeded) SpeechBrain conformer ``TransformerASR`` in eval mode.

    ``geometry`` is a :data:`GEOMETRIES` name or such a dict; ``num_layers`` and
    ``input_size`` override its values (fewer layers keep tests fast). The global RNG is left
    as it was.
    """
    from speechbrain.lobes.models.transformer.TransformerASR import TransformerASR

    g = _geometry(geometry)
    if num_layers is not None:
        g["num_encoder_layers"] = num_layers
    if input_size is not None:
        g["input_size"] = input_size
    act = g.pop("activation", "GELU")
    if isinstance(act, str):
        act = getattr(nn, act)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TransformerASR(tgt_vocab=32, activation=act, **g)
    return model.eval()


def example_input(geometry="demo", frames: int = 16, batch: int = 1, seed: int = 0,
                  input_size: int | None = None) -> torch.Tensor:
    """A seeded ``(batch, frames, input_size)`` float32 input for the geometry."""
    size = input_size or _geometry(geometry)["input_size"]
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, frames, size, generator=gen)


class EncoderWrapper(nn.Module):
    """``forward(x) = model.encode(x, None)``; ``x`` is ``(batch, frames, input_size)``."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.encode(x, None)


def export_onnx(module: nn.Module, example: torch.Tensor, path, opset: int = 17):
    """Export ``module(example)`` to ONNX at ``path`` with dynamic batch and time axes.

    TorchScript exporter (``dynamo=False``); input ``"x"``, output ``"y"``. One file runs at
    any number of frames: the conformer's relative positional encoding is rebuilt from the
    input's traced shape (``Shape``/``Range``/``Sin``/``Cos`` nodes), not baked in. Returns
    ``path``.
    """
    from ..packed.onnx_export import torch_export
    return torch_export(module, example, path, opset=opset)



class OrtModel:
    """A one-input onnxruntime model as a callable: ``model(x) -> numpy.ndarray``.

    ``x`` is a float32 numpy array or CPU tensor (made C-contiguous float32 if it is not; a
    contiguous tensor is passed without a copy). Returns the first output.
    """

    def __init__(self, model, threads: int = 1):
        import onnxruntime as ort

        self.session = ort_session(model, threads)
        self.threads = threads
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [self.session.get_outputs()[0].name]
        self._fast = getattr(self.session, "_sess", None)  # the C++ session: no Python checks
        self._run_options = ort.RunOptions()

    def __call__(self, x):
        if isinstance(x, torch.Tensor):
            x = x.detach().numpy()
        if x.dtype != np.float32 or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, dtype=np.float32)
        feeds = {self.input_name: x}
        if self._fast is not None:
            return self._fast.run(self.output_names, feeds, self._run_options)[0]
        return self.session.run(self.output_names, feeds)[0]


@contextlib.contextmanager
def _quiet_quantizer():
    """onnxruntime.quantization logs through the root logger ("consider pre-processing",
    "inference failed ... to quantize" for integer tensors); keep it quiet here."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def ort_int8(path_in, path_out, per_channel: bool = False, op_types=("MatMul",)):
    """Write the onnxruntime dynamic int8 twin of ONNX model ``path_in`` to ``path_out``.

    ``quantize_dynamic`` with QInt8 weights (symmetric, per tensor unless ``per_channel``),
    uint8 per-call activations, on ``op_types`` (MatMul only by default: see the module
    docstring for why not Conv). ``path_in`` may also be an ``onnx.ModelProto``. Returns
    ``path_out``.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if isinstance(path_in, os.PathLike):
        path_in = os.fspath(path_in)
    with _quiet_quantizer():
        quantize_dynamic(path_in, os.fspath(path_out), op_types_to_quantize=list(op_types),
                         per_channel=per_channel, reduce_range=False,
                         weight_type=QuantType.QInt8)
    return path_out


def torch_dynamic_int8(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with every ``nn.Linear`` made torch dynamic int8 (qint8 weights).

    ``torch.ao.quantization.quantize_dynamic``; its deprecation warning is silenced here.
    Parameters used outside an ``nn.Linear`` (``RelPosMHAXL.in_proj_weight``) stay fp32.
    """
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(copy.deepcopy(module).eval(), {nn.Linear}, dtype=torch.qint8)


def op_counts(path) -> dict:
    """``{op_type: count}`` of an ONNX file or model (to see what quantization produced)."""
    import onnx

    model = path if isinstance(path, onnx.ModelProto) else onnx.load(os.fspath(path))
    counts = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def encoder_baselines(geometry="demo", workdir=None, threads: int = 1,
                      num_layers: int | None = None, seed: int = 0,
                      per_channel: bool = False) -> dict:
    """The four whole-encoder baselines of one fp32 encoder, as callables ``f(x)``.

    Keys ``"torch-fp32"``, ``"torch-int8"`` (return tensors; run under ``inference_mode``),
    ``"ort-fp32"``, ``"ort-int8"`` (return numpy arrays), plus ``"module"`` (the fp32
    ``EncoderWrapper``) and ``"onnx_fp32"`` / ``"onnx_int8"`` (the file paths, in ``workdir``,
    a new temporary folder if None). ``threads`` sizes the onnxruntime sessions only.
    """
    if workdir is None:
        workdir = tempfile.mkdtemp(prefix="denseshift-baselines-")
    os.makedirs(workdir, exist_ok=True)
    wrapper = EncoderWrapper(build_encoder(geometry, num_layers=num_layers, seed=seed)).eval()
    name = geometry if isinstance(geometry, str) else "encoder"
    fp32_path = os.path.join(workdir, f"{name}.onnx")
    int8_path = os.path.join(workdir, f"{name}.int8.onnx")
    export_onnx(wrapper, example_input(geometry, 16), fp32_path)
    ort_int8(fp32_path, int8_path, per_channel=per_channel)
    q = torch_dynamic_int8(wrapper)

    def _torch(m):
        def call(x):
            with torch.inference_mode():
                return m(torch.as_tensor(x))
        return call

    return {"torch-fp32": _torch(wrapper), "torch-int8": _torch(q),
            "ort-fp32": OrtModel(fp32_path, threads), "ort-int8": OrtModel(int8_path, threads),
            "module": wrapper, "onnx_fp32": fp32_path, "onnx_int8": int8_path}


# ------------------------------------------------------------------ single layers -----------

def _np32(a) -> np.ndarray | None:
    if a is None:
        return None
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.ascontiguousarray(a, dtype=np.float32)


def linear_onnx(weight, bias=None, opset: int = 17):
    """A one-node ONNX model ``y = x @ weight.T (+ bias)``: input ``"x"`` ``(M, in)``, output
    ``"y"`` ``(M, out)``, ``M`` dynamic; weight stored transposed ``(in, out)`` as MatMul wants.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = _np32(weight)
    out_f, in_f = w.shape
    inits = [numpy_helper.from_array(np.ascontiguousarray(w.T), "wt")]
    nodes = [helper.make_node("MatMul", ["x", "wt"], ["y" if bias is None else "xw"])]
    if bias is not None:
        b = _np32(bias).reshape(out_f)
        inits.append(numpy_helper.from_array(b, "b"))
        nodes.append(helper.make_node("Add", ["xw", "b"], ["y"]))
    graph = helper.make_graph(
        nodes, "linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["M", in_f])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["M", out_f])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="denseshift_speech.benchmarks")
    model.ir_version = 8  # readable by any onnxruntime >= 1.10
    onnx.checker.check_model(model)
    return model


def ort_linear(weight, bias=None, threads: int = 1) -> OrtModel:
    """onnxruntime fp32 linear layer: ``f(x (M, in)) -> numpy (M, out)``."""
    return OrtModel(linear_onnx(weight, bias).SerializeToString(), threads)


def ort_linear_int8(weight, bias=None, threads: int = 1, per_channel: bool = False) -> OrtModel:
    """The ``quantize_dynamic`` int8 twin of :func:`ort_linear` (same settings as
    :func:`ort_int8`), built in a temporary folder and loaded from bytes."""
    with tempfile.TemporaryDirectory(prefix="denseshift-linear-") as d:
        path = os.path.join(d, "linear.int8.onnx")
        ort_int8(linear_onnx(weight, bias), path, per_channel=per_channel)
        with open(path, "rb") as f:
            data = f.read()
    return OrtModel(data, threads)


def torch_linear_fp32(weight, bias=None) -> Callable:
    """``F.linear`` with the given weights: ``f(x (M, in)) -> tensor (M, out)``."""
    w = torch.as_tensor(_np32(weight))
    b = None if bias is None else torch.as_tensor(_np32(bias))

    def call(x):
        return F.linear(torch.as_tensor(x), w, b)
    return call


def torch_linear_int8(weight, bias=None) -> Callable:
    """torch dynamic int8 linear layer: ``f(x (M, in)) -> tensor (M, out)``.

    Made by :func:`torch_dynamic_int8` on an ``nn.Linear``; the callable calls
    ``torch.ops.quantized.linear_dynamic`` with that module's packed weights and
    ``reduce_range``, i.e. exactly what its ``forward`` does, without the module call.
    """
    w = torch.as_tensor(_np32(weight))
    lin = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
    with torch.no_grad():
        lin.weight.copy_(w)
        if bias is not None:
            lin.bias.copy_(torch.as_tensor(_np32(bias)))
    q = torch_dynamic_int8(nn.Sequential(lin))[0]
    packed = q._packed_params._packed_params
    reduce_range = not (q.version is None or q.version < 4)  # as DynamicQuantizedLinear.forward
    op = torch.ops.quantized.linear_dynamic

    def call(x):
        return op(torch.as_tensor(x), packed, reduce_range)
    call.module = q
    return call


def layer_baselines(weight, bias=None, threads: int = 1, per_channel: bool = False) -> dict:
    """The four single-layer baselines: ``{"torch-fp32", "torch-int8", "ort-fp32",
    "ort-int8"}`` -> callable on a float32 ``(M, in)`` tensor or array (torch ones return
    tensors, onnxruntime ones numpy arrays)."""
    return {"torch-fp32": torch_linear_fp32(weight, bias),
            "torch-int8": torch_linear_int8(weight, bias),
            "ort-fp32": ort_linear(weight, bias, threads),
            "ort-int8": ort_linear_int8(weight, bias, threads, per_channel)}

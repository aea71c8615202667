"""Packed inference modules: :class:`PackedLinear` and :class:`PackedConv1d` run the fused
shift kernel (:mod:`denseshift_speech.kernels`) straight from packed b-bit codes
(:mod:`denseshift_speech.kernels.layout`) and one float32 scale per output channel.

Packed modules are for inference (no autograd through the kernel).  ``pack_``
(:mod:`.pack`) creates them from a DenseShift-parametrized model; ``load_packed``
(:mod:`.fileformat`) from a packed file.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import kernels
from ..core import quant
from ..kernels import layout

# Deployment paths of packed modules (docs/METHOD.md, "Deployment"):
#   int8  - activations quantized per row to int8, codes decoded to int8 in registers,
#           integer dot products (VNNI); the tiled run-time layout
#   exact - codes decoded to float +-2^e in registers, IEEE products, fp32 sums; tiled
#   shift - the paper's integer-add path on the packed file layout (bits(x) + (e << 23))
# Layers of more than 4 bits (no tiled layout) run the file-layout kernel on every path.
PATHS = ("int8", "exact", "shift")
DEFAULT_PATH = "int8"


#: Moves whenever a packed module's kernel path, ISA or tiled weights change (any module):
#: the fused layers (:mod:`.fused`) keep their prepared op arguments until it moves.
_RUN_STATE = [0]
_RUN_ATTRS = frozenset(("path", "isa", "_tiled_cache"))


def run_state() -> int:
    """A number that changes whenever any packed module's path, ISA or tiled weights do."""
    return _RUN_STATE[0]


class KeptPlan:
    """What a fused network (a conformer layer, an x-vector network) keeps between calls:
    the (path, isa) of its packed layers, its op's flat arguments and their native plan
    (``kernels._C.<PLAN>``), each rebuilt when :func:`run_state` moves.  Subclasses set
    ``PLAN``, ``packed`` (their packed modules) and ``_build_args()`` (the op's arguments
    in the plan constructor's order)."""

    PLAN = ""

    def _init_kept(self):
        self._args = self._args_key = None
        self._plan = self._plan_key = None
        self._path = self._path_state = None

    def path(self):
        """``(path, isa)`` of the packed layers, or None when the op cannot run them."""
        state = run_state()
        if self._path_state != state:
            self._path = self._find_path()
            self._path_state = state
        return self._path

    def _find_path(self):
        paths = {m.path for m in self.packed}
        isas = {m.isa for m in self.packed}
        if len(paths) > 1 or len(isas) > 1 or "shift" in paths:
            return None
        if any(m.bits > layout.TILE_MAX_BITS for m in self.packed):
            return None
        return (paths.pop() if paths else "exact"), (isas.pop() if isas else "auto")

    def _extra_key(self) -> tuple:
        """What else makes kept arguments and plan stale (besides ``run_state``, path and ISA)."""
        return ()

    def args(self):
        """The op's flat arguments (rebuilt when a repack -- reload, ``.to`` -- gives a
        packed module new tiles)."""
        if self._args is None or self._args_key != (run_state(), self._extra_key()):
            self._args = self._build_args()
            self._args_key = (run_state(), self._extra_key())  # after the repacks it made
        return self._args

    def plan(self, path, isa):
        """The native plan of :meth:`args` on ``path`` / ``isa``."""
        key = (run_state(), path, isa, self._extra_key())
        if self._plan is None or key != self._plan_key:
            self._plan = getattr(kernels._C, self.PLAN)(*self.args(), path, isa)
            self._plan_key = (run_state(), path, isa, self._extra_key())  # after repacks
        return self._plan

    def __getstate__(self):  # copies and pickles rebuild the native plan
        state = dict(self.__dict__)
        state["_plan"] = state["_plan_key"] = None
        return state


def check_path(path: str) -> str:
    if path not in PATHS:
        raise ValueError(f"kernel path must be one of {', '.join(PATHS)}; got {path!r}")
    return path


class _PackedBase(nn.Module):
    def __setattr__(self, name, value):
        if name in _RUN_ATTRS:
            _RUN_STATE[0] += 1
        super().__setattr__(name, value)

    def _init_storage(self, rows: int, k: int, bits: int, bias: bool):
        self.bits = quant.check_bits(bits)
        self.register_buffer("packed", torch.zeros(rows, layout.row_bytes(k, bits), dtype=torch.uint8))
        self.register_buffer("alpha", torch.ones(rows))
        if bias:
            self.bias = nn.Parameter(torch.zeros(rows), requires_grad=False)
        else:
            self.register_parameter("bias", None)
        self.isa = "auto"
        self.path = DEFAULT_PATH
        self.ds_config = {}
        self._tiled_cache = None  # (tiles, row_sums): built from `packed` on first use

    def _tiled(self):
        """The tiled run-time layout of ``packed`` (repacked once, then cached)."""
        if self._tiled_cache is None or self._tiled_cache[0].device != self.packed.device:
            k = self.packed_k
            self._tiled_cache = torch.ops.denseshift.repack(self.packed, self.bits, k)
        return self._tiled_cache

    def _apply(self, fn, *args, **kwargs):
        self._tiled_cache = None
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, *args, **kwargs):
        self._tiled_cache = None
        return super()._load_from_state_dict(*args, **kwargs)

    def _linear_op(self, x):
        """``alpha * (x @ Q^T) + bias`` on this module's path (x float32, CPU)."""
        if self.path == "shift" or self.bits > layout.TILE_MAX_BITS:
            method = "add" if self.path == "shift" else "auto"
            return torch.ops.denseshift.linear(x, self.packed, self.alpha, self.bias, self.bits,
                                               self.packed_k, self.isa, method)
        tiles, sums = self._tiled()
        return torch.ops.denseshift.linear_tiled(x, tiles, sums, self.alpha, self.bias, self.bits,
                                                 self.packed_k, self.path, self.isa)

    def set_codes(self, codes: torch.Tensor, alpha: torch.Tensor):
        packed, alpha = layout.pack_weight(codes, alpha, self.bits)
        if packed.shape != self.packed.shape:
            raise ValueError(f"codes of shape {tuple(codes.shape)} do not fit {self}")
        self.packed.copy_(packed)
        self.alpha.copy_(alpha)
        self._tiled_cache = None
        return self

    def dequantized_weight(self) -> torch.Tensor:
        """The dense float32 weight ``alpha * s * 2**e`` (decoded on each call)."""
        return layout.decode_packed(self.packed, self.alpha, self.bits, self.weight_shape)

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

    @property
    def packed_k(self):
        return self.in_features

    def forward(self, x):
        dtype = x.dtype
        if x.device.type != "cpu":  # the reference handles any device
            return kernels.reference.linear(x.float(), self.packed.to(x.device), self.alpha.to(x.device),
                                            None if self.bias is None else self.bias.to(x.device),
                                            self.bits, self.in_features).to(dtype)
        y = self._linear_op(x.float())
        return y if dtype == torch.float32 else y.to(dtype)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bits={self.bits}, bias={self.bias is not None}, path={self.path}")


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

    @property
    def packed_k(self):
        return self.in_channels // self.groups * self.kernel_size

    def _apply(self, fn, *args, **kwargs):
        self._dense = None
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, *args, **kwargs):
        self._dense = None
        return super()._load_from_state_dict(*args, **kwargs)

    def _linear(self, x2):
        return self._linear_op(x2)

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
                                                      self.dilation, self.isa,
                                                      "add" if self.path == "shift" else "fma")
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
                f"groups={self.groups}, bits={self.bits}, mode={self.mode}, path={self.path}")

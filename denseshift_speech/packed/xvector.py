"""One op call per keyword-spotter window: :func:`fuse_xvector_` makes a packed SpeechBrain
x-vector network (``Xvector`` TDNN + ``Classifier``) run ``torch.ops.denseshift.xvector``.

Run module by module, one window of the packed spotter issues about sixty framework
calls (SpeechBrain's transposes and paddings, the unfold of every dilated conv, one kernel
call per packed layer, batch norms, the statistics pooling) which cost far more than its
5 M multiply-adds.  The fused op runs the same network in C++
(kernels/csrc/torch/ops_xvector.cpp): each TDNN conv as a linear over the frames it reads
(SpeechBrain's ``same`` padding in its padding mode, reflect by default), LeakyReLU,
batch norm in eval mode as a per-channel affine, the statistics pooling, the linears
and the log-softmax; packed layers on the tiled kernels of their default path, float
layers (``keep_first`` / ``keep_last``) through ATen's own conv / linear.

On the int8 path the output is the module path's bit for bit: the packed layers quantize
the same rows (a conv's rows hold the same taps; their codes are reordered tap-major
here once, which leaves integer dot products unchanged), the float layers, the mean and
the log-softmax are the same ATen calls on the same layouts, and the batch norm, the
LeakyReLU and the standard deviation (Welford in double) repeat torch's CPU arithmetic
(:func:`batch_norm_fma` and :func:`mean_lanes` check once what this torch build does).
The statistics pooling's noise is SpeechBrain's own (``pool._get_gauss_noise``, called as
the module calls it), so :func:`~denseshift_speech.streaming.kws.deterministic_pooling`
applies unchanged.  On the exact path the tap-major order changes the float summation
order of the packed convs (agreement within float tolerance, not bits).

The modules keep their parameters and state-dict keys: only their classes change, the
embedding model to :class:`FusedXvector` and the classifier to :class:`FusedClassifier`.
``classifier(embedding_model(feats))`` then makes one op call: the embedding model runs
the whole network and returns the embedding (the module path's, bit for bit), and the
classifier, handed that very tensor unchanged, returns the log-probabilities the op
computed with it.  Forward hooks of the packed layers the op ran (call counters such as
``streaming.run.count_packed_calls``) are called after it with no input and no output:
their activations are never materialized.  Anything else runs the stock SpeechBrain code: training mode,
``lens`` given, gradients, tracing / ONNX export, another device or dtype, the ``shift``
path, layers of more than 4 bits, or modules swapped since (then the structure is checked
again, and :func:`fused_reason` says why a network does not fuse).

The op's arguments are checked and prepared once, into a ``kernels._C.XvectorPlan`` kept
until a packed module's path, ISA or weights change, as the fused conformer layer keeps
its plan (:mod:`.fused`); the plan's run is the op's, bit for bit.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import kernels
from ..kernels import layout
from ..kernels.reference import (XV_CONV, XV_EMIT, XV_LEAKY, XV_LINEAR, XV_LOG_SOFTMAX, XV_NORM,
                                 XV_PAD_MODES, XV_POOL, xv_record)
from .modules import KeptPlan, PackedConv1d, PackedLinear, _PackedBase

try:  # speechbrain is a dependency, but keep packed/ importable without it
    from speechbrain.lobes.models.Xvector import Classifier, Xvector
    from speechbrain.nnet.activations import Softmax as SBSoftmax
    from speechbrain.nnet.CNN import Conv1d as SBConv1d
    from speechbrain.nnet.CNN import get_padding_elem
    from speechbrain.nnet.containers import Sequential as SBSequential
    from speechbrain.nnet.linear import Linear as SBLinear
    from speechbrain.nnet.normalization import BatchNorm1d as SBBatchNorm1d
    from speechbrain.nnet.pooling import StatisticsPooling
except ImportError:  # pragma: no cover
    Xvector = Classifier = None


class NotFusable(Exception):
    """Why a network cannot run the fused op (the message)."""


@functools.lru_cache(maxsize=None)
def batch_norm_fma() -> bool | None:
    """How this torch build computes batch norm in eval mode: ``True`` when ``b - mean * a``
    and ``x * a + b`` are each rounded once (fused multiply-add: the x86 AVX2 / AVX-512 and
    aarch64 builds), ``False`` when twice, ``None`` when neither matches (the fused op is
    then not used)."""
    g = torch.Generator().manual_seed(0)
    c = 64
    mean, var = torch.randn(c, generator=g), torch.rand(c, generator=g) * 4 + 0.01
    w, b = torch.randn(c, generator=g), torch.randn(c, generator=g)
    eps = np.float32(1e-5)
    invstd = np.float32(1) / np.sqrt(var.numpy() + eps)
    a = invstd * w.numpy()

    def fma(p, q, r):  # p * q + r rounded once (exact product in float64, then the sum)
        return (p.astype(np.float64) * q.astype(np.float64) + r.astype(np.float64)).astype(np.float32)

    found = set()
    for shape in ((3, c, 37), (2, c, 1)):
        x = torch.randn(*shape, generator=g) * 3
        y = F.batch_norm(x, mean, var, w, b, False, 0.0, float(eps)).numpy()
        xn, m, bn = x.numpy(), mean.numpy(), b.numpy()
        if np.array_equal(y, fma(xn, a[:, None], fma(-m, a, bn)[:, None])):
            found.add(True)
        elif np.array_equal(y, xn * a[:, None] + (bn - m * a)[:, None]):
            found.add(False)
        else:
            return None
    return found.pop() if len(found) == 1 else None


@functools.lru_cache(maxsize=None)
def mean_lanes() -> int:
    """The vector width (floats) of torch's sum over a contiguous axis on this machine (its
    cascade sum adds vectors of Vectorized<float>::size() floats, 8 or 16 by CPU
    capability), found by comparing the op's emulation with ``Tensor.mean`` over several
    lengths; 0 when none matches (the op then calls ``at::mean`` itself: exact, slower)."""
    if not kernels.native_available():
        return 0
    g = torch.Generator().manual_seed(1)
    probes = []
    for t in (1, 3, 4, 7, 8, 9, 15, 16, 17, 33, 64, 101, 257, 1025, 5000):
        h = (torch.randn(2, 24, t, generator=g) * 3 + 1).transpose(1, 2)  # channel-major frames
        probes.append((h.contiguous(), h.mean(dim=1)))
    for lanes in (8, 16, 4):
        program = [xv_record(XV_POOL, 0, lanes)]
        if all(torch.equal(torch.ops.denseshift.xvector(h, None, [], [], [], [1e-5], program)[1][:, :24],
                           mean) for h, mean in probes):
            return lanes
    return 0


@functools.lru_cache(maxsize=None)
def conv_as_addmm(cin: int, cout: int, k: int, bias: bool) -> bool:
    """Whether this torch computes a float Conv1d of one sequence (stride 1, no dilation,
    C_in x padded frames <= 20480, where it picks its im2col + gemm convolution) exactly as
    ``addmm(bias, W, im2col(x))``: the same gemm call, without the convolution's
    per-call overhead (about 10 us).  The op then takes that route for such calls."""
    g = torch.Generator().manual_seed(2)
    w = torch.randn(cout, cin, k, generator=g)
    b = torch.randn(cout, generator=g) if bias else None
    for frames in (101, 9):
        x = torch.randn(1, cin, frames + k - 1, generator=g)
        cols = x[0].unfold(1, k, 1).permute(0, 2, 1).reshape(cin * k, frames)  # (c, tap) rows
        y = torch.mm(w.reshape(cout, -1), cols) if b is None else \
            torch.addmm(b[:, None].expand(cout, frames), w.reshape(cout, -1), cols)
        if not torch.equal(y, F.conv1d(x, w, b)[0]):
            return False
    return True


# ------------------------------------------------------------------ structure -----

def _leaves(module):
    """(parent, name, layer) of the layers a SpeechBrain Sequential runs, in order (nested
    Sequentials flattened)."""
    for name, child in module.items():
        if isinstance(child, SBSequential):
            yield from _leaves(child)
        else:
            yield module, name, child


class _Slot:
    """A conv or linear of the network: packed (the tiled kernels) or float (ATen)."""

    def __init__(self, parent, name, module, conv_taps: int = 0):
        self.parent, self.name, self.module = parent, name, module
        self.taps = conv_taps           # > 1: a packed conv whose codes go tap-major
        self.packed = isinstance(module, _PackedBase)
        self._source = None
        self._tiles = None

    def tiled(self):
        m = self.module
        tiles = m._tiled()
        if self.taps <= 1:
            return tiles
        if self._source is not tiles[0]:  # repacked (reload, .to, set_codes): redo once
            n, c, k = m.out_channels, m.in_channels, m.kernel_size
            codes = layout.unpack_codes(m.packed, m.bits, c * k).reshape(n, c, k)
            codes = codes.transpose(1, 2).reshape(n, k * c).contiguous()
            self._tiles = torch.ops.denseshift.repack(layout.pack_codes(codes, m.bits), m.bits, k * c)
            self._source = tiles[0]
        return self._tiles

    def args(self):
        m = self.module
        if self.packed:
            tiles, sums = self.tiled()
            bias = None if m.bias is None else m.bias.detach()
            return [tiles, sums, m.alpha, bias, None], [m.bits, m.packed_k]
        w = m.weight.detach()
        bias = None if m.bias is None else m.bias.detach()
        return [None, None, None, bias, w], [0, int(w[0].numel())]


def _conv_record(block, slots):
    if block.skip_transpose or getattr(block, "unsqueeze", False):
        raise NotFusable("a Conv1d with skip_transpose or 2-D input")
    inner = block.conv
    k, d, stride = int(block.kernel_size), int(block.dilation), int(block.stride)
    if isinstance(inner, PackedConv1d):
        ok = (inner.groups == 1 and inner.stride == 1 and inner.padding == 0
              and inner.kernel_size == k and inner.dilation == d)
    elif type(inner) is nn.Conv1d:
        ok = (inner.groups == 1 and inner.stride == (1,) and inner.padding == (0,)
              and inner.padding_mode == "zeros" and inner.kernel_size == (k,)
              and inner.dilation == (d,))
    else:
        raise NotFusable(f"a Conv1d wrapping {type(inner).__name__}")
    if not ok or stride != 1:
        raise NotFusable("a Conv1d that is grouped, strided or pads by itself")
    if block.padding == "same":
        left, right = get_padding_elem(block.in_channels, stride, k, d)
        if left != right:
            raise NotFusable("asymmetric same padding")
        if block.padding_mode not in XV_PAD_MODES:
            raise NotFusable(f"padding mode {block.padding_mode!r}")
        pad, mode = int(left), XV_PAD_MODES.index(block.padding_mode)
    elif block.padding == "valid":
        pad, mode = 0, 0
    else:
        raise NotFusable(f"Conv1d padding {block.padding!r}")
    packed = isinstance(inner, PackedConv1d)
    slots.append(_Slot(block, "conv", inner, k if packed else 0))
    gemm = not packed and conv_as_addmm(inner.in_channels, inner.out_channels, k, inner.bias is not None)
    return [XV_CONV, len(slots) - 1, k, d, pad, mode, int(gemm)]


def _linear_record(block, slots):
    if getattr(block, "max_norm", None) is not None:
        raise NotFusable("a Linear with max_norm")
    inner = block.w
    if not (isinstance(inner, PackedLinear) or type(inner) is nn.Linear):
        raise NotFusable(f"a Linear wrapping {type(inner).__name__}")
    slots.append(_Slot(block, "w", inner))
    return [XV_LINEAR, len(slots) - 1, 0, 0, 0, 0, 0]


class XvectorSpec(KeptPlan):
    """The ``denseshift::xvector`` program and arguments of one embedding model +
    classifier (raises :class:`NotFusable` when they are not a network it runs)."""

    PLAN = "XvectorPlan"

    def __init__(self, embedding_model, classifier):
        if Xvector is None or not isinstance(embedding_model, Xvector):
            raise NotFusable("the embedding model is not a speechbrain Xvector")
        if not isinstance(classifier, Classifier):
            raise NotFusable("the classifier is not a speechbrain Xvector Classifier")
        fma = batch_norm_fma()
        if fma is None:
            raise NotFusable("this torch build's batch norm rounds neither as a fused "
                             "multiply-add nor as a multiply then an add")
        self.embedding_model, self.classifier = embedding_model, classifier
        self.slots, self.norms, self.floats = [], [], []
        program, self.pool = [], None

        def number(v):
            self.floats.append(float(v))
            return len(self.floats) - 1

        def layer(m, frames):
            if isinstance(m, nn.LeakyReLU):
                return [XV_LEAKY, number(m.negative_slope), 0, 0, 0, 0, 0]
            if isinstance(m, SBBatchNorm1d):
                bn = m.norm
                if m.combine_batch_time or m.skip_transpose or type(bn) is not nn.BatchNorm1d:
                    raise NotFusable("a BatchNorm1d that combines batch and time or skips the transpose")
                if not bn.track_running_stats or bn.running_mean is None:
                    raise NotFusable("a BatchNorm1d without running statistics")
                self.norms.append(bn)
                return [XV_NORM, len(self.norms) - 1, number(bn.eps), int(fma), 0, 0, 0]
            if frames and isinstance(m, SBConv1d):
                return _conv_record(m, self.slots)
            if not frames and isinstance(m, SBLinear):
                return _linear_record(m, self.slots)
            raise NotFusable(f"{type(m).__name__} {'before' if frames else 'after'} the pooling")

        blocks = embedding_model.blocks
        leaves = list(_leaves(classifier))
        # every layer where it was: a layer replaced since makes the program stale
        self._watch = [(blocks._modules, name, m) for name, m in blocks._modules.items()]
        self._watch += [(parent._modules, name, m) for parent, name, m in leaves]
        for m in blocks:
            if isinstance(m, StatisticsPooling):
                if self.pool is not None or not (m.return_mean and m.return_std):
                    raise NotFusable("a second pooling, or a pooling of the mean or std only")
                self.pool = m
                program.append([XV_POOL, number(m.eps), mean_lanes(), 0, 0, 0, 0])
            else:
                program.append(layer(m, self.pool is None))
        if self.pool is None:
            raise NotFusable("no StatisticsPooling")
        program.append([XV_EMIT, 0, 0, 0, 0, 0, 0])
        for i, (_, _, m) in enumerate(leaves):
            if isinstance(m, SBSoftmax):
                if (i != len(leaves) - 1 or m.act is not F.log_softmax or m.dim != -1
                        or not m.reshape or m.dtype != torch.float32):
                    raise NotFusable("a classifier whose last layer is not a log-softmax over classes")
                program.append([XV_LOG_SOFTMAX, 0, 0, 0, 0, 0, 0])
            else:
                program.append(layer(m, False))
        self.packed = [s.module for s in self.slots if s.packed]
        if not self.packed:
            raise NotFusable("no packed layer")
        if any(m.bits > layout.TILE_MAX_BITS for m in self.packed):
            raise NotFusable(f"a layer of more than {layout.TILE_MAX_BITS} bits")
        self.program = [xv_record(*record) for record in program]
        self.channels = None  # pooled channels: the pooled layer's outputs
        for record in program:
            if record[0] == XV_POOL:
                break
            if record[0] == XV_CONV:
                s = self.slots[record[1]].module
                self.channels = int(s.out_channels)
        if self.channels is None:
            raise NotFusable("no conv before the pooling")
        self._watch += [(s.parent._modules, s.name, s.module) for s in self.slots]
        self.last = None      # (embedding, its version, log-probabilities) of the last run
        self._init_kept()

    def current(self) -> bool:
        """Whether every layer is still the module the program was built from."""
        return all(d.get(name) is m for d, name, m in self._watch)

    def _build_args(self):
        """``(slots, slot_ints, params, floats, program)`` of the op (:meth:`args` keeps them)."""
        slots, ints = [], []
        for s in self.slots:
            t, i = s.args()
            slots += t
            ints += i
        params = []
        for bn in self.norms:
            ones = torch.ones_like(bn.running_mean)
            params += [bn.running_mean, bn.running_var,
                       ones if bn.weight is None else bn.weight.detach(),
                       ones * 0 if bn.bias is None else bn.bias.detach()]
        return slots, ints, params, list(self.floats), list(self.program)

    def run(self, x, path, isa, noise=None):
        """The embedding ``(B, 1, E)`` of frames ``x`` (B, T, F); the log-probabilities go to
        :attr:`last` for the classifier.  ``noise``: the pooling's mean noise ``(B, C)``
        (None: the pooling module draws it, as it would itself)."""
        emb, out = self._call(x, path, isa, noise)
        self.last = (emb, emb._version, out)
        return emb

    def _call(self, x, path, isa, noise):
        if noise is None:
            noise = self.pool._get_gauss_noise((x.shape[0], self.channels), device=x.device)
        if kernels.NATIVE:
            emb, out = self.plan(path, isa).run(x, noise)
        else:
            slots, ints, params, floats, program = self.args()
            emb, out = torch.ops.denseshift.xvector(x, noise, slots, ints, params, floats,
                                                    program, path, isa)
        for m in self.packed:  # the op ran these layers: their forward hooks (call counters)
            if m._forward_hooks:
                for hook in tuple(m._forward_hooks.values()):
                    hook(m, (), None)
        return emb.unsqueeze(1), out.unsqueeze(1)


def middle_noise(pool, shape, device="cpu") -> torch.Tensor:
    """The middle value (5 eps) of the noise SpeechBrain's StatisticsPooling adds to its
    mean on every call (eps to 9 eps): what the spotter, the bench and the ONNX export use
    so that one window gives one answer (streaming.kws.deterministic_pooling)."""
    return torch.full(shape, 5 * pool.eps, device=device)


def fused_log_probs(embedding_model, x, deterministic: bool = False):
    """``classifier(embedding_model(x))`` of normalized frames ``x`` in one op call without
    the module calls around it (the same tensor, bit for bit), or None when the pair does
    not run the fused op on ``x``.  ``deterministic``: the pooling's noise at
    :func:`middle_noise` instead of a random draw."""
    if FusedXvector is None or not isinstance(embedding_model, FusedXvector):
        return None
    ready = embedding_model._runnable(x)
    if ready is None:
        return None
    spec, pi = ready
    noise = middle_noise(spec.pool, (x.shape[0], spec.channels), x.device) if deterministic else None
    return spec._call(x, *pi, noise)[1]


def _inference(module, x) -> bool:
    """Whether ``module`` may run the op on ``x`` (tracing covers torch.onnx.export;
    compiling covers dynamo and torch.export)."""
    return not (module.training or not x.is_cpu or x.dtype is not torch.float32 or x.dim() != 3
                or x.shape[0] == 0 or (x.requires_grad and torch.is_grad_enabled())
                or torch.jit.is_tracing() or torch.compiler.is_compiling())


if Xvector is not None:
    class FusedXvector(Xvector):
        """An ``Xvector`` that runs the whole network, its classifier included, in one op."""

        def _spec(self):
            spec = self.__dict__.get("_ds_fused")
            if spec is not None and not spec.current():
                spec = _refuse(self, spec.classifier)
            return spec

        def _runnable(self, x):
            """(spec, (path, isa)) when the op runs the network on frames ``x``, else None."""
            spec = self._spec() if _inference(self, x) else None
            pi = spec.path() if spec is not None else None
            return None if pi is None else (spec, pi)

        def forward(self, x, lens=None):
            ready = self._runnable(x) if lens is None else None
            if ready is None:
                return super().forward(x, lens)
            spec, pi = ready
            return spec.run(x, *pi)

    class FusedClassifier(Classifier):
        """A ``Classifier`` that returns the log-probabilities the fused op computed with the
        embedding it is given (that very tensor, unchanged), else runs its layers."""

        def forward(self, x):
            spec = self.__dict__.get("_ds_fused")
            last = None if spec is None else spec.last
            if last is not None and x is last[0] and x._version == last[1]:
                spec.last = None
                return last[2]
            return super().forward(x)
else:  # pragma: no cover
    FusedXvector = FusedClassifier = None


def _refuse(embedding_model, classifier):
    """Rebuild the spec of a fused pair after a module swap (None when it no longer fuses)."""
    try:
        spec = XvectorSpec(embedding_model, classifier)
        why = None
    except NotFusable as err:
        spec, why = None, str(err)
    embedding_model._ds_fused = spec
    embedding_model._ds_fused_reason = why
    if isinstance(classifier, FusedClassifier):
        classifier._ds_fused = spec
    return spec


def fusable(embedding_model, classifier) -> str | None:
    """None when the pair can run the fused op, else the reason it cannot."""
    try:
        XvectorSpec(embedding_model, classifier)
    except NotFusable as err:
        return str(err)
    return None


def fuse_xvector_(embedding_model: nn.Module, classifier: nn.Module) -> str | None:
    """Make the pair run ``denseshift::xvector`` (in place: class swaps, state-dict keys
    unchanged).  Returns None when fused, else why not (the modules are left as they were)."""
    why = fusable(embedding_model, classifier)
    if why is not None:
        return why
    embedding_model.__class__ = FusedXvector
    classifier.__class__ = FusedClassifier
    _refuse(embedding_model, classifier)
    return None


def unfuse_xvector_(embedding_model: nn.Module, classifier: nn.Module) -> bool:
    """Give a fused pair its stock SpeechBrain classes back; True when it was fused."""
    fused = FusedXvector is not None and isinstance(embedding_model, FusedXvector)
    for m, cls in ((embedding_model, Xvector), (classifier, Classifier)):
        if FusedXvector is not None and isinstance(m, (FusedXvector, FusedClassifier)):
            m.__class__ = cls
            for key in ("_ds_fused", "_ds_fused_reason"):
                m.__dict__.pop(key, None)
    return fused


def fused_reason(embedding_model, x_example=None) -> str | None:
    """None when ``embedding_model`` runs the fused op (on frames like ``x_example``, if
    given), else why it runs module by module."""
    if FusedXvector is None or not isinstance(embedding_model, FusedXvector):
        return "not fused (fuse_xvector_ was not applied, or the network does not fuse)"
    spec = embedding_model._spec()
    if spec is None:
        return embedding_model.__dict__.get("_ds_fused_reason") or "no longer fusable"
    if spec.path() is None:
        return "packed layers on the shift path, or on different paths / isas"
    if x_example is not None and not _inference(embedding_model, x_example):
        return "training mode, gradients, tracing, or frames not float32 (B, T, F) on the CPU"
    return None

"""One op call per conformer layer: :func:`fuse_` makes every SpeechBrain
``ConformerEncoderLayer`` of a packed model run ``torch.ops.denseshift.conformer_layer``.

A packed conformer layer run module by module issues about 300 framework calls
(layer norms, views, transposes, the attention's dozen small matmuls, one kernel call
per linear), which cost more than the arithmetic at streaming sizes.  The fused op does
the same math in C++ (kernels/csrc/torch/ops_fused.cpp) with the linears on the packed
kernels.  What is fused, per layer: both feed-forward blocks, the RelPosMHAXL attention
(its in-projection, decoded to a dense float weight by ``pack_``, runs from its packed
codes here), and the convolution module.

The layer keeps its modules, parameters and state-dict keys: only its class changes, to
:class:`FusedConformerLayer`, whose ``forward`` / ``forward_streaming`` call the op
when they can and the stock SpeechBrain code otherwise (training mode, attention or
causal masks, dynamic-chunk training, the shift path, layers of more than 4 bits, or
a configuration the op does not cover; :func:`fusable` says why).

Each layer's op arguments are checked and prepared once, into a
``kernels._C.ConformerLayerPlan`` (the tiled layouts, contiguous parameters, the resolved
ISA), kept until a packed module's path, ISA or weights change (``modules.run_state``):
turning the op's 61 tensor arguments into C++ ones on every call took about 10 us a
layer, a sixth of a layer's whole time for a 640 ms chunk on two threads.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import kernels
from .modules import KeptPlan, PackedConv1d, PackedLinear, _PackedBase

try:  # speechbrain is a dependency, but keep packed/ importable without it
    from speechbrain.lobes.models.transformer.Conformer import ConformerEncoderLayer
    from speechbrain.nnet.activations import Swish
    from speechbrain.nnet.attention import RelPosEncXL, RelPosMHAXL
except ImportError:  # pragma: no cover
    ConformerEncoderLayer = RelPosMHAXL = RelPosEncXL = Swish = None

ALL_STAGES = "ffn1,attention,conv,ffn2"


def _swish(m) -> bool:
    return (Swish is not None and isinstance(m, Swish) and float(getattr(m, "beta", 1.0)) == 1.0) \
        or isinstance(m, nn.SiLU)


def _layer_norm(m):
    m = getattr(m, "norm", m)  # speechbrain.nnet.normalization.LayerNorm wraps nn.LayerNorm
    if isinstance(m, nn.LayerNorm) and m.elementwise_affine and len(m.normalized_shape) == 1:
        return m
    return None


def _linear_ok(m) -> bool:
    if isinstance(m, PackedLinear):
        return True
    if isinstance(m, PackedConv1d):
        return m.mode == "pointwise"
    if isinstance(m, nn.Conv1d):
        return m.kernel_size == (1,) and m.groups == 1 and m.stride == (1,) and m.padding in ((0,), "valid")
    return isinstance(m, nn.Linear)


def fusable(layer) -> str | None:
    """None when ``layer`` can run the fused op, else the reason it cannot."""
    if ConformerEncoderLayer is None or not isinstance(layer, ConformerEncoderLayer):
        return "not a speechbrain ConformerEncoderLayer"
    att = layer.mha_layer
    if not isinstance(att, RelPosMHAXL):
        return f"attention is {type(att).__name__}, not RelPosMHAXL"
    if not att._qkv_same_embed_dim or att.vbias is not None or att.mask_pos_future:
        return "RelPosMHAXL with separate q/k/v, value bias or future masking"
    if att.vdim != att.embed_dim:
        return "RelPosMHAXL with vdim != embed_dim"
    conv = layer.convolution_module
    dw = conv.conv
    if not (_linear_ok(conv.bottleneck[0]) and isinstance(conv.bottleneck[1], nn.GLU)
            and conv.bottleneck[1].dim in (1, -2)):
        return "convolution module bottleneck is not pointwise conv + GLU"
    if not isinstance(dw, (nn.Conv1d, PackedConv1d)):
        return "depthwise conv of an unknown type"
    groups = dw.groups
    cin = dw.in_channels
    if groups != cin or (dw.stride if isinstance(dw, PackedConv1d) else dw.stride[0]) != 1:
        return "convolution is not a stride-1 depthwise conv"
    after = conv.after_conv
    if not (_layer_norm(after[0]) and _swish(after[1]) and _linear_ok(after[2])):
        return "after_conv is not LayerNorm + Swish + Linear"
    for ffn in (layer.ffn_module1, layer.ffn_module2):
        inner = ffn[1].ffn
        if not (_layer_norm(ffn[0]) and _linear_ok(inner[0]) and _swish(inner[1]) and _linear_ok(inner[3])):
            return "feed-forward block is not LayerNorm + Linear + Swish + Linear"
    for n in (layer.norm1, layer.norm2, conv.layer_norm):
        if not _layer_norm(n):
            return "a layer norm of an unknown type"
    return None


class _DensePacked:
    """The packed codes kept beside a dense-decoded weight (``pack_`` of in_proj_weight)."""

    def __init__(self, module, pname):
        self.module, self.pname = module, pname
        self.bits = int(module._ds_dense[pname]["bits"])
        self.k = int(module._ds_dense[pname]["shape"][1])
        self._tiled_cache = None
        self._source = None

    def _tiled(self):
        packed = getattr(self.module, f"{self.pname}_ds_packed")
        if self._tiled_cache is None or self._source is not packed:
            self._tiled_cache = torch.ops.denseshift.repack(packed, self.bits, self.k)
            self._source = packed
        return self._tiled_cache

    @property
    def alpha(self):
        return getattr(self.module, f"{self.pname}_ds_alpha")


class LayerSpec(KeptPlan):
    """The flat argument lists of ``denseshift::conformer_layer`` for one layer."""

    PLAN = "ConformerLayerPlan"

    def __init__(self, layer):
        att, conv = layer.mha_layer, layer.convolution_module
        f1, f2 = layer.ffn_module1[1].ffn, layer.ffn_module2[1].ffn
        inproj = _DensePacked(att, "in_proj_weight") if "in_proj_weight" in getattr(att, "_ds_dense", {}) else None
        self.layer = layer
        # slot order: kernels/csrc/torch/ops_fused.cpp
        self.linears = [f1[0], f1[3], inproj, att.linear_pos, att.out_proj, conv.bottleneck[0],
                        conv.after_conv[2], f2[0], f2[3]]
        self.norms = [_layer_norm(m) for m in (layer.ffn_module1[0], layer.norm1, conv.layer_norm,
                                                conv.after_conv[0], layer.ffn_module2[0], layer.norm2)]
        self.packed = [m for m in self.linears if isinstance(m, _PackedBase)]
        self.dense = [m for m in self.linears if isinstance(m, _DensePacked)]
        self._init_kept()

    def _slot(self, m, fallback_weight=None):
        if isinstance(m, (_PackedBase, _DensePacked)):
            tiles, sums = m._tiled()
            bias = getattr(m, "bias", None)
            k = m.packed_k if isinstance(m, _PackedBase) else m.k
            return [tiles, sums, m.alpha, None if bias is None else bias.detach(), None], [m.bits, k]
        if m is None:  # attention in-projection left in full precision
            return [None, None, None, None, fallback_weight.detach()], [0, fallback_weight.shape[1]]
        w = m.weight.detach()
        if w.dim() == 3:
            w = w.reshape(w.shape[0], -1)
        return [None, None, None, None if m.bias is None else m.bias.detach(), w], [0, w.shape[1]]

    def _depthwise(self):
        dw = self.layer.convolution_module.conv
        w = dw.dequantized_weight() if isinstance(dw, PackedConv1d) else dw.weight.detach()
        c = w.shape[0]
        bias = dw.bias.detach() if dw.bias is not None else torch.zeros(c)
        return w.reshape(c, -1).t().contiguous().float(), bias.float().contiguous()

    def _build_args(self):
        """``(slots, slot_ints, params, eps, conf)`` of the op (:meth:`args` keeps them)."""
        slots, ints = [], []
        att = self.layer.mha_layer
        for m in self.linears:
            s, i = self._slot(m, att.in_proj_weight)
            slots += s
            ints += i
        params = []
        for n in self.norms:
            params += [n.weight, n.bias]
        dww, dwb = self._depthwise()
        params += [att.pos_bias_u, att.pos_bias_v, dww, dwb]
        conv = self.layer.convolution_module.conv
        pad = conv.padding if isinstance(conv, PackedConv1d) else conv.padding[0]
        dil = conv.dilation if isinstance(conv, PackedConv1d) else conv.dilation[0]
        k = conv.kernel_size if isinstance(conv, PackedConv1d) else conv.kernel_size[0]
        conf = [att.num_heads, k, int(pad), int(dil)]
        eps = [float(n.eps) for n in self.norms]
        return slots, ints, [p.detach() for p in params], eps, conf

    def _extra_key(self):
        # the in-projection's codes are a buffer of the attention module, not of a packed one
        return tuple(id(getattr(m.module, f"{m.pname}_ds_packed")) for m in self.dense)

    def run(self, x, pos_embs, key_padding_mask, stages, path, isa):
        if kernels.NATIVE:
            return self.plan(path, isa).run(x.float(), pos_embs, key_padding_mask, stages)
        slots, ints, params, eps, conf = self.args()
        return torch.ops.denseshift.conformer_layer(x.float(), pos_embs, key_padding_mask, slots, ints,
                                                    params, eps, conf, stages, path, isa)


if ConformerEncoderLayer is not None:
    class FusedConformerLayer(ConformerEncoderLayer):
        """A ``ConformerEncoderLayer`` whose inference forward is one fused op call."""

        def _fused_path(self, x):
            spec = self.__dict__.get("_ds_fused")
            if spec is None or self.training or x.device.type != "cpu" or torch.is_grad_enabled() and x.requires_grad:
                return None
            return spec.path()

        def forward(self, x, src_mask=None, src_key_padding_mask=None, pos_embs=None,
                    dynchunktrain_config=None):
            pi = self._fused_path(x) if src_mask is None and dynchunktrain_config is None else None
            if pi is None or pos_embs is None:
                return super().forward(x, src_mask=src_mask, src_key_padding_mask=src_key_padding_mask,
                                       pos_embs=pos_embs, dynchunktrain_config=dynchunktrain_config)
            kpm = src_key_padding_mask
            if kpm is not None and kpm.dtype != torch.bool:
                kpm = kpm.bool()
            y = self._ds_fused.run(x, pos_embs, kpm, ALL_STAGES, *pi)
            return y.to(x.dtype), None

        def forward_streaming(self, x, context, pos_embs=None):
            pi = self._fused_path(x)
            if pi is None or pos_embs is None:
                return super().forward_streaming(x, context, pos_embs=pos_embs)
            run = self._ds_fused.run
            orig_len = x.shape[-2]
            x = run(x, None, None, "ffn1", *pi)
            if context.mha_left_context is not None:
                x = torch.cat((context.mha_left_context, x), dim=1)
            if context.mha_left_context_size > 0:
                context.mha_left_context = x[..., -context.mha_left_context_size:, :]
            x = run(x, pos_embs, None, "attention", *pi)[..., -orig_len:, :]
            if context.dcconv_left_context is not None:
                x = torch.cat((context.dcconv_left_context, x), dim=1)
            context.dcconv_left_context = x[..., -self.convolution_module.padding:, :]
            x = run(x, None, None, "conv", *pi)[..., -orig_len:, :]
            return run(x, None, None, "ffn2", *pi), None
else:  # pragma: no cover
    FusedConformerLayer = None


if RelPosEncXL is not None:
    class CachedRelPosEncXL(RelPosEncXL):
        """``RelPosEncXL`` that keeps the embeddings of the last few sequence lengths: the
        stock one recomputes 2T-1 sinusoids on every call (about 0.15 ms at T=16, as much
        as a whole conformer layer's attention).  Same values; inference only."""

        CACHE = 8

        def forward(self, x):
            if torch.is_grad_enabled() and self.training:
                return super().forward(x)
            cache = self.__dict__.setdefault("_ds_pe_cache", {})
            key = (x.shape[1], self.inv_freq.device, self.inv_freq.data_ptr(), self.emb_dtype)
            pe = cache.pop(key, None)
            if pe is None:
                pe = super().forward(x)
                while len(cache) >= self.CACHE:
                    cache.pop(next(iter(cache)))
            cache[key] = pe  # most recent last
            return pe
else:  # pragma: no cover
    CachedRelPosEncXL = None


def fuse_(model: nn.Module) -> dict:
    """Make every fusable conformer layer of ``model`` run the fused op (in place).

    Returns ``{"fused": n, "skipped": {layer name: reason}}``.  Weights, state-dict keys
    and outputs (within float tolerance) are unchanged; ``unfuse_`` undoes it.
    """
    fused, skipped = 0, {}
    for name, m in model.named_modules():
        if RelPosEncXL is not None and type(m) is RelPosEncXL:
            m.__class__ = CachedRelPosEncXL
            continue
        if ConformerEncoderLayer is None or not isinstance(m, ConformerEncoderLayer):
            continue
        why = fusable(m)
        if why is not None:
            skipped[name] = why
            continue
        if not isinstance(m, FusedConformerLayer):
            m.__class__ = FusedConformerLayer
        m._ds_fused = LayerSpec(m)
        fused += 1
    return {"fused": fused, "skipped": skipped}


def unfuse_(model: nn.Module) -> int:
    """Give fused layers back their stock SpeechBrain forward."""
    n = 0
    for m in model.modules():
        if CachedRelPosEncXL is not None and type(m) is CachedRelPosEncXL:
            m.__class__ = RelPosEncXL
            m.__dict__.pop("_ds_pe_cache", None)
        if FusedConformerLayer is not None and isinstance(m, FusedConformerLayer):
            m.__class__ = ConformerEncoderLayer
            m.__dict__.pop("_ds_fused", None)
            n += 1
    return n

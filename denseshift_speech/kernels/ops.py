"""The ``denseshift::*`` op schemas: defined once, here; C++ (``_C``) only implements them.

The file-layout ops ``linear`` / ``depthwise_conv1d`` (Python: ``kernels.linear_file_layout``
/ ``depthwise_conv1d_file_layout``) read the packed file layout (:mod:`.layout`) and take
``method`` add (the paper's integer-add shift path), fma or gemm.  The tiled ops:
``repack`` turns the packed rows of one layer into the tiled run-time layout, and
``linear_tiled`` runs it on ``path`` ``int8`` (activations quantized per row, VNNI dot
products) or ``exact`` (float weights decoded in registers, FMA).  Semantics:
:mod:`.reference`.
"""
from __future__ import annotations

import torch

SCHEMAS = {
    "linear": ("linear(Tensor x, Tensor packed, Tensor alpha, Tensor? bias, int bits, "
               "int in_features, str isa='auto', str method='add') -> Tensor"),
    "depthwise_conv1d": ("depthwise_conv1d(Tensor x, Tensor packed, Tensor alpha, Tensor? bias, "
                         "int bits, int kernel_size, int padding, int dilation, str isa='auto', "
                         "str method='add') -> Tensor"),
    "repack": "repack(Tensor packed, int bits, int in_features) -> (Tensor, Tensor)",
    "linear_tiled": ("linear_tiled(Tensor x, Tensor tiles, Tensor row_sums, Tensor alpha, "
                     "Tensor? bias, int bits, int in_features, str path='int8', "
                     "str isa='auto') -> Tensor"),
    # One SpeechBrain conformer encoder layer (or the blocks named in `stages`), see
    # kernels/csrc/torch/ops_fused.cpp and packed/fused.py for the argument layout.
    "conformer_layer": ("conformer_layer(Tensor x, Tensor? pos_embs, Tensor? key_padding_mask, "
                        "Tensor?[] slots, int[] slot_ints, Tensor[] params, float[] eps, "
                        "int[] conf, str stages, str path='int8', str isa='auto') -> Tensor"),
    # A SpeechBrain x-vector network (TDNN, statistics pooling, classifier) as a program of
    # records, see kernels/csrc/torch/ops_xvector.cpp and packed/xvector.py; returns the
    # vectors at the EMIT record (the embedding; (batch, 0) without one) and the output.
    "xvector": ("xvector(Tensor x, Tensor? mean_noise, Tensor?[] slots, int[] slot_ints, "
                "Tensor[] params, float[] floats, int[] program, str path='int8', "
                "str isa='auto') -> (Tensor, Tensor)"),
    # Training: the 2-4-bit DenseShift weight from its latents and its surrogate gradients
    # (core/quant.py, fused_weight; csrc/core/latent_weight.h has the layout and tables).
    "latent_weight": ("latent_weight(Tensor sign_latent, Tensor thermo, Tensor alpha, "
                      "Tensor value) -> (Tensor, Tensor)"),
    "latent_weight_backward": ("latent_weight_backward(Tensor grad, Tensor index, Tensor alpha, "
                               "Tensor grads, Tensor value, bool need_latents, "
                               "bool need_alpha) -> (Tensor, Tensor, Tensor)"),
}
# ops with a reference for every device (the C++ kernel is CPU-only): training runs on GPUs
TRAINING_OPS = ("latent_weight", "latent_weight_backward")

LIBRARY = torch.library.Library("denseshift", "DEF")
for _schema in SCHEMAS.values():
    LIBRARY.define(_schema)


def _check_rows(packed, bits, k, name):
    """The shape half of the kernels' check of packed rows (their codes are data)."""
    from .layout import row_bytes, row_width_error
    torch._check(packed.shape[1] == row_bytes(k, bits),
                 lambda: row_width_error(packed.shape[1], bits, k, name))


def _check_x(x, in_features):
    from .reference import x_features_error
    torch._check(x.shape[-1] == in_features, lambda: x_features_error(x, in_features))


@torch.library.register_fake("denseshift::linear")
def _linear_fake(x, packed, alpha, bias, bits, in_features, isa="auto", method="add"):
    _check_rows(packed, bits, in_features, "in_features")
    _check_x(x, in_features)
    return x.new_empty((*x.shape[:-1], packed.shape[0]))


@torch.library.register_fake("denseshift::depthwise_conv1d")
def _dw_fake(x, packed, alpha, bias, bits, kernel_size, padding, dilation, isa="auto",
             method="add"):
    _check_rows(packed, bits, kernel_size, "kernel_size")
    tout = x.shape[2] + 2 * padding - dilation * (kernel_size - 1)
    return x.new_empty((x.shape[0], x.shape[1], tout))


@torch.library.register_fake("denseshift::repack")
def _repack_fake(packed, bits, in_features):
    from .layout import TILE_HEADER_BYTES, tiled_bytes, tiled_rows
    n = packed.shape[0]
    return (packed.new_empty((TILE_HEADER_BYTES + tiled_bytes(n, in_features),)),
            packed.new_empty((tiled_rows(n),), dtype=torch.int32))


@torch.library.register_fake("denseshift::conformer_layer")
def _conformer_layer_fake(x, pos_embs, key_padding_mask, slots, slot_ints, params, eps, conf,
                          stages, path="int8", isa="auto"):
    return torch.empty_like(x)


@torch.library.register_fake("denseshift::xvector")
def _xvector_fake(x, mean_noise, slots, slot_ints, params, floats, program, path="int8",
                  isa="auto"):
    from .reference import xvector_shapes
    b, t, c = x.shape
    emit, out = xvector_shapes(slots, c, program)
    return x.new_empty((b, emit)), x.new_empty((b, out))


@torch.library.register_fake("denseshift::linear_tiled")
def _linear_tiled_fake(x, tiles, row_sums, alpha, bias, bits, in_features, path="int8",
                       isa="auto"):
    _check_x(x, in_features)
    return x.new_empty((*x.shape[:-1], alpha.shape[0]))


@torch.library.register_fake("denseshift::latent_weight")
def _latent_weight_fake(sign_latent, thermo, alpha, value):
    return torch.empty_like(sign_latent), sign_latent.new_empty(sign_latent.shape, dtype=torch.int16)


@torch.library.register_fake("denseshift::latent_weight_backward")
def _latent_weight_backward_fake(grad, index, alpha, grads, value, need_latents, need_alpha):
    levels = grads.shape[0] - 1
    rows = alpha.shape[0]
    return (grad.new_empty(grad.shape if need_latents else (0,)),
            grad.new_empty((levels, *grad.shape) if need_latents else (0,)),
            grad.new_empty((rows,) if need_alpha else (0,)))

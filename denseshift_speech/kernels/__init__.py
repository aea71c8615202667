"""The fused DenseShift shift kernel: torch custom ops ``torch.ops.denseshift.*``.

Ops (CPU, float32 activations, packed codes as in :mod:`denseshift_speech.packing`)::

    denseshift::linear(Tensor x, Tensor packed, Tensor alpha, Tensor? bias, int bits,
                       int in_features, str isa='auto', str method='add') -> Tensor
        y = alpha * (x @ Q^T) + bias, x (..., in_features) -> y (..., N)
    denseshift::depthwise_conv1d(Tensor x, Tensor packed, Tensor alpha, Tensor? bias,
                       int bits, int kernel_size, int padding, int dilation,
                       str isa='auto', str method='add') -> Tensor
        stride-1 depthwise conv, x (B, C, T) -> (B, C, T + 2*padding - dilation*(k-1))

``method='add'`` is the paper's integer-add path: ``bits(x) + (e << 23)`` with the
sign flipped by adding ``1 << 31`` (== XOR of the sign bit, METHOD.md section 5), then
float additions.  Activations for which that is not the IEEE product (+-0, subnormals,
values whose product would overflow, inf, NaN) are masked out of the SIMD loop and
added back with an IEEE multiplication, so every path returns the IEEE result of
``x * w`` (no flush-to-zero).  ``method='fma'`` decodes codes through a lookup table
into float weights and uses fused multiply-adds.  ``method='gemm'`` (linear only)
decodes tiles of at most ~256 KiB of rows into a cache-resident float buffer and hands
each tile to the BLAS sgemm (never the whole matrix): the fast path for batches.
``method='auto'`` picks ``add`` below 16 rows of x and ``gemm`` from 16 rows on (the
depthwise op treats ``auto`` as ``add`` and ``gemm`` as ``fma``).

``isa``: ``auto`` (the best the CPU has, or ``$DENSESHIFT_ISA`` when set), ``avx512``,
``avx2``, ``scalar``; asking for one the CPU lacks is an error.  Threads: output
channels are split with ``at::parallel_for`` (``torch.set_num_threads`` applies).

The native op lives in ``denseshift_speech._C`` (built by ``pip install``).  When it
cannot be imported, this module warns once and registers the pure-PyTorch reference
(:mod:`.reference`) under the same op names; :data:`NATIVE` tells which is active.
"""
from __future__ import annotations

import warnings

import torch

from . import ops, reference  # ops: the schemas, defined before _C registers kernels

METHODS = ("add", "fma", "gemm")
ALL_METHODS = METHODS + ("auto",)

NATIVE = False
NATIVE_ERROR: str | None = None
_C = None
try:
    from .. import _C  # noqa: F811  (registers torch.ops.denseshift.*)
    NATIVE = True
except ImportError as err:  # build failed or skipped at install time
    NATIVE_ERROR = f"{type(err).__name__}: {err}"
    warnings.warn(
        "denseshift_speech: the native shift kernel (denseshift_speech._C) is not available "
        f"({NATIVE_ERROR}); using the slow pure-PyTorch reference. Reinstall with "
        "`pip install --no-build-isolation -e .` and a C++ compiler to build it.",
        RuntimeWarning, stacklevel=2)
    for _name in ops.SCHEMAS:
        ops.LIBRARY.impl(_name, getattr(reference, _name), "CPU")


def native_available() -> bool:
    """True when the compiled kernel is loaded (else the reference runs)."""
    return NATIVE


def supported_isas() -> list:
    """ISA paths this CPU can run, best first (``['reference']`` without the native op)."""
    return list(_C.supported_isas()) if NATIVE else ["reference"]


def selected_isa(isa: str = "auto") -> str:
    """The path ``isa`` resolves to here (``$DENSESHIFT_ISA`` applies to ``auto``)."""
    return str(_C.selected_isa(isa)) if NATIVE else "reference"


def linear(x, packed, alpha, bias=None, *, bits: int, in_features: int, isa: str = "auto",
           method: str = "add"):
    """``alpha * (x @ Q^T) + bias`` straight from packed codes (see module docstring)."""
    return torch.ops.denseshift.linear(x, packed, alpha, bias, int(bits), int(in_features),
                                       isa, method)


def depthwise_conv1d(x, packed, alpha, bias=None, *, bits: int, kernel_size: int,
                     padding: int = 0, dilation: int = 1, isa: str = "auto",
                     method: str = "add"):
    """Stride-1 depthwise Conv1d with DenseShift taps (see module docstring)."""
    return torch.ops.denseshift.depthwise_conv1d(x, packed, alpha, bias, int(bits),
                                                 int(kernel_size), int(padding),
                                                 int(dilation), isa, method)


TILED_PATHS = ("int8", "exact")


def repack(packed, *, bits: int, in_features: int):
    """Packed file rows -> ``(tiles, row_sums)`` in the tiled run-time layout."""
    return torch.ops.denseshift.repack(packed, int(bits), int(in_features))


def linear_tiled(x, tiles, row_sums, alpha, bias=None, *, bits: int, in_features: int,
                 path: str = "int8", isa: str = "auto"):
    """``alpha * (x @ Q^T) + bias`` from repacked codes on the ``int8`` or ``exact`` path."""
    return torch.ops.denseshift.linear_tiled(x, tiles, row_sums, alpha, bias, int(bits),
                                             int(in_features), path, isa)


def tiled_paths() -> list:
    """Tiled-kernel ISA paths this CPU can run, best first (``['reference']`` without _C)."""
    return list(_C.tiled_paths()) if NATIVE else ["reference"]

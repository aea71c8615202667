"""The DenseShift CPU kernels: torch custom ops ``torch.ops.denseshift.*``.

The op schemas are defined once, in :mod:`.ops`; the C++ extension (``_C``) implements
them and :mod:`.reference` gives a pure-PyTorch version of each.  Two kernel families, one
per weight layout (:mod:`.layout`):

* the *file-layout* ops read the packed rows as files store them (b bits per code,
  64-code blocks): :func:`linear_file_layout` (``denseshift::linear``) and
  :func:`depthwise_conv1d_file_layout` (``denseshift::depthwise_conv1d``).  Packed modules
  use them on the paper's ``shift`` path, for layers of more than 4 bits (which have no
  tiled layout) on every path, and for depthwise convolutions outside the fused layer.
* the *tiled* ops read the run-time layout that :func:`repack` makes once per layer from
  the packed rows: :func:`linear_tiled` (paths ``int8`` and ``exact``, the default paths)
  the fused ``conformer_layer`` (:mod:`denseshift_speech.packed.fused`) and the fused
  ``xvector`` keyword-spotter network (:mod:`denseshift_speech.packed.xvector`).

The ops that read packed rows (the file-layout ops and ``repack``) refuse an
``in_features`` (``kernel_size``) that disagrees with them: a row width other than
``layout.row_bytes(in_features, bits)``, or a code other than the pad code 0 past
``in_features`` (rows packed for more inputs that pad to the same width).  ``linear_tiled``
refuses one other than the tiles were repacked for; the linears refuse an ``x`` whose last
dimension is not ``in_features``.

File-layout ops, ``method``: ``add`` is the paper's integer-add path (``bits(x) + (e <<
23)``, sign by adding ``1 << 31``; activations whose product is not the IEEE one -- +-0,
subnormals, overflow, inf, NaN -- are masked out and added back with a multiplication,
so the result is the IEEE ``x * w``), ``fma`` decodes into float weights, ``gemm``
(linear only) decodes tiles of rows and calls the BLAS sgemm, ``auto`` picks ``add``
below 16 rows and ``gemm`` above (``depthwise_conv1d``: ``auto`` is ``add``, ``gemm`` is
``fma``).  The tiled paths' numerics are in ``csrc/core/tiled.h`` and README
("Deployment: kernel paths").

``isa``: ``auto`` (the best the CPU has, or ``$DENSESHIFT_ISA`` when set), ``avx512``,
``avx2``, ``scalar`` (the tiled ops on aarch64: ``neon-i8mm``, ``neon-dotprod``,
``neon``); asking for one the CPU lacks is an error.  Threads (ATen's intra-op pool,
``torch.set_num_threads`` applies): the file-layout ops split output channels; the tiled
linear splits output tiles and the fused conformer layer splits each stage (linears by
rows on the int8 path, else by output tiles; attention and depthwise convolution by
sequence, or by head and channel when there are fewer sequences than threads; row-wise
post-ops by rows), each only when its work pays for another thread
(:func:`parallel_min_ns`).  Outputs are bit-identical on any thread count.

The native op lives in ``denseshift_speech.kernels._C`` (built by ``pip install``).  When
it cannot be imported, this module warns once and registers the pure-PyTorch reference
(:mod:`.reference`) under the same op names; :data:`NATIVE` tells which is active.
"""
from __future__ import annotations

import warnings

import torch

from . import ops, reference  # ops: the schemas, defined before _C registers kernels

METHODS = ("add", "fma", "gemm")  # of the file-layout ops
ALL_METHODS = METHODS + ("auto",)

NATIVE = False
NATIVE_ERROR: str | None = None
try:  # (no `_C = None` before this: `from . import` would return it instead of importing)
    from . import _C  # registers torch.ops.denseshift.*
    NATIVE = True
except ImportError as err:  # build failed or skipped at install time
    _C = None
    NATIVE_ERROR = f"{type(err).__name__}: {err}"
    warnings.warn(
        "denseshift_speech: the native shift kernel (denseshift_speech.kernels._C) is not "
        f"available ({NATIVE_ERROR}); using the slow pure-PyTorch reference. Reinstall with "
        "`pip install --no-build-isolation -e .` and a C++ compiler to build it.",
        RuntimeWarning, stacklevel=2)
    for _name in ops.SCHEMAS:
        if _name not in ops.TRAINING_OPS:
            ops.LIBRARY.impl(_name, getattr(reference, _name), "CPU")
# every device without a kernel of its own (CUDA, or CPU without _C) runs the reference
for _name in ops.TRAINING_OPS:
    ops.LIBRARY.impl(_name, getattr(reference, _name), "CompositeExplicitAutograd")


def native_available() -> bool:
    """True when the compiled kernel is loaded (else the reference runs)."""
    return NATIVE


def supported_isas() -> list:
    """ISA paths this CPU can run, best first (``['reference']`` without the native op)."""
    return list(_C.supported_isas()) if NATIVE else ["reference"]


def selected_isa(isa: str = "auto") -> str:
    """The path ``isa`` resolves to here (``$DENSESHIFT_ISA`` applies to ``auto``)."""
    return str(_C.selected_isa(isa)) if NATIVE else "reference"


# ---------------------------------------------------------------- file-layout ops --
def linear_file_layout(x, packed, alpha, bias=None, *, bits: int, in_features: int,
                       isa: str = "auto", method: str = "add"):
    """``alpha * (x @ Q^T) + bias`` straight from the packed file rows (``denseshift::linear``;
    ``method`` and the checks: module docstring)."""
    return torch.ops.denseshift.linear(x, packed, alpha, bias, int(bits), int(in_features),
                                       isa, method)


def depthwise_conv1d_file_layout(x, packed, alpha, bias=None, *, bits: int, kernel_size: int,
                                 padding: int = 0, dilation: int = 1, isa: str = "auto",
                                 method: str = "add"):
    """Stride-1 depthwise Conv1d with DenseShift taps from the packed file rows (one row of
    ``kernel_size`` codes per channel; ``denseshift::depthwise_conv1d``)."""
    return torch.ops.denseshift.depthwise_conv1d(x, packed, alpha, bias, int(bits),
                                                 int(kernel_size), int(padding),
                                                 int(dilation), isa, method)


# ---------------------------------------------------------------------- tiled ops --
TILED_PATHS = ("int8", "exact")


def repack(packed, *, bits: int, in_features: int):
    """Packed file rows -> ``(tiles, row_sums)`` in the tiled run-time layout."""
    return torch.ops.denseshift.repack(packed, int(bits), int(in_features))


def linear_tiled(x, tiles, row_sums, alpha, bias=None, *, bits: int, in_features: int,
                 path: str = "int8", isa: str = "auto"):
    """``alpha * (x @ Q^T) + bias`` from repacked codes on the ``int8`` or ``exact`` path."""
    return torch.ops.denseshift.linear_tiled(x, tiles, row_sums, alpha, bias, int(bits),
                                             int(in_features), path, isa)


def parallel_min_ns(ns: float | None = None) -> float:
    """The least single-thread work, in ns, that a stage of the tiled / fused ops gives each
    thread before it is split over ``torch.get_num_threads()`` threads (default 3000;
    ``$DENSESHIFT_PARALLEL_MIN_NS`` at import).  With ``ns``, set it and return the previous
    value (0: split every stage as far as it goes).  Splits never change outputs."""
    if not NATIVE:
        return 0.0
    return float(_C.parallel_min_ns(-1.0 if ns is None else float(ns)))


def tiled_paths() -> list:
    """Tiled-kernel ISA paths this CPU can run, best first (``['reference']`` without _C)."""
    return list(_C.tiled_paths()) if NATIVE else ["reference"]

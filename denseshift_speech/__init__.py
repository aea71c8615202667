"""denseshift_speech: DenseShift (zero-free power-of-two) weights for SpeechBrain models.

The public API: ``DenseShiftConfig``, ``quantize_`` (:mod:`.core`) and ``pack_``,
``save_packed``, ``load_packed`` (:mod:`.packed`, imported on first use).  The layers of
the package are described in docs/ARCHITECTURE.md.
"""
import importlib

from .core.convert import DenseShiftConfig, QuantizeSummary, quantize_

# name -> module that defines it, imported on first access (keeps `import` cheap)
_LAZY = {
    "pack_": "packed", "PackSummary": "packed", "save_packed": "packed",
    "load_packed": "packed", "read_packed_metadata": "packed", "PackedFileError": "packed",
    "PackedLinear": "packed", "PackedConv1d": "packed",
}

__all__ = ["DenseShiftConfig", "QuantizeSummary", "quantize_", *_LAZY]
__version__ = "0.1.0"


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The DenseShift quantizer: pure math (:mod:`.quant`), the training parametrization
(:mod:`.nn`), model surgery (:mod:`.convert`: ``quantize_``), optimizer grouping
(:mod:`.optim`) and training diagnostics (:mod:`.diagnostics`).

Knows nothing of SpeechBrain, packed files or recipes; imports only ``kernels``
(the code format).  See docs/ARCHITECTURE.md.
"""
from .convert import DenseShiftConfig, QuantizeSummary, quantize_

__all__ = ["DenseShiftConfig", "QuantizeSummary", "quantize_"]

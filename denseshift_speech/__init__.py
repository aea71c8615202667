"""denseshift_speech: DenseShift (zero-free power-of-two) weights for SpeechBrain models."""
from .core.convert import DenseShiftConfig, QuantizeSummary, quantize_

__all__ = ["DenseShiftConfig", "QuantizeSummary", "quantize_"]
__version__ = "0.1.0"

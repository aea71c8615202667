"""Integrations with training frameworks (today: SpeechBrain).  Inference code
(``kernels``, ``core``, ``packed``, ``streaming``) never imports this package; see
docs/ARCHITECTURE.md."""

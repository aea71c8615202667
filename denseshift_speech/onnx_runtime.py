"""The project's one way to open an onnxruntime session.

CPU provider; ``intra_op_num_threads=threads`` (the caller decides, as it decides torch's
thread count); ``inter_op_num_threads=1`` and sequential execution (the inter-op pool is
only used by parallel execution); every graph optimization.  Used by the neural voices of
the corpus synthesizer, the ONNX exports' checks and runners, and the benchmarks'
onnxruntime baselines, so that all of them measure and run the same configuration.
"""
from __future__ import annotations

import os


def ort_session(model, threads: int = 1):
    """An ``onnxruntime.InferenceSession`` for a path or serialized model bytes."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if isinstance(model, os.PathLike):
        model = os.fspath(model)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

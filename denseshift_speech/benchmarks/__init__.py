"""Benchmark helpers: the alternatives a user would run instead of a packed DenseShift model.

``baselines`` builds torch fp32, torch dynamic int8, onnxruntime fp32 and onnxruntime dynamic
int8 versions of the same fp32 conformer encoder (whole model) and of single linear layers, as
callables the project's benchmark can time beside its own packed kernels.
"""

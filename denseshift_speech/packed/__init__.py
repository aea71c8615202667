"""The deploy path: packed inference modules, ``pack_`` and the packed model file.

* :mod:`.modules`    -- :class:`PackedLinear`, :class:`PackedConv1d` (run the fused kernel);
* :mod:`.pack`       -- ``pack_(model)``: DenseShift-parametrized weights -> packed modules;
* :mod:`.fileformat` -- ``save_packed`` / ``load_packed`` / ``read_packed_metadata``;
* :mod:`.spec`       -- the small inference spec a packed file's reader needs (module
  namespace, normalizer statistics), shared by the recipe glue and streaming.

Imports ``core`` (the parametrization it packs) and ``kernels`` (layout, ops) only.
See docs/ARCHITECTURE.md.
"""
from .fileformat import (FORMAT, FORMAT_VERSION, PackedFileError, PackedInfo, format_sizes,
                         load_packed, read_packed_blobs, read_packed_metadata, save_packed)
from .fused import fuse_, fusable, unfuse_
from .modules import DEFAULT_PATH, PATHS, PackedConv1d, PackedLinear, check_path
from .pack import (PackedEntry, PackSummary, decode_to_float_, pack_, packed_summary, set_path_,
                   unparametrize_)

__all__ = ["FORMAT", "FORMAT_VERSION", "PackedFileError", "PackedInfo", "format_sizes",
           "load_packed", "read_packed_blobs", "read_packed_metadata", "save_packed",
           "fuse_", "fusable", "unfuse_", "DEFAULT_PATH", "PATHS", "check_path", "PackedConv1d", "PackedLinear", "set_path_",
           "PackedEntry", "PackSummary", "decode_to_float_", "pack_", "packed_summary", "unparametrize_"]

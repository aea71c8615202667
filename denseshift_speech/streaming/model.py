"""Load an exported ASR model file (``model.dsp``) as a streaming-ready model.

The file written by :func:`denseshift_speech.integrations.speechbrain.export.export_packed` is self-contained: its
metadata holds the resolved hparams YAML (the architecture), the global feature
normalization statistics, and the SentencePiece tokenizer as a blob.  Only the inference
part of the hparams is instantiated (features, normalization, CNN front-end, conformer,
CTC head): no checkpointer, logger or seed side effects.  :func:`rebuild` (stored
hparams -> inference modules -> the file's weights) is shared with the keyword-spotter
loader (:mod:`.kws`).
"""
from __future__ import annotations

import dataclasses
import io
import json
import os

from torch import nn

from .. import kernels

# hparams keys the decoder needs; every other tagged (!new:/!name:/!apply:) key is dropped.
INFERENCE_KEYS = ("compute_features", "normalize", "CNN", "Transformer", "ctc_lin", "modules")


class ModelFileError(ValueError):
    """The model file cannot be used for streaming ASR (message names the file)."""


@dataclasses.dataclass
class LoadedFile:
    """What every model file loaded for inference records (``file_facts`` fills it)."""
    path: str
    sample_rate: int
    hparams: dict                 # plain (untagged) hparams values
    sizes: dict                   # from the file header (bytes)
    packed: bool                  # the file holds packed DenseShift weights
    fp32: bool                    # packed weights were decoded to dense fp32 layers
    bits: list


def file_facts(path: str, plain: dict, info, fp32: bool) -> dict:
    """The :class:`LoadedFile` fields of a file: ``plain`` its hparams, ``info`` what
    ``load_packed`` returned."""
    return {"path": path, "sample_rate": int(plain.get("sample_rate", 16000)),
            "hparams": plain, "sizes": dict(info.sizes), "packed": bool(info.layers),
            "fp32": bool(fp32 and info.layers),
            "bits": sorted({int(r["bits"]) for r in info.layers})}


@dataclasses.dataclass
class StreamingModel(LoadedFile):
    compute_features: nn.Module   # speechbrain Fbank
    normalize: nn.Module          # InputNormalization (global statistics set)
    CNN: nn.Module                # ConvolutionFrontEnd
    Transformer: nn.Module        # TransformerASR (conformer encoder)
    ctc_lin: nn.Module
    tokenizer: object             # sentencepiece.SentencePieceProcessor
    blank_index: int

    @property
    def file_bytes(self) -> int:
        return int(self.sizes.get("file_bytes", os.path.getsize(self.path)))

    @property
    def fp32_equivalent_bytes(self) -> int:
        """Bytes the same weights take as fp32 tensors (what an unpacked file holds)."""
        s = self.sizes
        return int(s.get("quantized_fp32_bytes", 0) + s.get("float_bytes", 0) + s.get("blob_bytes", 0))

    def packed_modules(self):
        """Packed inference modules that run the native op (not the decoded-dense ones)."""
        from ..packed import PackedConv1d, PackedLinear
        out = []
        for mod in (self.CNN, self.Transformer, self.ctc_lin):
            for m in mod.modules():
                if isinstance(m, PackedLinear) or (isinstance(m, PackedConv1d) and m.mode != "dense"):
                    out.append(m)
        return out

    def uses_native_kernel(self) -> bool:
        return kernels.native_available() and bool(self.packed_modules())


def _inference_yaml(text: str, path: str, keys=INFERENCE_KEYS,
                    kind: str = "a streaming conformer CTC model") -> tuple[str, dict]:
    """Keep only plain values and the inference modules (``keys``) of a resolved hparams
    YAML; ``kind`` names the model the keys make, for the error message."""
    import ruamel.yaml
    yaml = ruamel.yaml.YAML()
    try:
        doc = yaml.load(text)
    except Exception as err:  # ruamel raises many types
        raise ModelFileError(f"{path}: the stored hparams YAML does not parse ({err})") from None
    if not isinstance(doc, dict):
        raise ModelFileError(f"{path}: the stored hparams YAML is not a mapping")
    plain = {}
    for key in list(doc):
        value = doc[key]
        tag = getattr(getattr(value, "tag", None), "value", None)
        if key in keys:
            continue
        if tag is not None and str(tag).startswith("!") or _has_tag(value):
            del doc[key]
        else:
            plain[key] = value
    missing = [k for k in keys if k not in doc]
    if missing:
        raise ModelFileError(f"{path}: not {kind} (hparams lack {', '.join(missing)})")
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue(), plain


def _has_tag(value) -> bool:
    tag = getattr(getattr(value, "tag", None), "value", None)
    if tag is not None and str(tag).startswith("!"):
        return True
    if isinstance(value, dict):
        return any(_has_tag(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_tag(v) for v in value)
    return False


def read_header(path) -> dict:
    """The file's header (:func:`~denseshift_speech.packed.read_packed_metadata`), with a
    missing, truncated or foreign file reported as :class:`ModelFileError`."""
    from ..packed import PackedFileError, read_packed_metadata
    try:
        return read_packed_metadata(os.fspath(path))
    except PackedFileError as err:
        raise ModelFileError(str(err)) from None


def rebuild(path: str, meta: dict, keys, kind: str, fp32: bool = False,
            kernel_path: str | None = None):
    """Rebuild the inference modules ``keys`` of a model file's stored hparams and load
    the file's weights into them (packed layers become the packed modules).

    Returns ``(hp, plain, container, info)``: the instantiated inference hparams, the plain
    (untagged) hparams values, the module container (eval mode, no gradients; normalizer
    statistics restored when the file has them) and the file's PackedInfo.  ``kind`` names
    the model in error messages; ``fp32``/``kernel_path`` as in :func:`load_model`.
    """
    from hyperpyyaml import load_hyperpyyaml

    from ..packed import PackedFileError, load_packed
    from ..packed.spec import module_container, restore_normalizer_stats, upgrade_stored_hparams

    if "hparams_yaml" not in meta:
        raise ModelFileError(f"{path}: the file carries no hparams_yaml metadata (was it written "
                             "by the recipe's export_packed?)")
    text, plain = _inference_yaml(upgrade_stored_hparams(meta["hparams_yaml"]), path, keys, kind)
    try:
        hp = load_hyperpyyaml(text)
    except Exception as err:
        raise ModelFileError(f"{path}: cannot rebuild the architecture from the stored hparams "
                             f"({type(err).__name__}: {err})") from None
    container = module_container(hp["modules"])
    try:
        info = load_packed(container, path)
    except PackedFileError as err:
        raise ModelFileError(str(err)) from None
    if kernel_path is not None:  # else the path the file was packed with
        from ..packed import check_path, set_path_
        try:
            set_path_(container, check_path(kernel_path))
        except ValueError as err:
            raise ModelFileError(str(err)) from None
    container.eval()
    stats = json.loads(meta.get("normalizers", "{}"))
    if stats:
        restore_normalizer_stats(container, stats)
    if fp32:
        from ..packed import decode_to_float_
        decode_to_float_(container)
    for p in container.parameters():
        p.requires_grad_(False)
    return hp, plain, container, info


def load_model(path, fp32: bool = False, kernel_path: str | None = None) -> StreamingModel:
    """Build the model stored in ``path`` (a packed or full-precision ``model.dsp``).

    ``fp32=True`` decodes the packed weights into dense fp32 layers (same values, fp32
    matmuls): the compute twin for packed-vs-fp32 comparisons.  Raises
    :class:`ModelFileError` (missing/truncated/corrupt/not-ASR file) with one clear line.
    """
    path = os.fspath(path)
    header = read_header(path)
    meta = header["metadata"]
    if meta.get("task") not in (None, "asr"):
        raise ModelFileError(f"{path}: a {meta.get('task')!r} model, not an ASR model; "
                             "`stream` needs a conformer CTC model from recipes/librispeech "
                             "(keyword spotters load with streaming.kws.load_kws_model and "
                             "run with `denseshift-speech evaluate`)")
    if meta.get("arch") not in (None, "conformer"):
        raise ModelFileError(f"{path}: arch {meta.get('arch')!r} cannot stream; only the "
                             "dynamic-chunk-trained conformer (arch: conformer) can")
    if "tokenizer.model" not in header["blobs"]:
        raise ModelFileError(f"{path}: no tokenizer.model blob in the file")
    hp, plain, container, info = rebuild(path, meta, INFERENCE_KEYS,
                                         "a streaming conformer CTC model", fp32, kernel_path)
    norm = hp["normalize"]
    if "normalize" not in json.loads(meta.get("normalizers", "{}")) \
            and getattr(norm, "norm_type", "global") == "global":
        raise ModelFileError(f"{path}: no normalizer statistics in the file")
    norm.eval()
    hp["compute_features"].eval()
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor()
    try:
        sp.LoadFromSerializedProto(info.blobs["tokenizer.model"])
    except Exception as err:
        raise ModelFileError(f"{path}: the tokenizer blob is not a SentencePiece model "
                             f"({err})") from None
    return StreamingModel(
        **file_facts(path, plain, info, fp32), compute_features=hp["compute_features"],
        normalize=norm, CNN=container["CNN"], Transformer=container["Transformer"],
        ctc_lin=container["ctc_lin"], tokenizer=sp,
        blank_index=int(plain.get("blank_index", 0)))

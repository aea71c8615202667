"""Load an exported keyword-spotter file (``model.dsp`` of recipes/speech_commands).

The file (written by the recipe's ``export_model`` through ``export_packed``, task
``kws``) holds the resolved hparams YAML (features, sentence normalization, the x-vector
TDNN and its classifier), the normalizer statistics and, from the recipe, the class names
(metadata ``classes``, a JSON list in the classifier's output order).  Only the inference
part of the hparams is instantiated, as :func:`~.model.load_model` does for ASR; packed
layers run through the packed modules (the native kernel).  A packed x-vector network runs
one op per batch of windows (:func:`~denseshift_speech.packed.xvector.fuse_xvector_`: the
embedding model and the classifier swap classes; ``classifier(embedding_model(feats))``
is unchanged for callers, bit for bit on the int8 path), and the sentence normalization
of whole windows three tensor ops (:class:`SentenceNormalization`, same values).

    from denseshift_speech.streaming.kws import load_kws_model
    model = load_kws_model("results/kws_ds3/model.dsp")
    probs = model.posteriors(wavs)        # (batch, classes), wavs: (batch, samples) at 16 kHz
    print(model.labels[int(probs[0].argmax())])
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os

import torch
from torch import nn

from .. import kernels
from ..packed.xvector import fused_log_probs, middle_noise
from .model import LoadedFile, ModelFileError, file_facts, read_header, rebuild

# hparams keys the classifier needs; every other tagged key (augmentation, optimizer,
# checkpointer, ...) is dropped.
KWS_INFERENCE_KEYS = ("compute_features", "mean_var_norm", "embedding_model", "classifier",
                      "modules")
# The recipe's class list, when an older file lacks the ``classes`` metadata
# (denseshift-speech export of a run): written beside model.dsp by the preparer.
CLASSES_FILE = "classes.txt"


try:  # speechbrain is a dependency; the class swap below needs its normalizer class
    from speechbrain.processing.features import InputNormalization
except ImportError:  # pragma: no cover
    InputNormalization = None

if InputNormalization is not None:
    class SentenceNormalization(InputNormalization):
        """SpeechBrain's ``InputNormalization`` whose mean-only sentence normalization of
        whole clips (every relative length >= 1, as the spotter's windows) is
        ``x - x.sum(1) / T``: the stock path computes the same sums and division through a
        mask of ones (``(x * mask).sum(1) / mask.sum(1)``, then ``/ 1.0``), about a dozen
        tensor ops for the same values; anything else runs the stock code."""

        def forward(self, x, lengths=None, epoch=None):
            if (self.norm_type == "sentence" and not self.std_norm and self.length_dim == 1
                    and x.dim() == 3 and x.dtype == torch.float32 and x.shape[1] > 0
                    and (lengths is None or bool((lengths >= 1).all()))):
                return x - x.sum(1, keepdim=True) / x.shape[1]
            return super().forward(x, lengths, epoch)
else:  # pragma: no cover
    SentenceNormalization = None


@dataclasses.dataclass
class KWSModel(LoadedFile):
    labels: list                  # class names, in the classifier's output order
    compute_features: nn.Module   # speechbrain Fbank
    normalize: nn.Module          # InputNormalization (per-sentence, as in training)
    embedding_model: nn.Module    # x-vector TDNN
    classifier: nn.Module         # ends in log-softmax over the classes

    @property
    def clip_samples(self) -> int:
        """Samples of the 1-second clips the spotter was trained on."""
        return self.sample_rate

    @torch.no_grad()
    def posteriors(self, wavs: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Class probabilities ``(batch, classes)`` of mono waveforms ``(batch, samples)`` at
        :attr:`sample_rate` (one clip: ``(samples,)``).  ``lengths``: each clip's share of
        the padded length (1.0: no padding), as in the recipe's batches; the sentence
        normalization then ignores the padding."""
        wavs = torch.as_tensor(wavs, dtype=torch.float32)
        if wavs.dim() == 1:
            wavs = wavs.unsqueeze(0)
        return self.feature_posteriors(self.compute_features(wavs), lengths)

    @torch.no_grad()
    def feature_posteriors(self, feats: torch.Tensor, lengths: torch.Tensor | None = None,
                           deterministic: bool = False) -> torch.Tensor:
        """Class probabilities ``(batch, classes)`` of log-mel frames ``(batch, frames,
        mels)`` as :attr:`compute_features` makes them: the recipe's normalization, the
        TDNN and the classifier.  A fused packed network runs in one op call, without the
        module calls around it (the same numbers: :func:`~denseshift_speech.packed.xvector.
        fused_log_probs`).  ``deterministic``: the statistics pooling's noise at its middle
        value (:func:`deterministic_pooling`), as the spotter, the bench and the ONNX export
        run it; else SpeechBrain's random draw, as in the recipe."""
        batch = feats.shape[0]
        lengths = torch.ones(batch) if lengths is None else torch.as_tensor(lengths).float()
        x = self.normalize(feats, lengths)
        out = fused_log_probs(self.embedding_model, x, deterministic)
        if out is None:
            with deterministic_pooling(self) if deterministic else contextlib.nullcontext():
                out = self.classifier(self.embedding_model(x))
        # the classifier gives log-probabilities; softmax of them is the probabilities
        # (and would normalize raw scores alike)
        return torch.softmax(out.reshape(batch, -1).float(), -1)

    def packed_modules(self):
        """Packed inference modules that run the native op (not the decoded-dense ones)."""
        from ..packed import PackedConv1d, PackedLinear
        return [m for mod in (self.embedding_model, self.classifier) for m in mod.modules()
                if isinstance(m, PackedLinear) or (isinstance(m, PackedConv1d) and m.mode != "dense")]

    def unfused_reason(self, feats: torch.Tensor | None = None) -> str | None:
        """None when ``classifier(embedding_model(feats))`` runs the fused x-vector op, else
        why it runs module by module (:func:`~denseshift_speech.packed.xvector.fused_reason`)."""
        from ..packed.xvector import fused_reason
        with torch.no_grad():
            return fused_reason(self.embedding_model, feats)

    def uses_native_kernel(self) -> bool:
        return kernels.native_available() and bool(self.packed_modules())


def _statistics_pools(embedding_model) -> list:
    """The StatisticsPooling layers of a network, found once (walking every module on
    each window cost tens of microseconds, a tenth of the fused spotter's window)."""
    pools = embedding_model.__dict__.get("_denseshift_statistics_pools")
    if pools is None:
        from speechbrain.nnet.pooling import StatisticsPooling
        pools = [m for m in embedding_model.modules() if isinstance(m, StatisticsPooling)]
        embedding_model.__dict__["_denseshift_statistics_pools"] = pools
    return pools


@contextlib.contextmanager
def deterministic_pooling(model):
    """SpeechBrain's StatisticsPooling adds random noise (1e-5 to 9e-5, scaled by the
    batch's min and max) to the pooled mean on every call, in eval mode too: the same
    window would get slightly different posteriors each time, enough to flip int8
    roundings in the packed layers after it (posteriors move by up to ~1e-3).  Inside
    this context the noise is its middle value, 5e-5, so one window gives one answer
    whatever the batch."""
    pools = _statistics_pools(model.embedding_model)
    for pool in pools:
        pool._get_gauss_noise = (lambda shape, device="cpu", pool=pool:
                                 middle_noise(pool, shape, device))
    try:
        yield model
    finally:
        for pool in pools:
            del pool._get_gauss_noise   # the class's method again


def _labels(path: str, meta: dict, plain: dict) -> list:
    """Class names: the file's ``classes`` metadata; else the preparer's classes.txt beside
    the file; else the hparams' words + unknown + silence when they account for every
    class (the preparer's order)."""
    if "classes" in meta:
        try:
            labels = json.loads(meta["classes"])
        except ValueError:
            raise ModelFileError(f"{path}: the classes metadata is not a JSON list") from None
        if isinstance(labels, list) and all(isinstance(c, str) for c in labels):
            return labels
        raise ModelFileError(f"{path}: the classes metadata is not a list of class names")
    beside = os.path.join(os.path.dirname(os.path.abspath(path)), CLASSES_FILE)
    if os.path.isfile(beside):
        with open(beside) as f:
            return [line.strip() for line in f if line.strip()]
    words = [str(w) for w in plain.get("words") or []]
    extra = (["unknown"] if plain.get("percentage_unknown", 0) > 0 else []) + \
        (["silence"] if plain.get("percentage_silence", 0) > 0 else [])
    if words and int(plain.get("num_classes", -1)) == len(words) + len(extra):
        return words + extra
    raise ModelFileError(f"{path}: the file names no classes (no classes metadata, no "
                         f"{CLASSES_FILE} beside it, and its hparams' words do not account for "
                         f"num_classes={plain.get('num_classes')})")


def _output_size(classifier: nn.Module) -> int | None:
    """Outputs of the classifier's last linear layer (packed or not)."""
    from ..packed import PackedLinear
    last = None
    for m in classifier.modules():
        if isinstance(m, (nn.Linear, PackedLinear)):
            last = m
    return None if last is None else int(last.out_features)


def load_kws_model(path, fp32: bool = False, kernel_path: str | None = None) -> KWSModel:
    """Build the keyword spotter stored in ``path`` (a packed or full-precision model.dsp).

    ``fp32=True`` decodes the packed weights into dense fp32 layers (the compute twin);
    ``kernel_path`` (int8, exact, shift) overrides the path recorded in the file.  Raises
    :class:`~.model.ModelFileError` with one clear line for a missing, corrupt or non-KWS
    file (an ASR conformer among them).
    """
    path = os.fspath(path)
    meta = read_header(path)["metadata"]
    task = meta.get("task")
    if task != "kws":
        what = "an ASR model (task 'asr')" if task in (None, "asr") else f"a {task!r} model"
        raise ModelFileError(f"{path}: {what}, not a keyword spotter; keyword spotters come "
                             "from recipes/speech_commands (ASR files load with "
                             "streaming.model.load_model)")
    hp, plain, container, info = rebuild(path, meta, KWS_INFERENCE_KEYS,
                                         "a keyword spotter (x-vector classifier)", fp32,
                                         kernel_path)
    labels = _labels(path, meta, plain)
    outputs = _output_size(container["classifier"])
    if outputs is not None and outputs != len(labels):
        raise ModelFileError(f"{path}: the classifier has {outputs} outputs but the file names "
                             f"{len(labels)} classes ({', '.join(labels)})")
    hp["compute_features"].eval()
    embedding_model, classifier = container["embedding_model"], container["classifier"]
    normalize = container["mean_var_norm"]
    if not fp32:  # the packed network in one op per window (the fp32 twin stays eager torch)
        from ..packed.xvector import fuse_xvector_
        fuse_xvector_(embedding_model, classifier)
        if SentenceNormalization is not None and type(normalize) is InputNormalization:
            normalize.__class__ = SentenceNormalization
    return KWSModel(
        **file_facts(path, plain, info, fp32), labels=labels,
        compute_features=hp["compute_features"], normalize=normalize,
        embedding_model=embedding_model, classifier=classifier)

"""An exported ASR model file (``model.dsp``) -> ONNX for stock onnxruntime.

``denseshift-speech export RUN_DIR|model.dsp --onnx`` (:mod:`denseshift_speech.cli.export`)
calls :func:`export_asr_onnx`.  The ONNX model is the acoustic model of the packed file:

    input  ``feats``      float32 (batch, frames, n_mels): SpeechBrain ``Fbank`` output
                          (the recipe's ``compute_features``: log-mel dB, top_db floor over
                          the utterance), NOT normalized
    output ``log_probs``  float32 (batch, frames / 4, vocab): CTC log-probabilities
                          (blank = metadata ``blank_index``)

Inside the graph: the global mean/std normalization (constants), the CNN front-end, the
conformer encoder (full context, no padding mask: batch entries must have the same
length, or run batch 1), ``ctc_lin`` and log-softmax.  DenseShift MatMuls are int8
``MatMulInteger`` with per-channel scales (:mod:`denseshift_speech.packed.onnx_export`);
the other weights are exact fp32.  ``metadata_props`` carry what a user needs around it:
``features`` (Fbank settings, JSON), ``normalize`` (the mean/std also in the graph, JSON),
``sample_rate``, ``blank_index``, ``vocab_size``, ``bits``, ``io`` (this description) and
``tokenizer.model.base64`` (the SentencePiece model, base64).

:func:`compare_wer` decodes a manifest greedily with the packed model and with the ONNX
model (``--wer MANIFEST``) and reports both WERs.
"""
from __future__ import annotations

import base64
import csv
import json
import os
import time

import numpy as np
import torch
from torch import nn

from ...onnx_runtime import ort_session

IO_DOC = ("input feats float32 (batch, frames, n_mels): speechbrain Fbank output, not "
          "normalized; output log_probs float32 (batch, ceil(frames/4), vocab): CTC "
          "log-probabilities; batch entries of equal length (no padding mask)")


class AsrOnnxModule(nn.Module):
    """``feats -> log_probs`` of a :class:`~denseshift_speech.streaming.model.StreamingModel`
    (normalization as graph constants; see the module docstring)."""

    def __init__(self, model):
        super().__init__()
        norm = model.normalize
        mean = norm.glob_mean.detach().float().reshape(1, 1, -1)
        std = norm.glob_std.detach().float().reshape(1, 1, -1)
        if getattr(norm, "std_norm", True) is False:
            std = torch.ones_like(std)
        std = std.clamp(min=float(getattr(norm, "epsilon", 1e-10)))
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.CNN, self.Transformer, self.ctc_lin = model.CNN, model.Transformer, model.ctc_lin

    def forward(self, feats):
        src = self.CNN((feats - self.mean) / self.std)
        src = src.reshape(src.shape[0], src.shape[1], -1)
        enc = self.Transformer.encode(src, None)
        return torch.log_softmax(self.ctc_lin(enc), dim=-1)


def _features_meta(fbank) -> dict:
    out = {"class": f"{type(fbank).__module__}.{type(fbank).__name__}"}
    stft, fb = getattr(fbank, "compute_STFT", None), getattr(fbank, "compute_fbanks", None)
    for obj, keys in ((stft, ("sample_rate", "n_fft", "win_length", "hop_length", "center")),
                      (fb, ("n_mels", "f_min", "f_max", "log_mel", "top_db", "amin",
                            "ref_value", "filter_shape", "power_spectrogram"))):
        for k in keys:
            v = getattr(obj, k, None)
            if isinstance(v, (int, float, str, bool)):
                out[k] = v
    return out


def onnx_metadata(model) -> dict:
    """The ``metadata_props`` of the ONNX twin of a loaded StreamingModel."""
    meta = {
        "io": IO_DOC,
        "sample_rate": str(model.sample_rate),
        "blank_index": str(model.blank_index),
        "vocab_size": str(int(model.tokenizer.vocab_size())),
        "bits": json.dumps(model.bits),
        "features": json.dumps(_features_meta(model.compute_features)),
        "normalize": json.dumps({"glob_mean": model.normalize.glob_mean.flatten().tolist(),
                                 "glob_std": model.normalize.glob_std.flatten().tolist()}),
        "source": os.path.basename(model.path),
    }
    blob = model.tokenizer.serialized_model_proto()
    meta["tokenizer.model.base64"] = base64.b64encode(blob).decode("ascii")
    return meta


def export_asr_onnx(dsp_path, out, frames: int = 100):
    """Write the ONNX twin of the ASR model file ``dsp_path`` to ``out``; return the
    :class:`~denseshift_speech.packed.onnx_export.QuantizeReport`."""
    from ...packed.onnx_export import export_onnx
    from ...streaming.model import load_model

    model = load_model(dsp_path)
    module = AsrOnnxModule(model).eval()
    n_mels = int(model.normalize.glob_mean.numel())
    example = torch.zeros(1, int(frames), n_mels)
    return export_onnx(module, example, out, metadata=onnx_metadata(model),
                       input_names=("feats",), output_names=("log_probs",))


def _greedy(labels, blank: int) -> list:
    out, prev = [], blank
    for lab in labels:
        if lab != blank and lab != prev:
            out.append(int(lab))
        prev = lab
    return out


def compare_wer(dsp_path, onnx_path, manifest, limit: int | None = None, threads: int = 1,
                log=print) -> dict:
    """Greedy CTC WER (%) of the packed model and of its ONNX twin on a recipe manifest
    (CSV with ``wav`` and ``wrd``), same features (the recipe's Fbank, utterance floor)."""
    import jiwer

    from ...streaming.audio import read_audio
    from ...streaming.model import load_model

    model = load_model(dsp_path)
    sess = ort_session(onnx_path, threads)
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))[:limit]
    refs, hyp_packed, hyp_onnx = [], [], []
    same, t_packed, t_onnx = 0, 0.0, 0.0
    for row in rows:
        wav = read_audio(row["wav"], model.sample_rate).samples.reshape(1, -1)
        with torch.no_grad():
            feats = model.compute_features(wav)
            t0 = time.perf_counter()
            src = model.CNN(model.normalize(feats, torch.ones(1)))
            src = src.reshape(1, src.shape[1], -1)
            logits = model.ctc_lin(model.Transformer.encode(src, torch.ones(1)))
            t_packed += time.perf_counter() - t0
        t0 = time.perf_counter()
        lp = sess.run(["log_probs"], {"feats": feats.numpy().astype(np.float32)})[0]
        t_onnx += time.perf_counter() - t0
        a = _greedy(logits.argmax(-1)[0].tolist(), model.blank_index)
        b = _greedy(lp.argmax(-1)[0].tolist(), model.blank_index)
        same += a == b
        refs.append(row["wrd"])
        hyp_packed.append(model.tokenizer.decode_ids(a) if a else "")
        hyp_onnx.append(model.tokenizer.decode_ids(b) if b else "")

    def wer(hyps):
        pairs = [(r, h) for r, h in zip(refs, hyps) if r.strip()]
        return 100.0 * jiwer.wer([r for r, _ in pairs], [h for _, h in pairs])
    res = {"utterances": len(rows), "wer_packed": wer(hyp_packed), "wer_onnx": wer(hyp_onnx),
           "same_tokens": same, "packed_s": t_packed, "onnx_s": t_onnx}
    res["wer_diff"] = res["wer_onnx"] - res["wer_packed"]
    log(f"{manifest}: {len(rows)} utterances, greedy CTC WER packed {res['wer_packed']:.2f} % "
        f"vs onnxruntime {res['wer_onnx']:.2f} % (diff {res['wer_diff']:+.2f} points); "
        f"identical token sequences {same}/{len(rows)}; encoder time packed "
        f"{t_packed:.1f} s, onnxruntime {t_onnx:.1f} s")
    return res


# ----------------------------------------------------------------- keyword spotter -----

KWS_IO_DOC = ("input feats float32 (batch, frames, n_mels): speechbrain Fbank output of a "
              "clip (the recipe's compute_features: log-mel dB, top_db floor over the clip), "
              "not normalized -- give it one-second clips (pad or cut first): the graph "
              "normalizes over every frame it gets; output probs float32 (batch, classes): "
              "class posteriors, in the order of metadata classes")


class KwsOnnxModule(nn.Module):
    """``feats -> probs`` of a :class:`~denseshift_speech.streaming.kws.KWSModel`: the
    recipe's normalization (per clip, or global statistics as constants), the x-vector
    TDNN and the classifier, softmax."""

    def __init__(self, model):
        super().__init__()
        norm = model.normalize
        self.norm_type = getattr(norm, "norm_type", "sentence")
        if self.norm_type not in ("sentence", "global"):
            raise ValueError(f"{model.path}: normalization {self.norm_type!r} has no ONNX "
                             "export (sentence or global only)")
        self.std_norm = bool(getattr(norm, "std_norm", True))
        self.eps = float(getattr(norm, "epsilon", 1e-10))
        if self.norm_type == "global":
            self.register_buffer("mean", norm.glob_mean.detach().float().reshape(1, 1, -1))
            self.register_buffer("std", norm.glob_std.detach().float().reshape(1, 1, -1))
        self.embedding_model, self.classifier = model.embedding_model, model.classifier

    def _normalize(self, feats):
        if self.norm_type == "global":
            mean, std = self.mean, self.std
        else:  # InputNormalization's per-sentence statistics (biased variance)
            mean = feats.mean(1, keepdim=True)
            std = (feats - mean).square().mean(1, keepdim=True).sqrt()
        if not self.std_norm:
            return feats - mean
        return (feats - mean) / std.clamp(min=self.eps)

    def forward(self, feats):
        out = self.classifier(self.embedding_model(self._normalize(feats)))
        return torch.softmax(out.reshape(feats.shape[0], -1), dim=-1)


def kws_onnx_metadata(model) -> dict:
    return {"io": KWS_IO_DOC, "task": "kws", "classes": json.dumps(model.labels),
            "sample_rate": str(model.sample_rate), "clip_samples": str(model.clip_samples),
            "bits": json.dumps(model.bits),
            "features": json.dumps(_features_meta(model.compute_features)),
            "source": os.path.basename(model.path)}


def export_kws_onnx(dsp_path, out):
    """Write the ONNX twin of the keyword-spotter file ``dsp_path`` to ``out``; return the
    :class:`~denseshift_speech.packed.onnx_export.QuantizeReport`.  SpeechBrain's
    statistics pooling adds random noise to its mean on every call; the graph holds its
    middle value instead (:func:`~denseshift_speech.streaming.kws.deterministic_pooling`),
    as the packed spotter does."""
    from ...packed.onnx_export import export_onnx
    from ...streaming.kws import load_kws_model
    from ...streaming.kws import deterministic_pooling

    model = load_kws_model(dsp_path)
    module = KwsOnnxModule(model).eval()
    frames = model.clip_samples // int(model.compute_features.compute_STFT.hop_length) + 1
    n_mels = int(model.compute_features.compute_fbanks.n_mels)
    dynamic = {"feats": {0: "batch", 1: "time"}, "probs": {0: "batch"}}
    with deterministic_pooling(model):
        return export_onnx(module, torch.zeros(2, frames, n_mels), out,
                           metadata=kws_onnx_metadata(model), input_names=("feats",),
                           output_names=("probs",), dynamic_axes=dynamic)


def _packed_probs(model, feats) -> np.ndarray:
    """The keyword spotter's posteriors of one clip's features, as the spotter computes them."""
    return model.feature_posteriors(feats, deterministic=True).reshape(-1).numpy()


def compare_kws(dsp_path, onnx_path, folder, limit: int | None = None, threads: int = 1,
                log=print) -> dict:
    """Classify the clips of a Speech Commands-layout ``folder`` with the packed file and
    with its ONNX twin in onnxruntime, on the same features (each clip zero-padded or cut
    to one second, the recipe's Fbank); report both accuracies, how many predictions
    agree and the largest posterior difference."""
    from ...streaming.kws import load_kws_model

    model = load_kws_model(dsp_path)
    sess = ort_session(onnx_path, threads)
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))   # both sides on the same number of threads
    try:
        return _compare_kws(model, sess, folder, limit, log)
    finally:
        torch.set_num_threads(before)


def _compare_kws(model, sess, folder, limit, log) -> dict:
    from ...streaming.evaluate import kws_references, read_clips, read_eval_set, take
    clips, refs, _ = kws_references(read_eval_set(folder), model.labels)
    picked = take(list(zip(clips, refs)), limit, clip=lambda pair: pair[0])
    waves, _ = read_clips([c for c, _ in picked], model.sample_rate)
    n = model.clip_samples
    _packed_probs(model, model.compute_features(torch.zeros(1, n)))   # repack once, untimed
    right_packed = right_onnx = same = 0
    worst, t_packed, t_onnx = 0.0, 0.0, 0.0
    for (_, ref), wave in zip(picked, waves):
        clip = torch.nn.functional.pad(wave[:n], (0, max(0, n - wave.numel()))).unsqueeze(0)
        with torch.no_grad():
            feats = model.compute_features(clip)
            t0 = time.perf_counter()
            p = _packed_probs(model, feats)
            t_packed += time.perf_counter() - t0
        t0 = time.perf_counter()
        q = sess.run(["probs"], {"feats": feats.numpy().astype(np.float32)})[0][0]
        t_onnx += time.perf_counter() - t0
        right_packed += int(p.argmax()) == ref
        right_onnx += int(q.argmax()) == ref
        same += int(p.argmax()) == int(q.argmax())
        worst = max(worst, float(np.abs(p - q).max()))
    total = max(len(picked), 1)
    res = {"clips": len(picked), "accuracy_packed": 100.0 * right_packed / total,
           "accuracy_onnx": 100.0 * right_onnx / total, "same_predictions": same,
           "max_posterior_diff": worst, "packed_s": t_packed, "onnx_s": t_onnx}
    log(f"{folder}: {len(picked)} clips, accuracy packed {res['accuracy_packed']:.2f} % vs "
        f"onnxruntime {res['accuracy_onnx']:.2f} %; same prediction {same}/{len(picked)}, "
        f"largest posterior difference {worst:.4f}; time packed {t_packed:.2f} s (features "
        f"excluded, as for onnxruntime), onnxruntime {t_onnx:.2f} s")
    return res

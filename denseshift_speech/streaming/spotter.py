"""Keyword spotting on a stream: a one-second window slid over the audio, posterior
smoothing, a detection threshold and a refractory time (``denseshift-speech spot``).

    from denseshift_speech.streaming.kws import load_kws_model
    from denseshift_speech.streaming.spotter import KeywordSpotter, SpotSettings
    spotter = KeywordSpotter(load_kws_model("results/kws_ds3/model.dsp"), SpotSettings())
    for piece in pieces:                       # mono float32 at the model's sample rate
        for d in spotter.accept(piece):        # Detection(label, time, score, ...)
            print(f"{d.time:.2f} s {d.label} {d.score:.2f}")
    spotter.finish()

Per hop (``hop_seconds``, 100 ms by default), the spotter classifies the last second of
audio (the model's clip length) exactly as the recipe classifies a one-second clip, so a
window's posteriors equal ``model.posteriors(clip)`` of the same samples (with the
statistics pooling's random noise held at its middle value: :func:`deterministic_pooling`).

How the features are kept across hops (the feature buffer).  The spotter's Fbank is
per frame (no deltas, no context window): a 25 ms frame every 10 ms, centred on its
sample, zero-padded where it overhangs the clip.  Its one clip-wide step is the dB floor
(``max over the clip - top_db``).  So the spotter computes each log-mel frame of the
stream once, into a buffer of frames (:class:`WindowFeatures`), and assembles a window
from it: the window's interior frames come from the buffer; the two frames at each edge,
which the clip computation zero-pads, are recomputed from 30 ms of audio at each end;
the dB floor is then applied over the window.  Per hop, one Fbank call computes the new
100 ms of frames and the four edge frames (its cost is mostly per call) instead of the
whole second's 101 frames: about half the time of the whole second's Fbank.

Why the network itself runs on the whole window each hop: the recipe normalizes each
clip by its own mean (sentence normalization), which shifts every input frame whenever
the window moves, and the TDNN's layers (LeakyReLU, batch norm) are not linear, so no
layer's outputs can be carried over to the next hop; the statistics pooling then
summarises the whole window.  The TDNN's receptive field (15 frames: kernels 5, 3, 3
with dilations 1, 2, 3) is small, but every frame it sees changes with the window's
mean.  The recipe's 72 k-parameter spotter costs about 5 M multiply-adds per window.

Detection: the window posteriors are averaged over the last ``smooth_seconds`` of hops;
the best keyword class (every class but unknown and silence) fires when its smoothed
posterior reaches ``threshold``, and that keyword does not fire again for
``refractory_seconds`` (:class:`DetectionGate`).  A detection's time is the end of the
window that fired (when it was known).

A stream shorter than one window is classified as one clip at :meth:`KeywordSpotter.
finish` (zero-padded to the clip length, as the recipe pads short clips).

Evaluation (:func:`evaluate_spotting`, ``spot --evaluate``): a Speech Commands-layout
folder's clips (keywords, unknown words, silence) joined in a shuffled order with gaps
make the keyword stream (hit rate); its non-keyword clips, those of any
``negatives`` folders, and the held-out part of their ``_background_noise_`` recordings
make the keyword-free stream (false alarms per hour).  The gaps hold white noise at the
neighbouring clips' noise floor, so the joins themselves sound like nothing.  A threshold
sweep replays the detection rule over the recorded smoothed posteriors of both streams.
"""
from __future__ import annotations

import collections
import copy
import dataclasses
import math
import os
import random
import time

import torch
import torch.nn.functional as F

from ..errors import UserError
from .audio import read_audio
from .decoder import _percentile
from .defaults import (DEFAULT_SPOT_HOP, DEFAULT_SPOT_REFRACTORY, DEFAULT_SPOT_SMOOTH,
                       DEFAULT_SPOT_THRESHOLD)
from .kws import deterministic_pooling

# Classes that are not keywords: the recipe's (and Speech Commands folders') names.
NON_KEYWORDS = ("unknown", "_unknown_", "silence", "_silence_")
# The part of a _background_noise_ file the recipe never trains on: training mixes in
# its first 80 % (recipes/speech_commands/train.py, TRAIN_NOISE_REGION); the preparer cuts
# the valid and test silence clips from the rest (data/speech_commands.py).
HELD_OUT_NOISE = (0.8, 1.0)
BACKGROUND_NOISE = "_background_noise_"
MIN_GAP_RMS = 1e-4            # the gaps' noise is never quieter than -80 dBFS
DEFAULT_GAP_SECONDS = (1.0, 2.0)
DEFAULT_THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 20)) + (0.97, 0.98, 0.99, 0.995)


@dataclasses.dataclass
class SpotSettings:
    """Sliding window and detection rule (defaults: :mod:`.defaults`, and why)."""
    hop_seconds: float = DEFAULT_SPOT_HOP              # window step (rounded to 10 ms frames)
    smooth_seconds: float = DEFAULT_SPOT_SMOOTH        # posteriors averaged over this span
    threshold: float = DEFAULT_SPOT_THRESHOLD          # smoothed keyword posterior that fires
    refractory_seconds: float = DEFAULT_SPOT_REFRACTORY  # a keyword is silent this long after it fired

    def check(self, window_seconds: float = 1.0):
        """ValueError naming the setting that is out of range."""
        if not 0.0 < self.hop_seconds <= window_seconds:
            raise ValueError(f"hop must be in (0, {window_seconds:g}] s, got {self.hop_seconds}")
        if self.smooth_seconds < 0:
            raise ValueError(f"smoothing must be >= 0 s, got {self.smooth_seconds}")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.refractory_seconds < 0:
            raise ValueError(f"refractory time must be >= 0 s, got {self.refractory_seconds}")
        return self


@dataclasses.dataclass
class Detection:
    label: str
    index: int          # the class index in the model's labels
    time: float         # seconds from the stream start to the end of the window that fired
    score: float        # the smoothed posterior that reached the threshold
    window_start: float

    def as_dict(self) -> dict:
        return {"label": self.label, "time": round(self.time, 3), "score": round(self.score, 4),
                "window_start": round(self.window_start, 3)}


def keyword_indices(labels) -> list:
    """Indices of the classes that are keywords (all but unknown and silence)."""
    return [i for i, label in enumerate(labels) if label not in NON_KEYWORDS]


# ------------------------------------------------------------------- features ----------

class WindowFeatures:
    """The raw log-mel windows of a stream, each frame computed once (module docstring).

    :meth:`push` appends samples and returns ``[(window end sample, features (F, mels))]``
    for every window that became complete; features are floored like the clip's Fbank.
    Models whose features are not per frame (deltas, a context window) get each window
    computed whole.
    """

    def __init__(self, model, hop_samples: int):
        fb = copy.deepcopy(model.compute_features).eval()
        stft = fb.compute_STFT
        self.frame_hop, self.half = int(stft.hop_length), int(stft.n_fft) // 2
        self.window = int(model.clip_samples)
        self.hop = max(self.frame_hop, round(hop_samples / self.frame_hop) * self.frame_hop)
        # the clip-wide dB floor (log-mels only)
        self.top_db = (float(getattr(fb.compute_fbanks, "top_db", math.inf))
                       if getattr(fb.compute_fbanks, "log_mel", True) else math.inf)
        self.whole_window_fbank = model.compute_features
        self.incremental = (not getattr(fb, "deltas", False) and not getattr(fb, "context", False)
                            and stft.center and self.window % self.frame_hop == 0)
        fb.compute_fbanks.top_db = math.inf     # raw log-mels; the window's floor is ours
        self.fbank = fb
        self.frames_per_window = self.window // self.frame_hop + 1
        # clip frames first_exact..last_exact see no padding; the others are the edges
        self.first_exact = -(-self.half // self.frame_hop)
        self.last_exact = (self.window - self.half) // self.frame_hop
        right_from = ((self.last_exact + 1) * self.frame_hop - self.half) // self.frame_hop
        edge = max((self.first_exact - 1) * self.frame_hop + self.half,
                   self.window - right_from * self.frame_hop)
        self.edge_samples = -(-edge // self.frame_hop) * self.frame_hop
        self.reset()

    def reset(self):
        self.samples = torch.zeros(0)
        self.samples_start = 0       # stream index of samples[0]
        self.received = 0
        self.frames = None           # (n, mels): stream frames frames_start.. (exact ones)
        self.frames_start = self.first_exact
        self.next_end = self.window  # end sample of the next window

    def push(self, samples: torch.Tensor) -> list:
        if samples.numel():
            self.samples = torch.cat((self.samples, samples.reshape(-1).float()))
            self.received += samples.numel()
        out = []
        while self.received >= self.next_end:
            out.append((self.next_end, self._window(self.next_end - self.window)))
            self.next_end += self.hop
        self._trim()
        return out

    def _audio(self, start: int, end: int) -> torch.Tensor:
        return self.samples[start - self.samples_start:end - self.samples_start]

    def _floor(self, x: torch.Tensor) -> torch.Tensor:
        if math.isinf(self.top_db):
            return x
        return torch.maximum(x, x.max() - self.top_db)

    def _window(self, start: int) -> torch.Tensor:
        if not self.incremental:
            return self.whole_window_fbank(self._audio(start, start + self.window).unsqueeze(0))[0]
        first = start // self.frame_hop + self.first_exact
        last = start // self.frame_hop + self.last_exact
        end = start + self.window
        pieces = [self._audio(start, start + self.edge_samples),
                  self._audio(end - self.edge_samples, end)]
        have = self.frames_start + (0 if self.frames is None else self.frames.shape[0])
        if last >= have:  # frames have..last are new: from a hop-aligned piece around them
            pieces.append(self._audio((have - self.first_exact) * self.frame_hop,
                                      last * self.frame_hop + self.half))
        # one Fbank call for all (its cost is mostly per call); zeros after a piece reach
        # no frame taken from it, as the clip's own zero padding reaches its edge frames
        length = max(p.numel() for p in pieces)
        out = self.fbank(torch.stack([F.pad(p, (0, length - p.numel())) for p in pieces]))
        if last >= have:
            new = out[2, self.first_exact:self.first_exact + last + 1 - have]
            self.frames = new if self.frames is None else torch.cat((self.frames, new))
        interior = self.frames[first - self.frames_start:last + 1 - self.frames_start]
        right_end = self.edge_samples // self.frame_hop + 1   # frames of the unpadded piece
        right = self.frames_per_window - 1 - self.last_exact
        x = torch.cat((out[0, :self.first_exact], interior, out[1, right_end - right:right_end]))
        return self._floor(x)

    def _trim(self):
        """Drop samples and frames no future window or frame needs."""
        next_start = self.next_end - self.window
        if self.incremental and self.frames is not None:
            keep_from = next_start // self.frame_hop + self.first_exact
            drop = keep_from - self.frames_start
            if drop > 0:
                self.frames = self.frames[drop:]
                self.frames_start = keep_from
            have = self.frames_start + self.frames.shape[0]
            next_start = min(next_start, (have - self.first_exact) * self.frame_hop)
        drop = next_start - self.samples_start
        if drop > 0:
            self.samples = self.samples[drop:]
            self.samples_start = next_start


# ------------------------------------------------------------------- detection ---------

class PosteriorSmoother:
    """Moving average of the last ``hops`` window posteriors (fewer at the stream start)."""

    def __init__(self, hops: int):
        self.hops = max(1, int(hops))
        self.reset()

    def reset(self):
        self.recent = collections.deque(maxlen=self.hops)

    def update(self, probs: torch.Tensor) -> torch.Tensor:
        self.recent.append(probs)
        return torch.stack(tuple(self.recent)).mean(0)


class DetectionGate:
    """Threshold and refractory time over smoothed posteriors, one window at a time.

    The refractory time is per keyword, as TensorFlow's RecognizeCommands suppresses a
    repeat of the same command and openWakeWord debounces each model: a keyword that
    fired cannot fire again for ``refractory_seconds``, another keyword can (so a wrong
    keyword fired early in a word does not silence the right one)."""

    def __init__(self, labels, threshold: float, refractory_seconds: float):
        self.labels = list(labels)
        self.keywords = keyword_indices(self.labels)
        self.threshold, self.refractory = float(threshold), float(refractory_seconds)
        self.reset()

    def reset(self):
        self.last_time = {}     # class index -> time of its last detection

    def step(self, end_time: float, smoothed: torch.Tensor, window_seconds: float):
        """The detection of the window ending at ``end_time``, or None."""
        if not self.keywords:
            return None
        scores = smoothed[self.keywords]
        best = int(scores.argmax())
        score, index = float(scores[best]), self.keywords[best]
        last = self.last_time.get(index)
        # (1e-9: times are sums of float hops; a detection exactly one refractory time
        # after the last must count as after it)
        if score < self.threshold or (last is not None
                                      and end_time - last < self.refractory - 1e-9):
            return None
        self.last_time[index] = end_time
        return Detection(self.labels[index], index, end_time, score, end_time - window_seconds)


@dataclasses.dataclass
class SpotStats:
    audio_seconds: float = 0.0
    compute_seconds: float = 0.0     # features + network, windows included
    windows: int = 0
    window_latencies: list = dataclasses.field(default_factory=list)  # seconds per window
    nonfinite_samples: int = 0
    nonfinite_events: list = dataclasses.field(default_factory=list)  # (start second, count)

    @property
    def rtf(self) -> float:
        return self.compute_seconds / self.audio_seconds if self.audio_seconds else 0.0

    def as_dict(self) -> dict:
        return {"audio_seconds": round(self.audio_seconds, 3),
                "compute_seconds": round(self.compute_seconds, 4), "rtf": round(self.rtf, 5),
                "windows": self.windows,
                "window_ms_median": round(1000 * _percentile(self.window_latencies, 50), 3),
                "window_ms_p95": round(1000 * _percentile(self.window_latencies, 95), 3),
                "nonfinite_samples_zeroed": self.nonfinite_samples}


@dataclasses.dataclass
class Trace:
    """Every window's end time and smoothed posteriors (for replaying other thresholds)."""
    times: list = dataclasses.field(default_factory=list)
    smoothed: list = dataclasses.field(default_factory=list)


class KeywordSpotter:
    """Sliding-window keyword spotter over a packed (or fp32) keyword-spotter model.

    :meth:`accept` takes audio pieces of any size and returns the detections they caused;
    ``on_window(end_time, probs, smoothed)`` is called for every window (live views);
    ``record=True`` keeps a :class:`Trace` for threshold sweeps.
    """

    def __init__(self, model, settings: SpotSettings | None = None, record: bool = False,
                 on_window=None):
        self.model = model
        self.settings = (settings or SpotSettings()).check(model.clip_samples / model.sample_rate)
        sr = model.sample_rate
        self.features = WindowFeatures(model, round(self.settings.hop_seconds * sr))
        self.hop_seconds = self.features.hop / sr
        self.window_seconds = model.clip_samples / sr
        self.smooth_hops = max(1, round(self.settings.smooth_seconds / self.hop_seconds))
        self.smoother = PosteriorSmoother(self.smooth_hops)
        self.gate = DetectionGate(model.labels, self.settings.threshold,
                                  self.settings.refractory_seconds)
        self.record, self.on_window = record, on_window
        self.reset()

    def reset(self):
        self.features.reset()
        self.smoother.reset()
        self.gate.reset()
        self.stats = SpotStats()
        self.trace = Trace()
        self.detections = []
        self.samples_seen = 0
        self.short_stream = []       # samples kept until a first window exists

    @property
    def smooth_span_seconds(self) -> float:
        """Audio before a window's start that still weighs on its smoothed posteriors."""
        return (self.smooth_hops - 1) * self.hop_seconds

    def _clean(self, samples: torch.Tensor) -> torch.Tensor:
        """Non-finite samples zeroed and reported (the ``stream`` input policy)."""
        x = torch.as_tensor(samples, dtype=torch.float32).reshape(-1)
        bad = ~torch.isfinite(x)
        n = int(bad.sum())
        if n:
            start = (self.samples_seen + int(torch.nonzero(bad)[0])) / self.model.sample_rate
            self.stats.nonfinite_samples += n
            self.stats.nonfinite_events.append((round(start, 3), n))
            x = x.masked_fill(bad, 0.0)
        return x

    @torch.no_grad()
    def accept(self, samples) -> list:
        """Take the next piece of audio; return the detections of the windows it completed."""
        x = self._clean(samples)
        sr = self.model.sample_rate
        self.samples_seen += x.numel()
        self.stats.audio_seconds += x.numel() / sr
        t0 = time.perf_counter()
        ready = self.features.push(x)
        # kept for finish() until the first window exists (a stream shorter than one)
        self.short_stream = [] if self.features.received >= self.features.window \
            else self.short_stream + [x]
        if not ready:
            self.stats.compute_seconds += time.perf_counter() - t0
            return []
        probs = self.model.feature_posteriors(torch.stack([feats for _, feats in ready]),
                                              deterministic=True)
        spent = time.perf_counter() - t0
        self.stats.compute_seconds += spent
        self.stats.windows += len(ready)
        self.stats.window_latencies += [spent / len(ready)] * len(ready)
        return self._detect([end / sr for end, _ in ready], probs)

    def _detect(self, end_times, probs) -> list:
        found = []
        for end_time, p in zip(end_times, probs):
            smoothed = self.smoother.update(p)
            if self.record:
                self.trace.times.append(end_time)
                self.trace.smoothed.append(smoothed)
            if self.on_window is not None:
                self.on_window(end_time, p, smoothed)
            d = self.gate.step(end_time, smoothed, self.window_seconds)
            if d is not None:
                found.append(d)
        self.detections += found
        return found

    @torch.no_grad()
    def finish(self) -> list:
        """End of stream: a stream shorter than one window is classified as one clip."""
        if self.stats.windows or not self.short_stream:
            return []
        t0 = time.perf_counter()
        probs = classify_clip(self.model, torch.cat(self.short_stream)).unsqueeze(0)
        self.stats.compute_seconds += time.perf_counter() - t0
        self.stats.windows += 1
        self.short_stream = []
        return self._detect([self.samples_seen / self.model.sample_rate], probs)


def feed(spotter: KeywordSpotter, samples: torch.Tensor, realtime: bool = False,
         on_detection=None) -> list:
    """Push ``samples`` one hop at a time, as a live source delivers them (so each call
    runs one window and the per-window latency is the live one); paced in real time if
    asked.  Returns the detections."""
    hop, sr = spotter.features.hop, spotter.model.sample_rate
    samples = torch.as_tensor(samples, dtype=torch.float32).reshape(-1)
    found, t0 = [], time.perf_counter()
    for a in range(0, samples.numel(), hop):
        if realtime:  # a piece is complete once its last sample has "arrived"
            delay = t0 + min(a + hop, samples.numel()) / sr - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        for d in spotter.accept(samples[a:a + hop]):
            found.append(d)
            if on_detection is not None:
                on_detection(d)
    return found


def replay(trace: Trace, labels, threshold: float, refractory_seconds: float,
           window_seconds: float = 1.0) -> list:
    """The detections a recorded stream gives at another threshold / refractory time."""
    gate = DetectionGate(labels, threshold, refractory_seconds)
    found = []
    for end_time, smoothed in zip(trace.times, trace.smoothed):
        d = gate.step(end_time, smoothed, window_seconds)
        if d is not None:
            found.append(d)
    return found


def classify_clip(model, samples: torch.Tensor) -> torch.Tensor:
    """Class probabilities of one clip (non-finite samples zeroed), as the recipe
    classifies it: zero-padded to the clip length, the normalization told its length."""
    from .evaluate import classify
    samples = torch.nan_to_num(torch.as_tensor(samples, dtype=torch.float32), 0.0, 0.0, 0.0)
    with deterministic_pooling(model):
        return classify(model, [samples])[0]


# ------------------------------------------------------------------ evaluation ---------

@dataclasses.dataclass
class Occurrence:
    """A clip placed in a joined stream (seconds); ``label`` None: no keyword in it."""
    label: str | None
    start: float
    end: float
    path: str


@dataclasses.dataclass
class JoinedStream:
    occurrences: list
    seconds: float
    trace: Trace
    stats: SpotStats
    detections: list


def noise_floor(samples: torch.Tensor, sample_rate: int) -> float:
    """RMS of the quiet part of a clip (the 10th percentile of its 20 ms frames' RMS)."""
    frame = max(1, sample_rate // 50)
    n = samples.numel() // frame
    if n == 0:
        return float(samples.pow(2).mean().sqrt()) if samples.numel() else MIN_GAP_RMS
    rms = samples[:n * frame].reshape(n, frame).pow(2).mean(1).sqrt()
    return max(MIN_GAP_RMS, float(torch.quantile(rms, 0.1)))


def _gap(seconds: float, rms_from: float, rms_to: float, sample_rate: int,
         rng: random.Random) -> torch.Tensor:
    """White noise whose level ramps from one clip's noise floor to the next one's, so a
    join adds no onset (a step in level) that the clips themselves lack."""
    g = torch.Generator().manual_seed(rng.randrange(2 ** 31))
    n = int(seconds * sample_rate)
    return torch.linspace(rms_from, rms_to, n) * torch.randn(n, generator=g)


def _noise_region(path: str, sample_rate: int) -> torch.Tensor:
    audio = read_audio(path, sample_rate).samples
    a, b = (int(audio.numel() * f) for f in HELD_OUT_NOISE)
    return torch.nan_to_num(audio[a:b], 0.0, 0.0, 0.0)


def run_joined(spotter: KeywordSpotter, items, gap_seconds=DEFAULT_GAP_SECONDS,
               seed: int = 0) -> JoinedStream:
    """Stream ``items`` (``(path, keyword label or None, region)``, region "clip" or
    "noise": the held-out part of a background-noise file) through ``spotter``, each
    after a gap of noise at the clips' noise floor (:func:`_gap`), in the given order;
    the clips are read as they are streamed (the ``stream`` input policy: a bad file
    stops the run naming it)."""
    rng = random.Random(seed)
    sr = spotter.model.sample_rate
    spotter.reset()
    occurrences, t, floor = [], 0.0, None
    for path, label, region in items:
        samples = read_audio(path, sr).samples if region == "clip" else _noise_region(path, sr)
        clean = torch.nan_to_num(samples, 0.0, 0.0, 0.0)
        previous, floor = floor, noise_floor(clean, sr)
        gap = _gap(rng.uniform(*gap_seconds), floor if previous is None else previous, floor,
                   sr, rng)
        feed(spotter, gap)
        t += gap.numel() / sr
        feed(spotter, samples)
        occurrences.append(Occurrence(label, t, t + samples.numel() / sr, path))
        t += samples.numel() / sr
    # the last clip's windows slide out of a last gap
    tail = _gap(max(gap_seconds), floor or MIN_GAP_RMS, floor or MIN_GAP_RMS, sr, rng)
    feed(spotter, tail)
    spotter.finish()
    return JoinedStream(occurrences, t + tail.numel() / sr, spotter.trace, spotter.stats,
                        list(spotter.detections))


def score_detections(detections, occurrences, reach_seconds: float) -> dict:
    """Match detections to keyword occurrences: a detection of label L at time t hits the
    earliest unmatched occurrence of L with ``start < t <= end + reach_seconds`` (the
    windows that saw any of it); one more detection of an occurrence already hit is a
    repeat; any other detection (a wrong keyword, a non-keyword clip, a gap) is false."""
    keywords = [o for o in occurrences if o.label is not None]
    hit = [False] * len(keywords)
    repeats = false = 0
    per_label = collections.Counter(o.label for o in keywords)
    for d in detections:
        spans = [i for i, o in enumerate(keywords)
                 if o.label == d.label and o.start < d.time <= o.end + reach_seconds]
        fresh = [i for i in spans if not hit[i]]
        if fresh:
            hit[fresh[0]] = True
        elif spans:
            repeats += 1
        else:
            false += 1
    hits = sum(hit)
    by_label = collections.Counter(o.label for o, h in zip(keywords, hit) if h)
    return {"keywords": len(keywords), "hits": hits, "misses": len(keywords) - hits,
            "hit_rate": round(100.0 * hits / len(keywords), 2) if keywords else None,
            "repeats": repeats, "false_detections": false,
            "per_keyword": {label: {"keywords": n, "hits": by_label[label],
                                    "hit_rate": round(100.0 * by_label[label] / n, 2)}
                            for label, n in sorted(per_label.items())}}


def keyword_clip_accuracy(model, items) -> float | None:
    """Accuracy (%) on the keyword clips of a stream's ``items``, each classified as one
    clip (as ``evaluate`` and the recipe classify them): what the stream's hit rate on the
    same clips is compared with."""
    keyword_items = [(path, label) for path, label, region in items
                     if label is not None and region == "clip"]
    if not keyword_items:
        return None
    right = sum(model.labels[int(classify_clip(model, read_audio(path, model.sample_rate)
                                               .samples).argmax())] == label
                for path, label in keyword_items)
    return round(100.0 * right / len(keyword_items), 2)


def false_alarms_per_hour(detections, seconds: float) -> float:
    return round(len(detections) * 3600.0 / seconds, 2) if seconds else 0.0


def _sources(model, data, negatives, limit, seed):
    """(keyword-stream items, keyword-free items, notes) of an evaluation folder and the
    negative folders (see :func:`evaluate_spotting`)."""
    from .evaluate import kws_references, read_eval_set, take
    keywords = {model.labels[i] for i in keyword_indices(model.labels)}
    found = read_eval_set(data)
    if found.layout != "speech_commands":
        raise UserError(f"{found.path}: spot --evaluate needs a Speech Commands-layout folder "
                        f"(one sub-folder of clips per word), not a {found.layout.replace('_', ' ')} "
                        "set")
    clips, refs, _ = kws_references(found, model.labels)
    positives = take(list(zip(clips, refs)), limit, clip=lambda pair: pair[0])
    stream = [(c.path, model.labels[r] if model.labels[r] in keywords else None, "clip")
              for c, r in positives]
    if not any(label for _, label, _ in stream):
        raise UserError(f"{found.path}: no clip of a keyword ({', '.join(sorted(keywords))})")
    notes = list(found.notes)
    other = [c for c in found.clips if c.group not in keywords]
    noise = _noise_files(found.path)
    for folder in negatives:
        extra = read_eval_set(folder)
        notes += [f"{folder}: {n}" for n in extra.notes]
        other += [c for c in extra.clips if c.group not in keywords]
        noise += _noise_files(extra.path)
    negative = [(c.path, None, "clip") for c in take(other, limit)]
    negative += [(path, None, "noise") for path in noise]
    if not negative:
        raise UserError(f"{found.path}: no keyword-free audio (no _unknown_ / _silence_ or "
                        "non-keyword word folders, no _background_noise_); add --negatives DIR")
    rng = random.Random(seed)
    rng.shuffle(stream)
    rng.shuffle(negative)
    return stream, negative, notes


def _noise_files(folder: str) -> list:
    bg = os.path.join(folder, BACKGROUND_NOISE)
    if not os.path.isdir(bg):
        return []
    return [os.path.join(bg, n) for n in sorted(os.listdir(bg))
            if n.lower().endswith(".wav") and not n.startswith(".")]


def sweep(model, positive: JoinedStream, negative: JoinedStream, thresholds,
          refractory_seconds: float, reach_seconds: float, window_seconds: float) -> list:
    """Hit rate and false alarms per hour at each threshold (replayed, not re-run)."""
    rows = []
    for threshold in sorted(set(float(t) for t in thresholds)):
        hits = score_detections(replay(positive.trace, model.labels, threshold,
                                       refractory_seconds, window_seconds),
                                positive.occurrences, reach_seconds)
        alarms = replay(negative.trace, model.labels, threshold, refractory_seconds, window_seconds)
        rows.append({"threshold": threshold, "hit_rate": hits["hit_rate"],
                     "false_alarms": len(alarms),
                     "false_alarms_per_hour": false_alarms_per_hour(alarms, negative.seconds),
                     "false_detections_keyword_stream": hits["false_detections"]})
    return rows


def evaluate_spotting(model, data, negatives=(), limit: int | None = None,
                      settings: SpotSettings | None = None, thresholds=DEFAULT_THRESHOLDS,
                      gap_seconds=DEFAULT_GAP_SECONDS, seed: int = 0, progress=None) -> dict:
    """Hit rate, false alarms per hour, a threshold sweep and the cost of ``model`` (a
    loaded keyword spotter) on joined streams of ``data`` (module docstring).

    ``negatives``: more Speech Commands-layout folders whose non-keyword clips and
    background noise join the keyword-free stream (e.g. the embedded corpus).  ``limit``:
    at most this many clips per stream (taken in turn from every folder and speaker).
    ``progress(text)``: told when each stream is done."""
    settings = settings or SpotSettings()
    positive_items, negative_items, notes = _sources(model, data, negatives, limit, seed)
    spotter = KeywordSpotter(model, settings, record=True)
    positive = run_joined(spotter, positive_items, gap_seconds, seed)
    if progress:
        progress(f"keyword stream: {len(positive_items)} clips, {positive.seconds / 60:.1f} min, "
                 f"{positive.stats.windows} windows")
    negative = run_joined(spotter, negative_items, gap_seconds, seed + 1)
    if progress:
        progress(f"keyword-free stream: {len(negative_items)} clips / noise files, "
                 f"{negative.seconds / 60:.1f} min, {negative.stats.windows} windows")
    reach = spotter.window_seconds + spotter.smooth_span_seconds
    scored = score_detections(positive.detections, positive.occurrences, reach)
    compute = positive.stats.compute_seconds + negative.stats.compute_seconds
    audio = positive.stats.audio_seconds + negative.stats.audio_seconds
    latencies = positive.stats.window_latencies + negative.stats.window_latencies
    return {
        "data": os.fspath(data), "negatives": [os.fspath(n) for n in negatives],
        "notes": notes, "settings": dataclasses.asdict(settings),
        "hop_seconds": round(spotter.hop_seconds, 4), "smooth_hops": spotter.smooth_hops,
        "keyword_stream": {"clips": len(positive_items), "seconds": round(positive.seconds, 2),
                           "clip_accuracy": keyword_clip_accuracy(model, positive_items),
                           **scored},
        "keyword_free_stream": {
            "items": len(negative_items), "seconds": round(negative.seconds, 2),
            "false_alarms": len(negative.detections),
            "false_alarms_per_hour": false_alarms_per_hour(negative.detections, negative.seconds),
            "detections": collections.Counter(d.label for d in negative.detections)},
        "sweep": sweep(model, positive, negative, thresholds, settings.refractory_seconds,
                       reach, spotter.window_seconds),
        "cost": {"rtf": round(compute / audio, 5) if audio else None,
                 "compute_seconds": round(compute, 3), "audio_seconds": round(audio, 2),
                 "windows": positive.stats.windows + negative.stats.windows,
                 "window_ms_median": round(1000 * _percentile(latencies, 50), 3),
                 "window_ms_p95": round(1000 * _percentile(latencies, 95), 3),
                 "threads": torch.get_num_threads()},
        "input": {"nonfinite_samples_zeroed": positive.stats.nonfinite_samples
                  + negative.stats.nonfinite_samples},
    }


def plot_sweep(rows, path: str, title: str = "") -> str:
    """Hit rate against false alarms per hour, one point per threshold, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ..fsio import atomic_path
    fig, ax = plt.subplots(figsize=(6, 4.5))
    xs = [r["false_alarms_per_hour"] for r in rows]
    ys = [r["hit_rate"] for r in rows]
    ax.plot(xs, ys, marker="o", markersize=3)
    for r in rows[::4]:
        ax.annotate(f"{r['threshold']:g}", (r["false_alarms_per_hour"], r["hit_rate"]),
                    fontsize=7, xytext=(3, -8), textcoords="offset points")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("false alarms per hour (keyword-free stream)")
    ax.set_ylabel("hit rate (%)")
    ax.set_title(title or "keyword spotting: threshold sweep", fontsize=9)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return path

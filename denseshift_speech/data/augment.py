"""Acoustic conditions for synthetic speech: speed, rooms, noise, telephone, gain.

Synthetic speech is studio-clean; :class:`Conditions` makes it sound recorded.  In
order, each with its own probability and range:

1. speed perturbation (tempo and pitch together, as SpeechBrain's SpeedPerturb does);
2. reverberation: the impulse response of a simulated shoebox room (image-source early
   reflections, wall absorption from the target RT60 by Sabine's formula, and a
   noise tail decaying 60 dB in the RT60);
3. additive noise of several kinds (white, pink, brown, running tap, mains hum) at an SNR
   drawn from a range;
4. a telephone channel: 8 kHz sampling, 300-3400 Hz band, 8-bit mu-law;
5. gain: the peak level in dBFS.

``Conditions.apply(x, rng)`` is a pure function of ``x`` and the generator's state, so the
evaluation splits written at synthesis time are reproducible.  Training applies the same
kinds of change on the fly (SpeechBrain's Augmenter, see the recipes); the impulse
responses and noise files it needs are written next to the corpus by
:func:`write_augmentation_sources`.  Settings that cannot be met (an SNR out of range, a
room smaller than its source-microphone spacing, an RT60 out of range) are one
:class:`DataError` each, raised before anything is synthesized.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

import numpy as np
import soundfile as sf

from .audio_checks import DataError, resample_np

SR = 16000
NOISE_KINDS = ("white", "pink", "brown", "running_tap", "hum")
SNR_LIMITS = (-10.0, 60.0)          # dB; outside, "noisy" or "clean" stops meaning anything
RT60_LIMITS = (0.05, 2.0)           # s; living rooms ~0.3-0.6, halls ~1.5-2
ROOM_LIMITS = (2.0, 30.0)           # m per side
MAX_REFLECTION_ORDER = 12           # image sources for the early part (cost ~ its cube)
TELEPHONE_BAND = (300.0, 3400.0)    # Hz


@dataclass(frozen=True)
class Conditions:
    """Ranges are ``(low, high)``, drawn uniformly; probabilities are per utterance."""
    speed: tuple = (1.0, 1.0)
    reverb_prob: float = 0.0
    rt60: tuple = (0.2, 0.7)
    room_size: tuple = (3.0, 10.0)
    noise_prob: float = 0.0
    snr_db: tuple = (10.0, 30.0)
    noise_kinds: tuple = NOISE_KINDS
    telephone_prob: float = 0.0
    peak_db: tuple = (-12.0, -2.0)

    def __post_init__(self):
        self.validate()

    def as_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def validate(self) -> None:
        _range("speed", self.speed, (0.5, 2.0))
        _range("rt60", self.rt60, RT60_LIMITS, unit="s")
        _range("room_size", self.room_size, ROOM_LIMITS, unit="m")
        _range("snr_db", self.snr_db, SNR_LIMITS, unit="dB")
        _range("peak_db", self.peak_db, (-60.0, 0.0), unit="dBFS")
        for name in ("reverb_prob", "noise_prob", "telephone_prob"):
            p = getattr(self, name)
            if not (isinstance(p, (int, float)) and 0.0 <= p <= 1.0):
                raise DataError(f"{name} must be a probability in [0, 1], got {p!r}")
        bad = [k for k in self.noise_kinds if k not in NOISE_KINDS]
        if bad or not self.noise_kinds:
            raise DataError(f"noise_kinds {list(self.noise_kinds)!r}: expected a non-empty "
                            f"subset of {list(NOISE_KINDS)}")
        if self.reverb_prob > 0:
            check_room(self.room_size, self.rt60)

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``x`` (float32, 16 kHz) under conditions drawn from ``rng``."""
        x = np.asarray(x, np.float32)
        # draw every variable up front, so one option does not shift the others' draws
        speed = rng.uniform(*self.speed)
        reverb, noise, phone = rng.random(3) < (self.reverb_prob, self.noise_prob,
                                                 self.telephone_prob)
        room_seed, noise_seed = rng.integers(0, 2**63 - 1, 2)
        snr = rng.uniform(*self.snr_db)
        kind = self.noise_kinds[int(rng.integers(len(self.noise_kinds)))]
        peak = rng.uniform(*self.peak_db)
        if speed != 1.0:
            x = speed_perturb(x, speed)
        if reverb:
            x = reverberate(x, room_impulse_response(np.random.default_rng(room_seed),
                                                     self.rt60, self.room_size))
        if noise:
            x = add_noise(x, snr, make_noise(kind, len(x), np.random.default_rng(noise_seed)))
        if phone:
            x = telephone(x)
        return set_peak(x, peak)


def _range(name, rng, limits, unit=""):
    try:
        lo, hi = (float(v) for v in rng)
    except (TypeError, ValueError):
        raise DataError(f"{name} must be a (low, high) pair, got {rng!r}") from None
    a, b = limits
    if not (math.isfinite(lo) and math.isfinite(hi) and a <= lo <= hi <= b):
        raise DataError(f"{name} range ({lo:g}, {hi:g}) {unit} is impossible: expected "
                        f"{a:g} <= low <= high <= {b:g} {unit}".replace("  ", " "))


def check_room(room_size, rt60) -> None:
    """Refuse room sizes and RT60s no shoebox room of the drawn shapes can have: the
    smallest room must hold a source and a microphone 0.5 m from every wall, and the
    largest (after its +-10 % jitter) must still reach the shortest RT60 (Sabine: a big
    room cannot be less reverberant than fully absorbing walls make it)."""
    if room_size[0] < 2.0:
        raise DataError(f"room size {room_size[0]:g} m is impossible: a source and a "
                        "microphone 0.5 m from every wall need at least 2 m")
    dims = np.array(_dims(room_size[1])) * 1.1
    try:
        sabine_absorption(rt60[0], dims)
    except DataError:
        raise DataError(f"RT60 {rt60[0]:g} s is impossible in a {room_size[1]:g} m room "
                        "(even fully absorbing walls reverberate longer); use a smaller "
                        "room_size or a longer rt60") from None


def _dims(size: float) -> list:
    return [size, 0.8 * size, min(max(2.4, 0.35 * size), size)]


# ---------------------------------------------------------------------------------------
# the changes

def speed_perturb(x: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (resampling: tempo and pitch together)."""
    num = int(round(SR / factor / 100))
    return resample_np(x, SR // 100, num) if num != SR // 100 else x


def room_impulse_response(rng: np.random.Generator, rt60=(0.2, 0.7),
                          room_size=(3.0, 10.0)) -> np.ndarray:
    """The impulse response from a random source to a random microphone in a random
    shoebox room, normalized to a unit peak and starting at the direct path."""
    t60 = float(rng.uniform(*rt60))
    size = float(rng.uniform(*room_size))
    dims = np.array(_dims(size)) * rng.uniform(0.9, 1.1, 3)
    dims[2] = max(dims[2], 2.0)
    src = rng.uniform(0.5, dims - 0.5)
    mic = src
    for _ in range(50):  # microphone 1-3 m from the source when the room allows it
        mic = rng.uniform(0.5, dims - 0.5)
        if 1.0 <= np.linalg.norm(mic - src) <= 3.0:
            break
    early = image_source_rir(dims, src, mic, sabine_absorption(t60, dims))
    start = int(np.argmax(np.abs(early)))
    h = _late_tail(early[max(0, start - 16):], t60, rng)
    return (h / (np.abs(h).max() + 1e-12)).astype(np.float32)


SPEED_OF_SOUND = 343.0


def sabine_absorption(t60: float, dims) -> float:
    """Wall absorption giving ``t60`` by Sabine's formula (RT60 = 0.161 V / (S a));
    above 1 the room is too large for that RT60."""
    lx, ly, lz = dims
    volume, surface = lx * ly * lz, 2 * (lx * ly + lx * lz + ly * lz)
    a = 0.161 * volume / (surface * t60)
    if not 0 < a <= 1:
        raise DataError(f"RT60 {t60:g} s is impossible in a {lx:.1f} x {ly:.1f} x {lz:.1f} m "
                        "room (even fully absorbing walls reverberate longer)")
    return float(a)


def image_source_rir(dims, src, mic, absorption: float,
                     max_order: int = MAX_REFLECTION_ORDER) -> np.ndarray:
    """Early impulse response of a shoebox room by the image-source method (Allen and
    Berkley, 1979): every mirror image of the source up to ``max_order`` wall
    reflections, ``sqrt(1 - absorption)`` per reflection and ``1 / distance``, placed
    at its delay with linear interpolation.  Plain numpy, so exactly reproducible."""
    beta = math.sqrt(1.0 - absorption)
    n = np.arange(-((max_order + 1) // 2), (max_order + 1) // 2 + 1)
    axes = []
    for k in range(3):
        # image coordinate (1 - 2p) s + 2 n L after |n - p| + |n| reflections
        pos = np.concatenate([src[k] + 2 * n * dims[k], -src[k] + 2 * n * dims[k]])
        refl = np.concatenate([2 * np.abs(n), np.abs(n - 1) + np.abs(n)])
        axes.append((pos - mic[k], refl))
    (dx, rx), (dy, ry), (dz, rz) = axes
    dist = np.sqrt(dx[:, None, None] ** 2 + dy[None, :, None] ** 2 + dz[None, None, :] ** 2)
    order = rx[:, None, None] + ry[None, :, None] + rz[None, None, :]
    keep = order <= max_order
    dist, order = dist[keep], order[keep]
    amp = beta ** order / np.maximum(dist, 0.1)
    delay = dist / SPEED_OF_SOUND * SR
    h = np.zeros(int(np.ceil(delay.max())) + 2)
    i = np.floor(delay).astype(np.int64)
    frac = delay - i
    np.add.at(h, i, amp * (1 - frac))
    np.add.at(h, i + 1, amp * frac)
    return h


def _late_tail(early: np.ndarray, t60: float, rng: np.random.Generator) -> np.ndarray:
    """Add the late reverberation the capped image-source order leaves out: noise
    decaying 60 dB in ``t60``, up to 1.2 * ``t60``, faded in over the early part and
    scaled so its energy there equals that of the early reflections (all but the direct
    path), which is how a diffuse field takes over from discrete reflections."""
    n = max(int(1.2 * t60 * SR), len(early))
    env = np.exp(-6.9 / t60 * np.arange(n) / SR)  # ln(1000): 60 dB in t60
    env[: len(early)] *= np.linspace(0.0, 1.0, len(early))
    reflections = float(np.sum(early ** 2) - np.max(np.abs(early)) ** 2)
    level = math.sqrt(max(reflections, 0.0) / (np.sum(env[: len(early)] ** 2) + 1e-12))
    h = rng.standard_normal(n) * env * level
    h[: len(early)] += early
    return h


def reverberate(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """``x`` convolved with ``rir``, same length, same RMS as ``x``."""
    from scipy.signal import fftconvolve
    y = fftconvolve(x.astype(np.float64), rir.astype(np.float64))[: len(x)]
    return (y * _rms(x) / (_rms(y) + 1e-12)).astype(np.float32)


def make_noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise of ``kind`` (one of NOISE_KINDS)."""
    if kind == "white":
        y = rng.standard_normal(n)
    elif kind in ("pink", "brown"):
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.arange(len(spec), dtype=np.float64)
        f[0] = 1.0
        spec /= np.sqrt(f) if kind == "pink" else f
        spec[0] = 0
        y = np.fft.irfft(spec, n)
    elif kind == "running_tap":
        spec = np.fft.rfft(rng.standard_normal(n))
        freqs = np.fft.rfftfreq(n, 1 / SR)
        spec *= np.exp(-0.5 * ((freqs - 2500) / 1200) ** 2)
        y = np.fft.irfft(spec, n)
        y *= 1 + 0.4 * np.sin(2 * np.pi * 3.1 * np.arange(n) / SR + rng.uniform(0, 6))
    elif kind == "hum":
        t = np.arange(n) / SR
        f0 = rng.choice([50.0, 60.0])
        y = sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6))
                for k in range(1, 8))
        y = y + 0.05 * rng.standard_normal(n)
    else:
        raise DataError(f"unknown noise kind {kind!r}; expected one of {list(NOISE_KINDS)}")
    y = np.asarray(y, dtype=np.float64)
    return (y / (np.sqrt(np.mean(y ** 2)) + 1e-12)).astype(np.float32)


def add_noise(x: np.ndarray, snr_db: float, noise: np.ndarray) -> np.ndarray:
    """``x`` plus ``noise`` scaled to ``snr_db`` below the speech power."""
    if not (math.isfinite(snr_db) and SNR_LIMITS[0] <= snr_db <= SNR_LIMITS[1]):
        raise DataError(f"SNR {snr_db!r} dB is impossible: expected {SNR_LIMITS[0]:g} to "
                        f"{SNR_LIMITS[1]:g} dB")
    gain = _rms(x) / (_rms(noise) + 1e-12) / 10 ** (snr_db / 20)
    return (x + gain * noise[: len(x)]).astype(np.float32)


def telephone(x: np.ndarray) -> np.ndarray:
    """A narrow-band telephone channel: 8 kHz, 300-3400 Hz, 8-bit mu-law, back to 16 kHz."""
    from scipy.signal import butter, sosfilt
    y = resample_np(x, SR, 8000).astype(np.float64)
    y = sosfilt(butter(4, TELEPHONE_BAND, btype="bandpass", fs=8000, output="sos"), y)
    scale = np.abs(y).max() + 1e-12
    mu = 255.0
    comp = np.sign(y / scale) * np.log1p(mu * np.abs(y / scale)) / np.log1p(mu)
    comp = np.round(comp * 127) / 127
    y = np.sign(comp) * np.expm1(np.abs(comp) * np.log1p(mu)) / mu * scale
    return resample_np(y.astype(np.float32), 8000, SR)[: len(x)]


def set_peak(x: np.ndarray, peak_db: float) -> np.ndarray:
    return (x / (np.abs(x).max() + 1e-9) * 10 ** (peak_db / 20)).astype(np.float32)


def _rms(x) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)))


# ---------------------------------------------------------------------------------------
# sources for on-the-fly augmentation in training

AUGMENT_DIR = "_augmentation_"


def write_augmentation_sources(corpus: str, seed: int, rirs: int = 48,
                               noise_seconds: float = 8.0, rt60=(0.2, 1.0),
                               room_size=(3.0, 8.0)) -> dict:
    """Write ``<corpus>/_augmentation_/rirs/*.wav`` (room impulse responses) and
    ``noise/*.wav`` (every noise kind), for SpeechBrain's AddReverb and AddNoise.
    Independent of the evaluation splits' draws.  Returns counts."""
    Conditions(rt60=rt60, room_size=room_size, reverb_prob=1.0)  # validate
    root = os.path.join(corpus, AUGMENT_DIR)
    os.makedirs(os.path.join(root, "rirs"), exist_ok=True)
    os.makedirs(os.path.join(root, "noise"), exist_ok=True)
    rng = np.random.default_rng([seed, 1701])
    for k in range(rirs):
        h = room_impulse_response(rng, rt60, room_size)
        sf.write(os.path.join(root, "rirs", f"rir_{k:03d}.wav"), h * 0.99, SR,
                 subtype="PCM_24")  # (float WAVs carry a time stamp: not reproducible)
    n = int(noise_seconds * SR)
    for kind in NOISE_KINDS:
        for k in range(2):
            y = make_noise(kind, n, rng)
            y = y / (np.abs(y).max() + 1e-9) * 0.5
            sf.write(os.path.join(root, "noise", f"{kind}_{k}.wav"), y, SR, subtype="PCM_16")
    return {"rirs": rirs, "noise_files": 2 * len(NOISE_KINDS)}

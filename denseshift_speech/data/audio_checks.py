"""Audio and transcript checks shared by every data pipeline.

Each check answers ``(ok, reason)``; :class:`BadAudioError` carries the file and the
reason for strict mode.  The preparers skip and list bad files unless ``strict=True``.

Policy for a wrong sample rate or multi-channel audio: *refused* by default (reason
says so); with ``resample=True`` the file is accepted as fixable and
:func:`load_fixed` returns a 16 kHz mono version (the preparers then write a fixed copy
under their save folder and point the manifest at it).
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf

# LibriSpeech transcripts: upper-case letters, apostrophe, space.
LIBRISPEECH_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ' ")


class DataError(Exception):
    """A problem with the user's data or options; one clear message."""


class BadAudioError(DataError):
    """A bad audio (or transcript) file, with its path and the reason."""

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass
class AudioInfo:
    """What :func:`inspect_audio` found out about one file."""

    path: str
    ok: bool
    reason: str = ""
    sample_rate: int = 0
    frames: int = 0
    channels: int = 0
    needs_fix: bool = False  # wrong rate / channels, accepted because resample=True
    notes: list = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def inspect_audio(path, expected_sr: int = 16000, resample: bool = False,
                  full: bool = True, min_duration: float = 0.01,
                  max_duration: float | None = None) -> AudioInfo:
    """Check one audio file.

    ``full=True`` decodes every sample (catches truncated files and NaN/inf);
    ``full=False`` reads only the header (fast, for huge corpora).
    """
    path = os.fspath(path)
    info = AudioInfo(path=path, ok=False)
    if not os.path.exists(path):
        info.reason = "file does not exist"
        return info
    if os.path.getsize(path) == 0:
        info.reason = "empty file (0 bytes)"
        return info
    try:
        hdr = sf.info(path)
    except Exception as err:  # soundfile raises RuntimeError/LibsndfileError
        info.reason = f"unreadable or not audio ({_short(err)})"
        return info
    info.sample_rate, info.frames, info.channels = hdr.samplerate, hdr.frames, hdr.channels
    short = _wav_truncation(path)
    if short:
        info.reason = short
        return info
    if hdr.frames <= 0:
        info.reason = "no audio samples (empty stream)"
        return info
    if full:
        try:
            data, _ = sf.read(path, dtype="float32", always_2d=True)
        except Exception as err:
            info.reason = f"truncated or corrupt audio data ({_short(err)})"
            return info
        if data.shape[0] < hdr.frames:
            info.reason = (f"truncated: header says {hdr.frames} samples, "
                           f"only {data.shape[0]} decoded")
            return info
        if data.shape[0] == 0:
            info.reason = "no audio samples (empty stream)"
            return info
        if not np.all(np.isfinite(data)):
            bad = int((~np.isfinite(data)).sum())
            info.reason = f"{bad} NaN/inf samples"
            return info
    dur = info.duration
    if dur < min_duration:
        info.reason = f"too short ({dur:.4f} s < {min_duration} s)"
        return info
    if max_duration is not None and dur > max_duration:
        info.reason = f"too long ({dur:.2f} s > {max_duration} s)"
        return info
    problems = []
    if hdr.channels != 1:
        problems.append(f"{hdr.channels} channels, expected mono")
    if expected_sr and hdr.samplerate != expected_sr:
        problems.append(f"sample rate {hdr.samplerate} Hz, expected {expected_sr} Hz")
    if problems:
        if not resample:
            info.reason = "; ".join(problems) + " (refused; pass resample=True to convert)"
            return info
        info.needs_fix = True
        info.notes = problems
        info.reason = "; ".join(problems) + " (will be converted to mono "
        info.reason += f"{expected_sr} Hz)"
    info.ok = True
    return info


def check_audio(path, expected_sr: int = 16000, resample: bool = False, **kw):
    """``(ok, reason)`` for one audio file; see :func:`inspect_audio`."""
    info = inspect_audio(path, expected_sr=expected_sr, resample=resample, **kw)
    return info.ok, info.reason


def check_audio_or_raise(path, expected_sr: int = 16000, resample: bool = False, **kw):
    info = inspect_audio(path, expected_sr=expected_sr, resample=resample, **kw)
    if not info.ok:
        raise BadAudioError(path, info.reason)
    return info


def check_transcript(text, token_set=LIBRISPEECH_CHARS):
    """``(ok, reason)``: non-empty and only characters from ``token_set``."""
    if text is None or not str(text).strip():
        return False, "empty transcript"
    if token_set is not None:
        bad = sorted(set(text) - set(token_set))
        if bad:
            shown = "".join(bad)
            return False, f"transcript has characters outside the token set: {shown!r}"
    return True, ""


def load_fixed(path, expected_sr: int = 16000):
    """Read ``path`` as float32 mono at ``expected_sr`` (downmix + resample)."""
    data, sr = sf.read(os.fspath(path), dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    if sr != expected_sr:
        mono = resample_np(mono, sr, expected_sr)
    return mono


def resample_np(x: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """Band-limited polyphase resampling (scipy, a SpeechBrain dependency; no threads,
    so it stays fast on a busy machine).  Falls back to torchaudio's sinc resampler."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if orig_sr == new_sr:
        return x
    g = math.gcd(int(orig_sr), int(new_sr))
    try:
        from scipy.signal import resample_poly
    except ImportError:  # pragma: no cover
        import torch
        import torchaudio.functional as AF
        return AF.resample(torch.from_numpy(x), int(orig_sr), int(new_sr)).numpy()
    return resample_poly(x, int(new_sr) // g, int(orig_sr) // g).astype(np.float32)


# ---------------------------------------------------------------------------------------
# "does it contain speech" checks (listening-free)

def frame_energies_db(x: np.ndarray, sr: int, frame_ms: float = 25.0) -> np.ndarray:
    n = max(1, int(sr * frame_ms / 1000))
    m = len(x) // n
    if m == 0:
        return np.array([-120.0])
    fr = np.asarray(x[: m * n], dtype=np.float64).reshape(m, n)
    return 10 * np.log10(np.mean(fr ** 2, axis=1) + 1e-12)


def active_duration(x: np.ndarray, sr: int, rel_db: float = 30.0) -> float:
    """Seconds of frames within ``rel_db`` dB of the loudest frame."""
    e = frame_energies_db(x, sr)
    return float((e > e.max() - rel_db).sum() * 0.025)


def speech_check(x: np.ndarray, sr: int, n_words: int, min_rms_db: float = -40.0,
                 sec_per_word=(0.06, 1.2), min_contrast_db: float = 6.0):
    """``(ok, reason)``: audio with ``n_words`` words is loud enough, has a speech-like
    energy contrast (loudest frames vs the quiet floor), and its active duration is
    plausible for that many words."""
    if len(x) == 0:
        return False, "no samples"
    rms_db = 10 * math.log10(float(np.mean(np.asarray(x, np.float64) ** 2)) + 1e-12)
    if rms_db < min_rms_db:
        return False, f"too quiet: RMS {rms_db:.1f} dBFS < {min_rms_db} dBFS"
    e = frame_energies_db(x, sr)
    contrast = float(np.percentile(e, 95) - np.percentile(e, 10))
    if contrast < min_contrast_db:
        return False, (f"flat energy (contrast {contrast:.1f} dB < {min_contrast_db} dB): "
                       "noise or a constant signal, not speech")
    act = active_duration(x, sr)
    lo, hi = sec_per_word
    if not (lo * n_words <= act <= hi * n_words + 0.5):
        return False, (f"active speech {act:.2f} s implausible for {n_words} words "
                       f"(expected {lo * n_words:.2f}-{hi * n_words + 0.5:.2f} s)")
    return True, ""


def _short(err) -> str:
    msg = re.sub(r"\s+", " ", str(err)).strip()
    return msg[:160] or type(err).__name__


def _wav_truncation(path) -> str:
    """For RIFF/WAVE files: a reason string when the data chunk is shorter than its header
    says (libsndfile silently clips the frame count to the bytes present)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return ""
            size = os.fstat(fh.fileno()).st_size
            while True:
                ch = fh.read(8)
                if len(ch) < 8:
                    return ""
                cid, clen = ch[:4], int.from_bytes(ch[4:], "little")
                if cid == b"data":
                    if clen in (0, 0xFFFFFFFF, 0x7FFFFFFF, 0x7FFFF000):  # streamed
                        return ""
                    have = size - fh.tell()
                    if have < clen:
                        return (f"truncated: data chunk declares {clen} bytes, "
                                f"only {have} present")
                    return ""
                fh.seek(clen + (clen & 1), 1)
    except OSError:
        return ""

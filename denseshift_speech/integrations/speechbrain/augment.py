"""On-the-fly augmentation for the recipes: what SpeechBrain's augmenters lack, and the
CSV lists its AddReverb / AddNoise read.

The embedded corpora carry ``_augmentation_/rirs/*.wav`` (simulated-room impulse
responses) and ``_augmentation_/noise/*.wav`` (denseshift_speech.data.augment writes
them); :func:`write_source_csvs` lists them for SpeechBrain.  SpeechBrain has no
augmenter for a telephone line or a narrow-band microphone (:class:`TelephoneChannel`,
:class:`NarrowBand`, on waveforms) nor for vocal
tract length perturbation (:class:`VocalTractWarp`, on log-mel features), and its
RandomShift moves a whole batch by one amount and changes the lengths, which AddNoise
then refuses (:class:`TimeShift` moves each clip by its own amount within its length).
"""
from __future__ import annotations

import os

import soundfile as sf
import torch
import torchaudio.functional as AF
from torch import nn

from ...fsio import atomic_open
from .hparams import HparamsError

TELEPHONE_RATE = 8000
TELEPHONE_BAND = (300.0, 3400.0)


class NarrowBand(nn.Module):
    """A narrow-band recording: the audio sampled at ``band_rate`` (8 kHz by default, as
    Bluetooth headsets, phone lines and many small-device microphones record), so nothing
    above ``band_rate / 2`` is left, then returned at ``sample_rate``.  What it takes away
    is what tells "four" from "or" and "two" from "go": the high-frequency noise of
    /f/, /th/ and /t/.

    ``forward(waveforms)`` takes ``[batch, time]`` (or ``[batch, time, channels]``) at
    ``sample_rate`` and returns the same shape."""

    def __init__(self, sample_rate: int = 16000, band_rate: int = TELEPHONE_RATE):
        super().__init__()
        if not 0 < band_rate < sample_rate:
            raise ValueError(f"{type(self).__name__} needs a sample rate above its band rate "
                             f"({band_rate} Hz), got {sample_rate}")
        self.sample_rate, self.band_rate = int(sample_rate), int(band_rate)

    def channel(self, y: torch.Tensor) -> torch.Tensor:
        """What happens to ``[..., time]`` audio while it is at ``band_rate``."""
        return y

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        channels_last = waveforms.dim() == 3
        x = waveforms.transpose(1, 2) if channels_last else waveforms
        n = x.shape[-1]
        y = self.channel(AF.resample(x, self.sample_rate, self.band_rate))
        y = AF.resample(y, self.band_rate, self.sample_rate)
        y = nn.functional.pad(y, (0, max(0, n - y.shape[-1])))[..., :n]
        return y.transpose(1, 2) if channels_last else y


class TelephoneChannel(NarrowBand):
    """A narrow-band telephone line: 8 kHz sampling, 300-3400 Hz, 8-bit mu-law.

    ``forward(waveforms)`` takes ``[batch, time]`` (or ``[batch, time, channels]``) at
    ``sample_rate`` and returns the same shape."""

    def __init__(self, sample_rate: int = 16000, quantization_channels: int = 256):
        super().__init__(sample_rate, TELEPHONE_RATE)
        self.quantization_channels = int(quantization_channels)

    def channel(self, y: torch.Tensor) -> torch.Tensor:
        y = AF.highpass_biquad(y, self.band_rate, TELEPHONE_BAND[0])
        y = AF.lowpass_biquad(y, self.band_rate, TELEPHONE_BAND[1])
        scale = y.abs().amax(dim=-1, keepdim=True).clamp_min(1e-8)
        q = AF.mu_law_encoding(y / scale, self.quantization_channels)
        return AF.mu_law_decoding(q, self.quantization_channels) * scale


class TimeShift(nn.Module):
    """Each waveform moved in time by its own random amount of at most ``max_shift_ms``
    either way, within its own length (zeros where it moved away from); the lengths stay.
    A synthetic clip's word sits where the synthesizer put it; people's words are anywhere
    in a recording's second.

    ``forward(waveforms, lengths)`` takes ``[batch, time]`` (or ``[batch, time,
    channels]``) at ``sample_rate`` and relative lengths ``[batch]`` (SpeechBrain's
    Augmenter passes both) and returns both."""

    def __init__(self, sample_rate: int = 16000, max_shift_ms: float = 100.0):
        super().__init__()
        if not max_shift_ms >= 0 or sample_rate <= 0:
            raise ValueError(f"TimeShift needs max_shift_ms >= 0 and a sample rate > 0, got "
                             f"{max_shift_ms} ms at {sample_rate} Hz")
        self.max_shift = int(round(sample_rate * max_shift_ms / 1000))

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor):
        batch, time = waveforms.shape[:2]
        shift = torch.randint(-self.max_shift, self.max_shift + 1, (batch, 1), device=waveforms.device)
        n = (lengths.to(waveforms.device).reshape(batch, 1) * time).round().long()
        t = torch.arange(time, device=waveforms.device).unsqueeze(0)
        src = t - shift
        keep = (src >= 0) & (src < n) & (t < n)
        per_sample = (batch, time) + (1,) * (waveforms.dim() - 2)  # broadcast over channels
        moved = waveforms.gather(1, src.clamp(0, time - 1).view(per_sample).expand_as(waveforms))
        return torch.where(keep.view(per_sample), moved, torch.zeros((), dtype=waveforms.dtype,
                                                                       device=waveforms.device)), lengths


class VocalTractWarp(nn.Module):
    """Vocal tract length perturbation (VTLP, Jaitly & Hinton 2013) on log-mel features:
    each utterance's spectrum is stretched along frequency by a factor drawn from
    ``[warp_low, warp_high]``, as if a speaker with a longer or shorter vocal tract said
    it -- formants move, the words stay.  The synthetic corpora have a handful of
    natural-sounding voices; this makes more of them on the fly.

    ``forward(feats)`` takes ``[batch, time, n_mels]`` features of SpeechBrain's
    ``Fbank`` (same ``n_mels``, ``sample_rate``, ``f_min``, ``f_max``: the mel bands'
    centres are recomputed here) and returns the same shape: output band i takes the
    value the input had at frequency centre_i / alpha, interpolated linearly between
    bands (clamped at the edges).  ``prob`` is each utterance's chance to be warped.
    """

    def __init__(self, n_mels: int, sample_rate: int = 16000, f_min: float = 0.0,
                 f_max: float | None = None, warp_low: float = 0.88, warp_high: float = 1.12,
                 prob: float = 1.0):
        super().__init__()
        f_max = sample_rate / 2 if f_max is None else f_max
        if not 0 < warp_low <= warp_high:
            raise ValueError(f"VocalTractWarp needs 0 < warp_low <= warp_high, got "
                             f"{warp_low}, {warp_high}")
        if not 0 <= prob <= 1:
            raise ValueError(f"VocalTractWarp prob must be in [0, 1], got {prob}")
        if not 0 <= f_min < f_max <= sample_rate / 2:
            raise ValueError(f"VocalTractWarp needs 0 <= f_min < f_max <= sample_rate / 2, "
                             f"got {f_min}, {f_max} at {sample_rate} Hz")
        self.n_mels, self.warp_low, self.warp_high, self.prob = n_mels, warp_low, warp_high, prob
        lo, hi = _mel(torch.tensor(float(f_min))), _mel(torch.tensor(float(f_max)))
        self.mel_lo, self.mel_step = lo, (hi - lo) / (n_mels + 1)
        # band i's centre sits at mel point i + 1 of n_mels + 2 (Fbank's triangles)
        self.register_buffer("centres_hz", _hz(lo + self.mel_step * torch.arange(1, n_mels + 1)),
                             persistent=False)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if feats.dim() != 3 or feats.shape[-1] != self.n_mels:
            raise ValueError(f"VocalTractWarp expects [batch, time, {self.n_mels}] features, "
                             f"got shape {tuple(feats.shape)}")
        batch = feats.shape[0]
        alpha = torch.empty(batch).uniform_(self.warp_low, self.warp_high)
        warped = (torch.rand(batch) < self.prob).to(feats.device)[:, None, None]
        source = _mel(self.centres_hz[None, :] / alpha[:, None].to(self.centres_hz))
        index = ((source - self.mel_lo) / self.mel_step - 1).clamp(0, self.n_mels - 1)
        low = index.floor().long()
        high = (low + 1).clamp(max=self.n_mels - 1)
        frac = (index - low).to(feats.dtype)[:, None, :]
        gather = lambda idx: feats.gather(2, idx[:, None, :].expand(-1, feats.shape[1], -1))
        return torch.where(warped, gather(low) * (1 - frac) + gather(high) * frac, feats)


def _mel(hz: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def _hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def write_source_csvs(folder: str, rir_csv: str | None, noise_csv: str | None) -> None:
    """List ``folder``/rirs/*.wav in ``rir_csv`` and ``folder``/noise/*.wav in
    ``noise_csv`` (SpeechBrain's ID,duration,wav,wav_format,wav_opts), skipping a CSV
    that exists.  A missing folder is one clear error."""
    for sub, csv_path in (("rirs", rir_csv), ("noise", noise_csv)):
        if not csv_path or os.path.isfile(csv_path):
            continue
        src = os.path.join(folder, sub)
        wavs = sorted(f for f in os.listdir(src) if f.endswith(".wav")) \
            if os.path.isdir(src) else []
        if not wavs:
            raise HparamsError(f"{src} has no .wav files: on-the-fly augmentation needs room "
                            "impulse responses and noise (the embedded corpora carry "
                            "them in _augmentation_/); point augmentation_folder at such "
                            "a folder or set --apply_data_augmentation=False")
        rows = []
        for f in wavs:
            path = os.path.abspath(os.path.join(src, f))
            rows.append((f"{sub}_{f[:-4]}", sf.info(path).duration, path))
        write_wave_list(csv_path, rows)


def write_wave_list(csv_path: str, rows) -> None:
    """``rows`` of (id, seconds, wav path) as the CSV SpeechBrain's AddNoise/AddReverb
    read (ID,duration,wav,wav_format,wav_opts), written under a temporary name first."""
    os.makedirs(os.path.dirname(os.path.abspath(csv_path)), exist_ok=True)
    with atomic_open(csv_path) as fh:
        fh.write("ID,duration,wav,wav_format,wav_opts\n")
        fh.writelines(f"{name},{seconds:.4f},{path},wav,\n" for name, seconds, path in rows)

"""On-the-fly wave augmentation for the recipes: what SpeechBrain's Augmenter lacks, and
the CSV lists its AddReverb / AddNoise read.

The embedded corpora carry ``_augmentation_/rirs/*.wav`` (simulated-room impulse
responses) and ``_augmentation_/noise/*.wav`` (denseshift_speech.data.augment writes
them); :func:`write_source_csvs` lists them for SpeechBrain.  :class:`TelephoneChannel`
is the one change SpeechBrain has no augmenter for.
"""
from __future__ import annotations

import os

import soundfile as sf
import torch
import torchaudio.functional as AF
from torch import nn

from .hparams import HparamsError

TELEPHONE_RATE = 8000
TELEPHONE_BAND = (300.0, 3400.0)


class TelephoneChannel(nn.Module):
    """A narrow-band telephone line: 8 kHz sampling, 300-3400 Hz, 8-bit mu-law.

    ``forward(waveforms)`` takes ``[batch, time]`` (or ``[batch, time, channels]``) at
    ``sample_rate`` and returns the same shape."""

    def __init__(self, sample_rate: int = 16000, quantization_channels: int = 256):
        super().__init__()
        if sample_rate <= TELEPHONE_RATE:
            raise ValueError(f"TelephoneChannel needs a sample rate above {TELEPHONE_RATE} "
                             f"Hz, got {sample_rate}")
        self.sample_rate = int(sample_rate)
        self.quantization_channels = int(quantization_channels)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        channels_last = waveforms.dim() == 3
        x = waveforms.transpose(1, 2) if channels_last else waveforms
        n = x.shape[-1]
        y = AF.resample(x, self.sample_rate, TELEPHONE_RATE)
        y = AF.highpass_biquad(y, TELEPHONE_RATE, TELEPHONE_BAND[0])
        y = AF.lowpass_biquad(y, TELEPHONE_RATE, TELEPHONE_BAND[1])
        scale = y.abs().amax(dim=-1, keepdim=True).clamp_min(1e-8)
        q = AF.mu_law_encoding(y / scale, self.quantization_channels)
        y = AF.mu_law_decoding(q, self.quantization_channels) * scale
        y = AF.resample(y, TELEPHONE_RATE, self.sample_rate)
        y = nn.functional.pad(y, (0, max(0, n - y.shape[-1])))[..., :n]
        return y.transpose(1, 2) if channels_last else y


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
    tmp = csv_path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write("ID,duration,wav,wav_format,wav_opts\n")
        fh.writelines(f"{name},{seconds:.4f},{path},wav,\n" for name, seconds, path in rows)
    os.replace(tmp, csv_path)

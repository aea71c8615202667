"""Audio file input for streaming, with the checks a user's file needs.

Policy (stated in messages and in the summary's ``input_notes``):
* another sample rate is **resampled** to the model's rate (torchaudio.functional.resample);
* multi-channel audio is **downmixed** (mean of the channels);
* an empty file is refused; a silent file is decoded but flagged;
* non-finite samples (NaN/inf) are replaced by zeros by the decoder, per chunk, and reported.
Reading uses soundfile (never torchaudio.load / torchaudio.io).
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch

SILENCE_PEAK = 1e-4   # peak |amplitude| below which a file counts as silent


class AudioError(ValueError):
    """An audio file that cannot be streamed (message names the file)."""


@dataclasses.dataclass
class Audio:
    path: str
    samples: torch.Tensor      # mono float32 at sample_rate (non-finite values kept as read)
    sample_rate: int
    file_sample_rate: int
    channels: int
    notes: list                # human-readable notes on what was done to the input

    @property
    def seconds(self) -> float:
        return self.samples.numel() / self.sample_rate


def read_audio(path, sample_rate: int) -> Audio:
    """Read ``path`` as mono float32 at ``sample_rate`` (see the module policy)."""
    import soundfile as sf

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AudioError(f"{path}: no such audio file")
    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception as err:  # soundfile.LibsndfileError, RuntimeError, ...
        raise AudioError(f"{path}: cannot read audio ({err})") from None
    frames, channels = data.shape
    if frames == 0 or channels == 0:
        raise AudioError(f"{path}: the file holds no audio samples (empty)")
    notes = []
    if channels > 1:
        data = data.mean(axis=1, keepdims=True)
        notes.append(f"{channels} channels downmixed to mono (mean)")
    wav = torch.from_numpy(np.ascontiguousarray(data[:, 0]))
    finite = torch.isfinite(wav)
    if not bool(finite.all()):
        notes.append(f"{int((~finite).sum())} non-finite samples (NaN/inf) will be zeroed")
    if sr != sample_rate:
        import torchaudio.functional as AF
        # resample the finite signal; non-finite positions are re-marked afterwards so the
        # decoder still sees (and reports) them, instead of NaN smearing over the filter.
        clean = torch.where(finite, wav, torch.zeros(()))
        out = AF.resample(clean.unsqueeze(0), int(sr), int(sample_rate))[0]
        if not bool(finite.all()):
            idx = torch.nonzero(~finite).flatten() * sample_rate // sr
            out[idx.clamp(max=out.numel() - 1)] = float("nan")
        wav = out.contiguous()
        notes.append(f"resampled from {sr} Hz to {sample_rate} Hz")
        if wav.numel() == 0:
            raise AudioError(f"{path}: too short to resample ({frames} samples at {sr} Hz)")
    peak = float(torch.nan_to_num(wav, nan=0.0, posinf=0.0, neginf=0.0).abs().max())
    if peak < SILENCE_PEAK:
        notes.append(f"silent (peak amplitude {peak:.2g}): expect an empty transcript")
    return Audio(path=path, samples=wav, sample_rate=int(sample_rate), file_sample_rate=int(sr),
                 channels=int(channels), notes=notes)

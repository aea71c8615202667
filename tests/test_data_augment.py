"""Acoustic conditions (denseshift_speech.data.augment) and the recipes' telephone
augmenter: reproducible, each change does what it says, impossible settings refused."""
import numpy as np
import pytest
import torch

from denseshift_speech.data import DataError
from denseshift_speech.data import augment as A

SR = 16000


def tone_bursts(seconds=2.0, seed=0):
    """Speech-like test signal: 100 ms harmonic bursts with gaps."""
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((180, 360, 900, 2500), 1))
    gate = (np.floor(t * 5) % 2 == 0).astype(np.float64)
    return (0.3 * x * gate).astype(np.float32)


def band_energy(x, lo, hi):
    spec = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    return spec[(f >= lo) & (f < hi)].sum() / spec.sum()


def test_conditions_are_a_function_of_the_generator_state():
    x = tone_bursts()
    c = A.Conditions(speed=(0.9, 1.1), reverb_prob=0.5, noise_prob=0.5, telephone_prob=0.5)
    for seed in range(6):
        a = c.apply(x, np.random.default_rng(seed))
        b = c.apply(x, np.random.default_rng(seed))
        assert np.array_equal(a, b)
    outs = {c.apply(x, np.random.default_rng(s)).tobytes() for s in range(6)}
    assert len(outs) == 6


def test_speed_perturbation_changes_duration():
    x = tone_bursts()
    assert len(A.speed_perturb(x, 1.1)) == pytest.approx(len(x) / 1.1, rel=0.01)
    assert len(A.speed_perturb(x, 0.9)) == pytest.approx(len(x) / 0.9, rel=0.01)


def test_add_noise_hits_the_snr():
    x = tone_bursts()
    for snr in (0.0, 10.0, 25.0):
        noise = A.make_noise("pink", len(x), np.random.default_rng(1))
        y = A.add_noise(x, snr, noise)
        got = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean((y - x) ** 2))
        assert got == pytest.approx(snr, abs=0.05)


def test_every_noise_kind_has_unit_rms_and_differs():
    rng = np.random.default_rng(0)
    spectra = {}
    for kind in A.NOISE_KINDS:
        y = A.make_noise(kind, SR, rng)
        assert np.sqrt(np.mean(y.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3)
        spectra[kind] = band_energy(y, 0, 300)
    assert spectra["brown"] > spectra["pink"] > spectra["white"]


def test_room_impulse_response_decays_at_its_rt60():
    """Schroeder backward integration of the response: the -5 to -25 dB slope (T20)
    matches the RT60 the room was drawn with, within 35 %."""
    for seed in range(4):
        t60 = float(np.random.default_rng(seed).uniform(0.3, 0.9))
        h = A.room_impulse_response(np.random.default_rng(seed), (0.3, 0.9), (3.0, 8.0))
        e = np.cumsum(h[::-1].astype(np.float64) ** 2)[::-1]
        edc = 10 * np.log10(e / e[0] + 1e-20)
        t20 = 3 * (np.argmax(edc < -25) - np.argmax(edc < -5)) / SR
        assert t20 == pytest.approx(t60, rel=0.35), (seed, t60, t20)
        assert np.argmax(np.abs(h)) < 20  # starts at the direct path


def test_reverberation_smears_the_gaps():
    x = tone_bursts()
    h = A.room_impulse_response(np.random.default_rng(0), (0.8, 0.9), (5.0, 6.0))
    y = A.reverberate(x, h)
    gaps = (np.floor(np.arange(len(x)) / SR * 5) % 2 == 1)
    assert np.mean(y[gaps] ** 2) > 20 * np.mean(x[gaps] ** 2) + 1e-6


def test_telephone_band_limits():
    rng = np.random.default_rng(0)
    x = A.make_noise("white", 2 * SR, rng) * 0.1
    y = A.telephone(x)
    assert len(y) == len(x)
    assert band_energy(y, 4000, 8000) < 0.01 < band_energy(x, 4000, 8000)
    assert band_energy(y, 0, 200) < 0.01


@pytest.mark.parametrize("kwargs,match", [
    (dict(snr_db=(30.0, 10.0)), "snr_db range"),
    (dict(snr_db=(5.0, float("inf"))), "snr_db range"),
    (dict(rt60=(0.3, 5.0)), "rt60 range"),
    (dict(room_size=(0.5, 4.0)), "room_size range"),
    (dict(reverb_prob=1.0, rt60=(0.1, 0.5), room_size=(3.0, 25.0)), "impossible in a 25 m room"),
    (dict(noise_prob=1.5), "probability"),
    (dict(noise_kinds=("jet_engine",)), "noise_kinds"),
    (dict(speed=(1.2, 0.8)), "speed range"),
])
def test_impossible_settings_are_refused(kwargs, match):
    with pytest.raises(DataError, match=match):
        A.Conditions(**kwargs)


def test_add_noise_refuses_an_impossible_snr():
    x = tone_bursts()
    with pytest.raises(DataError, match="SNR"):
        A.add_noise(x, float("nan"), np.ones_like(x))


def test_augmentation_sources_are_reproducible(tmp_path):
    import hashlib
    import os

    def digest(root):
        out = {}
        for d, _, files in os.walk(root):
            for f in files:
                out[f] = hashlib.sha256(open(os.path.join(d, f), "rb").read()).hexdigest()
        return out

    a, b = tmp_path / "a", tmp_path / "b"
    assert A.write_augmentation_sources(str(a), 3, rirs=6, noise_seconds=1.0) == \
        {"rirs": 6, "noise_files": 2 * len(A.NOISE_KINDS)}
    A.write_augmentation_sources(str(b), 3, rirs=6, noise_seconds=1.0)
    assert digest(a) == digest(b) and len(digest(a)) == 6 + 10


def test_telephone_channel_module_matches_shape_and_band():
    from denseshift_speech.integrations.speechbrain.augment import TelephoneChannel
    torch.manual_seed(0)
    x = torch.randn(3, SR) * 0.1
    y = TelephoneChannel(SR)(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    for row in y.numpy():
        assert band_energy(row, 4200, 8000) < 0.02
    assert TelephoneChannel(SR)(x.unsqueeze(-1)).shape == (3, SR, 1)
    with pytest.raises(ValueError, match="sample rate"):
        TelephoneChannel(8000)


def test_narrow_band_keeps_speech_band_and_drops_the_rest():
    """8 kHz sampling keeps what lies below 4 kHz (unlike the telephone line, the lows and
    the level too) and removes what lies above; shapes and channels kept."""
    from denseshift_speech.integrations.speechbrain.augment import NarrowBand
    torch.manual_seed(0)
    x = torch.randn(3, SR) * 0.1
    y = NarrowBand(SR)(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    f = np.fft.rfftfreq(SR, 1 / SR)
    speech_band = (f >= 100) & (f < 3600)
    for before, after in zip(x.numpy(), y.numpy()):
        assert band_energy(after, 4200, 8000) < 0.02
        kept = (np.abs(np.fft.rfft(after)) ** 2)[speech_band].sum() / \
            (np.abs(np.fft.rfft(before)) ** 2)[speech_band].sum()
        assert 0.9 < kept < 1.1
    assert NarrowBand(SR)(x.unsqueeze(-1)).shape == (3, SR, 1)
    with pytest.raises(ValueError, match="sample rate"):
        NarrowBand(8000)


def test_time_shift_moves_each_clip_within_its_length():
    """Every clip moved by its own amount of at most max_shift_ms, inside its own length
    (a padded clip's speech never goes into its padding), zeros where it left; lengths
    unchanged; channels kept; and SpeechBrain's Augmenter runs it (it takes lengths)."""
    from speechbrain.augment.augmenter import Augmenter
    from denseshift_speech.integrations.speechbrain.augment import TimeShift
    torch.manual_seed(0)
    x = torch.arange(1, 1001, dtype=torch.float).repeat(64, 1)
    lengths = torch.ones(64)
    lengths[::2] = 0.5
    y, out_lengths = TimeShift(sample_rate=1000, max_shift_ms=40)(x, lengths)
    assert torch.equal(out_lengths, lengths)
    shifts = set()
    for row, n in zip(y, (lengths * 1000).long().tolist()):
        nz = row.nonzero().flatten()
        first, last = int(nz[0]), int(nz[-1])
        shift = first - int(row[first]) + 1           # where sample 1.. now sits
        assert -40 <= shift <= 40 and last < n
        assert torch.equal(row[first:last + 1], torch.arange(1, last - first + 2, dtype=torch.float)
                           + max(0, -shift))
        shifts.add(shift)
    assert len(shifts) > 10                           # each clip its own amount
    assert TimeShift(1000, 40)(x.unsqueeze(-1), lengths)[0].shape == (64, 1000, 1)
    assert torch.equal(TimeShift(1000, 0)(x, lengths)[0][1], x[1])
    with pytest.raises(ValueError, match="max_shift_ms >= 0"):
        TimeShift(1000, -1)
    noise = torch.randn(4, 16000) * 0.01
    aug = Augmenter(augmentations=[TimeShift(16000, 100)], min_augmentations=1, max_augmentations=1)
    assert aug(noise, torch.ones(4))[0].shape == (4, 16000)


def test_vocal_tract_warp_moves_formants_and_keeps_the_rest():
    """A factor above 1 moves a spectral peak up the mel bands, below 1 down; 1 changes
    nothing; the result is an interpolation of the input's own values (no new energy),
    and Fbank's band centres are the ones it warps."""
    from speechbrain.lobes.features import Fbank

    from denseshift_speech.integrations.speechbrain.augment import VocalTractWarp
    t = torch.arange(SR) / SR
    tone = torch.sin(2 * torch.pi * 1000 * t)[None]            # one "formant" at 1 kHz
    feats = Fbank(sample_rate=SR, n_mels=40)(tone)               # [1, frames, 40]
    peak = int(feats[0].mean(0).argmax())
    for factor, moved in ((1.15, 1), (0.87, -1)):
        warp = VocalTractWarp(40, SR, warp_low=factor, warp_high=factor)
        up = warp(feats)
        assert up.shape == feats.shape
        assert int(up[0].mean(0).argmax()) * moved > peak * moved
        assert up.max() <= feats.max() + 1e-5 and up.min() >= feats.min() - 1e-5
    same = VocalTractWarp(40, SR, warp_low=1.0, warp_high=1.0)(feats)
    assert torch.allclose(same, feats, atol=1e-4)
    never = VocalTractWarp(40, SR, warp_low=0.8, warp_high=0.8, prob=0.0)(feats)
    assert torch.equal(never, feats)
    with pytest.raises(ValueError, match=r"\[batch, time, 40\]"):
        VocalTractWarp(40, SR)(feats[..., :24])
    with pytest.raises(ValueError, match="warp_low <= warp_high"):
        VocalTractWarp(40, SR, warp_low=1.2, warp_high=0.9)
    with pytest.raises(ValueError, match="prob"):
        VocalTractWarp(40, SR, prob=1.5)


def test_source_csvs_list_the_files_or_say_what_is_missing(tmp_path):
    from denseshift_speech.integrations.speechbrain.augment import write_source_csvs
    from denseshift_speech.integrations.speechbrain.hparams import HparamsError
    A.write_augmentation_sources(str(tmp_path), 0, rirs=3, noise_seconds=1.0)
    folder = tmp_path / A.AUGMENT_DIR
    write_source_csvs(str(folder), str(tmp_path / "rirs.csv"), str(tmp_path / "noise.csv"))
    rirs = (tmp_path / "rirs.csv").read_text().splitlines()
    assert rirs[0] == "ID,duration,wav,wav_format,wav_opts" and len(rirs) == 4
    assert len((tmp_path / "noise.csv").read_text().splitlines()) == 11
    with pytest.raises(HparamsError, match="apply_data_augmentation=False"):
        write_source_csvs(str(tmp_path / "nowhere"), str(tmp_path / "r2.csv"), None)

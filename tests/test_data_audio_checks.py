"""Audio / transcript checks: every bad case is caught with its reason."""
import numpy as np
import pytest
import soundfile as sf

from denseshift_speech.data.audio_checks import (BadAudioError, check_audio,
                                                 check_audio_or_raise, check_transcript,
                                                 inspect_audio, load_fixed, speech_check)

SR = 16000


def tone(seconds=1.0, sr=SR, channels=1):
    t = np.arange(int(seconds * sr)) / sr
    x = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return np.stack([x] * channels, 1) if channels > 1 else x


@pytest.fixture
def good(tmp_path):
    p = tmp_path / "good.flac"
    sf.write(p, tone(), SR, subtype="PCM_16")
    return p


def test_good_file_ok(good):
    assert check_audio(good) == (True, "")
    info = inspect_audio(good)
    assert info.sample_rate == SR and info.channels == 1 and abs(info.duration - 1.0) < 1e-6


def test_missing_file(tmp_path):
    ok, why = check_audio(tmp_path / "nope.flac")
    assert not ok and "does not exist" in why


def test_empty_file(tmp_path):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    ok, why = check_audio(p)
    assert not ok and "empty file" in why


def test_non_audio_file(tmp_path):
    p = tmp_path / "text.flac"
    p.write_text("this is not audio at all\n" * 20)
    ok, why = check_audio(p)
    assert not ok and "not audio" in why


@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
def test_truncated_file(tmp_path, fmt):
    p = tmp_path / f"t.{fmt.lower()}"
    rng = np.random.default_rng(0)
    sf.write(p, (0.3 * rng.standard_normal(SR * 2)).astype(np.float32), SR, format=fmt,
             subtype="PCM_16")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    ok, why = check_audio(p)
    assert not ok
    assert "truncated" in why or "corrupt" in why or "unreadable" in why


def test_zero_frames(tmp_path):
    p = tmp_path / "zero.wav"
    sf.write(p, np.zeros(0, np.float32), SR, subtype="PCM_16")
    ok, why = check_audio(p)
    assert not ok and "no audio samples" in why


def test_too_short(tmp_path):
    p = tmp_path / "short.wav"
    sf.write(p, tone(0.002), SR, subtype="PCM_16")
    ok, why = check_audio(p)
    assert not ok and "too short" in why


def test_wrong_sample_rate_refused_or_resampled(tmp_path):
    p = tmp_path / "8k.wav"
    sf.write(p, tone(1.0, sr=8000), 8000, subtype="PCM_16")
    ok, why = check_audio(p)
    assert not ok and "sample rate 8000 Hz, expected 16000 Hz" in why and "refused" in why
    ok, why = check_audio(p, resample=True)
    assert ok and "converted" in why
    y = load_fixed(p)
    assert abs(len(y) - SR) <= 1


def test_multichannel(tmp_path):
    p = tmp_path / "stereo.wav"
    sf.write(p, tone(channels=2), SR, subtype="PCM_16")
    ok, why = check_audio(p)
    assert not ok and "2 channels, expected mono" in why
    assert check_audio(p, resample=True)[0]
    assert load_fixed(p).ndim == 1


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf(tmp_path, bad):
    p = tmp_path / "nan.wav"
    x = tone()
    x[100:110] = bad
    sf.write(p, x, SR, subtype="FLOAT")
    ok, why = check_audio(p)
    assert not ok and "10 NaN/inf samples" in why
    # header-only mode cannot see it (documented), but still reads the header
    assert check_audio(p, full=False)[0]


def test_strict_error_names_file_and_reason(tmp_path):
    p = tmp_path / "stereo.wav"
    sf.write(p, tone(channels=2), SR, subtype="PCM_16")
    with pytest.raises(BadAudioError) as ei:
        check_audio_or_raise(p)
    assert str(p) in str(ei.value) and "channels" in str(ei.value)
    assert ei.value.path == str(p) and "mono" in ei.value.reason


@pytest.mark.parametrize("text,frag", [("", "empty"), ("   ", "empty"),
                                       ("HELLO world", "outside the token set"),
                                       ("CALL 911", "'19'"), ("HI, THERE.", "outside")])
def test_transcript_checks(text, frag):
    ok, why = check_transcript(text)
    assert not ok and frag in why


def test_transcript_ok():
    assert check_transcript("IT'S SEVEN O'CLOCK") == (True, "")


def test_speech_check_rejects_non_speech():
    rng = np.random.default_rng(0)
    assert not speech_check(np.zeros(SR * 2, np.float32), SR, 3)[0]          # silence
    assert not speech_check((0.1 * rng.standard_normal(SR * 2)).astype(np.float32), SR, 3)[0]
    assert not speech_check(1e-4 * tone(2.0), SR, 3)[0]                     # too quiet
    # a 10-word "sentence" that is 0.3 s of sound is implausible
    x = np.zeros(SR * 2, np.float32)
    x[:int(0.3 * SR)] = tone(0.3)
    ok, why = speech_check(x, SR, 10)
    assert not ok and "implausible" in why

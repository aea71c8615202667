"""Synthetic corpora: layout checks written independently of the generator, determinism,
disjoint speakers, speech content, skip-when-done, CLI."""
import hashlib
import json
import os
import random
import re
import shutil

import numpy as np
import pytest
import soundfile as sf

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                reason="espeak-ng not installed")

from denseshift_speech.data import DataError  # noqa: E402
from denseshift_speech.data.audio_checks import speech_check  # noqa: E402
from denseshift_speech.data.synth import (synthesize_librispeech,  # noqa: E402
                                          synthesize_speech_commands)

LS_KW = dict(train_utts=40, dev_utts=8, test_utts=8, test_other_utts=8, train_speakers=8,
             dev_speakers=2, test_speakers=6, test_other_speakers=2, lm_sentences=300, jobs=2)
CORE = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
GSC_KW = dict(words=tuple(CORE) + ("bed", "cat", "marvin"), train_speakers=3,
              valid_speakers=2, test_speakers=2, test_other_speakers=2, repeats=1,
              filler_prob=0.7,
              noise_seconds=12.0, jobs=2)


def run_verb(argv):
    """The real command line: ``denseshift-speech ARGV`` -> exit code."""
    from denseshift_speech.cli import main
    return main(argv)


@pytest.fixture(scope="module")
def ls(tmp_path_factory):
    a = tmp_path_factory.mktemp("ls_a")
    b = tmp_path_factory.mktemp("ls_b")
    sa = synthesize_librispeech(a, seed=3, **LS_KW)
    sb = synthesize_librispeech(b, seed=3, **LS_KW)
    return a, b, sa, sb


@pytest.fixture(scope="module")
def gsc(tmp_path_factory):
    a = tmp_path_factory.mktemp("gsc_a")
    b = tmp_path_factory.mktemp("gsc_b")
    sa = synthesize_speech_commands(a, seed=5, **GSC_KW)
    sb = synthesize_speech_commands(b, seed=5, **GSC_KW)
    return a, b, sa, sb


def tree_digest(root, skip=(".denseshift_synth.json",)):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            if f in skip:
                continue
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


# ---------------------------------------------------------------- LibriSpeech layout

LS_SPLITS = {"train-clean-100", "dev-clean", "test-clean", "test-other"}
UTT_LINE = re.compile(r"^(\d+)-(\d+)-(\d{4}) ([A-Z']+(?: [A-Z']+)*)$")


def check_librispeech_layout(root):
    """Independent checker of the LibriSpeech layout; returns {split: {spk: [texts]}}."""
    top = set(os.listdir(root))
    assert LS_SPLITS <= top, top
    assert top - LS_SPLITS <= {"SPEAKERS.TXT", ".denseshift_synth.json", "_augmentation_",
                               "librispeech-lm-norm.txt"}, top
    out = {}
    for split in LS_SPLITS:
        out[split] = {}
        for spk in os.listdir(os.path.join(root, split)):
            assert spk.isdigit(), spk
            for chap in os.listdir(os.path.join(root, split, spk)):
                assert chap.isdigit(), chap
                cdir = os.path.join(root, split, spk, chap)
                files = sorted(os.listdir(cdir))
                trans = f"{spk}-{chap}.trans.txt"
                assert trans in files
                flacs = [f for f in files if f != trans]
                assert all(re.fullmatch(rf"{spk}-{chap}-\d{{4}}\.flac", f) for f in flacs), flacs
                with open(os.path.join(cdir, trans)) as fh:
                    lines = fh.read().splitlines()
                ids = []
                for line in lines:
                    m = UTT_LINE.match(line)
                    assert m, line
                    assert (m.group(1), m.group(2)) == (spk, chap)
                    ids.append(line.split(" ", 1)[0])
                    text = m.group(4)
                    info = sf.info(os.path.join(cdir, ids[-1] + ".flac"))
                    assert info.samplerate == 16000 and info.channels == 1
                    assert info.format == "FLAC" and info.subtype == "PCM_16"
                    n = len(text.split())
                    assert 0.25 < info.duration < 20  # single words are short
                    assert 0.12 * n < info.duration < 1.5 * n + 1.0, (line, info.duration)
                    out[split].setdefault(spk, []).append(text)
                assert sorted(ids) == sorted(f[:-5] for f in flacs)
                assert ids == sorted(ids)
    return out


def test_librispeech_layout_and_stats(ls):
    a, _, stats, _ = ls
    content = check_librispeech_layout(a)
    for split, n in (("train-clean-100", 40), ("dev-clean", 8), ("test-clean", 8),
                     ("test-other", 8)):
        assert sum(len(v) for v in content[split].values()) == n
        assert stats[split]["utterances"] == n
        assert stats[split]["speakers"] == len(content[split])
        vocab = {w for v in content[split].values() for t in v for w in t.split()}
        assert stats[split]["vocabulary"] == len(vocab)
        assert stats[split]["hours"] > 0
    assert stats["total"]["utterances"] == 64
    assert stats["speech_check_failures"] == 0


def test_librispeech_lm_text_is_held_out_text(ls):
    """librispeech-lm-norm.txt: the asked number of transcript-style sentences, made only
    of training words, no dev or test grammar sentence among them (the LM must not have
    read the test set; only short device utterances may be shared), and most of them new
    text rather than training transcripts."""
    a, _, stats, _ = ls
    content = check_librispeech_layout(a)
    with open(os.path.join(a, "librispeech-lm-norm.txt")) as fh:
        lines = fh.read().splitlines()
    assert len(lines) == 300 == stats["lm_text"]["sentences"]
    assert stats["lm_text"]["words"] == sum(len(t.split()) for t in lines)
    assert all(re.fullmatch(r"[A-Z']+(?: [A-Z']+)*", t) for t in lines)
    texts = {s: {t for v in content[s].values() for t in v} for s in content}
    train_words = {w for t in texts["train-clean-100"] for w in t.split()}
    assert {w for t in lines for w in t.split()} <= train_words
    held_out = texts["dev-clean"] | texts["test-clean"] | texts["test-other"]
    assert all(len(t.split()) <= 7 for t in held_out & set(lines))  # device utterances
    distinct = set(lines)  # (40 training sentences allow few words: lines repeat)
    assert len(distinct) > 100 and len(distinct - texts["train-clean-100"]) > 0.8 * len(distinct)


def test_lm_text_keeps_device_utterances_and_leaves_out_held_out_sentences():
    """A held-out grammar sentence never reaches the LM text; a device utterance (a single
    command word, a digit) does, even when a held-out split says it: without them the LM
    knows no one-word utterance "DOWN" and hears "DO"."""
    from denseshift_speech.data import grammar
    from denseshift_speech.data.synth import _lm_text
    rng = random.Random(0)
    train = [grammar.sentence(rng) for _ in range(3000)] + \
        [grammar.device_utterance(rng) for _ in range(3000)]
    sentence = next(t for t in train if len(t.split()) > 8)
    texts = {"train-clean-100": train, "dev-clean": ["DOWN", sentence],
             "test-clean": ["ZERO"], "test-other": ["OFF"]}
    lines = _lm_text(texts, random.Random(1), 4000, None, device_share=0.3)
    assert len(lines) == 4000
    assert {"DOWN", "ZERO", "OFF"} <= set(lines)
    assert sentence not in lines
    vocab = {w for t in train for w in t.split()}
    assert {w for t in lines for w in t.split()} <= vocab


def test_options_only_writes_nothing_and_differences_name_each_setting(tmp_path):
    """``options_only`` returns what the marker would record without touching the folder;
    corpus_differences lists each setting a finished corpus differs in (engine versions
    aside), and nothing for a folder without a marker."""
    from denseshift_speech.data.synth import MARKER, corpus_differences
    out = tmp_path / "corpus"
    asked = synthesize_speech_commands(out, **dict(GSC_KW, options_only=True))
    assert not out.exists()
    assert corpus_differences(out, asked) == []
    out.mkdir()
    written = json.loads(json.dumps(asked))
    written["speakers"]["train"] = 60
    written["engines"] = {name: "0.0-other" for name in asked["engines"]}
    (out / MARKER).write_text(json.dumps({"options": written, "stats": {}}))
    assert corpus_differences(out, asked) == [
        f"speakers: written {written['speakers']}, asked {asked['speakers']}"]


def test_librispeech_bad_lm_sentences_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="lm_sentences must be a whole number >= 0"):
        synthesize_librispeech(tmp_path / "x", **dict(LS_KW, lm_sentences=-5))
    assert not (tmp_path / "x").exists()


def test_librispeech_deterministic(ls, tmp_path):
    a, b, sa, sb = ls
    da, db = tree_digest(a), tree_digest(b)
    assert da == db and len(da) > 60
    sa, sb = dict(sa), dict(sb)
    sa.pop("seconds"), sb.pop("seconds")
    assert sa == sb
    c = tmp_path / "c"
    kw = dict(LS_KW, train_utts=12, dev_utts=4, test_utts=6, test_other_utts=4)
    synthesize_librispeech(c, seed=4, **kw)
    assert tree_digest(c) != da


def test_librispeech_held_out_splits_do_not_depend_on_the_training_set(ls, tmp_path):
    """More training speakers leave dev/test audio and SPEAKERS.TXT rows unchanged, so
    a more varied training set is measured on the same test set.  (Held-out sentences
    only use training words, so the training *sentences* may change them.)"""
    a = ls[0]
    bigger = tmp_path / "bigger"
    synthesize_librispeech(bigger, seed=3, **dict(LS_KW, train_speakers=9))
    held_out = ("dev-clean", "test-clean", "test-other")
    digest = {root: {k: v for k, v in tree_digest(root).items() if k.split(os.sep)[0] in held_out}
              for root in (a, bigger)}
    assert digest[a] == digest[bigger] and len(digest[a]) >= 24
    rows = {root: [line.split("|")[2:] for line in open(os.path.join(root, "SPEAKERS.TXT"))
                   if not line.startswith(";") and "train" not in line] for root in (a, bigger)}
    assert rows[a] == rows[bigger]
    assert len(os.listdir(bigger / "train-clean-100")) == 9


def test_librispeech_speakers_disjoint(ls):
    a = ls[0]
    spk = {s: set(os.listdir(os.path.join(a, s))) for s in LS_SPLITS}
    splits = sorted(LS_SPLITS)
    for i, s in enumerate(splits):
        for t in splits[i + 1:]:
            assert not spk[s] & spk[t], (s, t)
    # and the voices behind them (voice+variant from SPEAKERS.TXT) are disjoint too
    voices = {}
    for line in open(os.path.join(a, "SPEAKERS.TXT")):
        if line.startswith(";"):
            continue
        sid, sex, subset, minutes, name = [x.strip() for x in line.split("|")]
        voices.setdefault(subset, set()).add(name.split()[0])
    for i, s in enumerate(splits):
        for t in splits[i + 1:]:
            assert not voices[s] & voices[t]


def test_librispeech_test_words_seen_in_train(ls):
    content = check_librispeech_layout(ls[0])
    train = {w for v in content["train-clean-100"].values() for t in v for w in t.split()}
    for s in ("dev-clean", "test-clean", "test-other"):
        words = {w for v in content[s].values() for t in v for w in t.split()}
        assert words <= train, words - train


def test_librispeech_contains_speech(ls):
    root = ls[0]
    for d, _, files in os.walk(root):
        for f in files:
            if f.endswith(".trans.txt"):
                for line in open(os.path.join(d, f)):
                    uid, text = line.split(" ", 1)
                    x, sr = sf.read(os.path.join(d, uid + ".flac"), dtype="float32")
                    ok, why = speech_check(x, sr, len(text.split()))
                    assert ok, (uid, why)
                    # duration grows with the number of words
                    assert len(x) / sr > 0.15 * len(text.split())


def test_librispeech_audio_matches_its_transcript(ls):
    """Utterance length follows transcript length (a shifted or swapped text/audio pairing
    would destroy the correlation)."""
    root = os.path.join(ls[0], "train-clean-100")
    chars, secs = [], []
    for d, _, files in os.walk(root):
        for f in files:
            if f.endswith(".trans.txt"):
                for line in open(os.path.join(d, f)):
                    uid, text = line.split(" ", 1)
                    if len(text.split()) < 3:  # a short word's pauses outweigh it
                        continue
                    chars.append(len(text.strip()))
                    secs.append(sf.info(os.path.join(d, uid + ".flac")).duration)
    assert np.corrcoef(chars, secs)[0, 1] > 0.6
    per_char = np.array(secs) / np.array(chars)
    assert per_char.min() > 0.02 and per_char.max() < 0.2


def test_librispeech_test_other_is_harder(ls):
    """test-other is noisier than test-clean (its speaking rate is the same)."""
    root = ls[0]

    def floor_and_rate(split):
        floors, rates = [], []
        for d, _, files in os.walk(os.path.join(root, split)):
            for f in files:
                if f.endswith(".trans.txt"):
                    for line in open(os.path.join(d, f)):
                        uid, text = line.split(" ", 1)
                        x, sr = sf.read(os.path.join(d, uid + ".flac"), dtype="float32")
                        e = 10 * np.log10(np.mean(x[: len(x) // 400 * 400].reshape(-1, 400) ** 2, 1) + 1e-12)
                        floors.append(np.percentile(e, 95) - np.percentile(e, 10))
                        rates.append(len(text.split()) / (len(x) / sr))
        return np.median(floors), np.median(rates)

    (c_clean, r_clean), (c_other, r_other) = floor_and_rate("test-clean"), floor_and_rate("test-other")
    assert c_other < c_clean  # less contrast above the noise floor
    assert 0.6 < r_other / r_clean < 1.6


def test_librispeech_skip_when_done_and_refuse_foreign(ls, tmp_path):
    a = ls[0]
    before = {p: os.path.getmtime(os.path.join(a, p)) for p in tree_digest(a)}
    stats = synthesize_librispeech(a, seed=3, **LS_KW)
    assert stats == ls[2]
    after = {p: os.path.getmtime(os.path.join(a, p)) for p in tree_digest(a)}
    assert before == after
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("user data")
    with pytest.raises(DataError, match="not empty"):
        synthesize_librispeech(foreign, seed=0, **LS_KW)
    assert (foreign / "precious.txt").exists()


# ---------------------------------------------------------------- Speech Commands layout

FILE_RE = re.compile(r"^[0-9a-f]{8}_nohash_\d+\.wav$")


def check_speech_commands_layout(root, core=CORE):
    top = set(os.listdir(root))
    assert {"validation_list.txt", "testing_list.txt", "_background_noise_",
            "testing_other_list.txt", "_other_engine_", "_augmentation_"} <= top
    words = sorted(d for d in top if os.path.isdir(os.path.join(root, d))
                   and not d.startswith("_"))
    other = open(os.path.join(root, "testing_other_list.txt")).read().splitlines()
    assert other and all(line.startswith("_other_engine_/") for line in other)
    assert sorted(os.listdir(os.path.join(root, "_other_engine_"))) == words
    for line in other:
        info = sf.info(os.path.join(root, line))
        assert (info.samplerate, info.channels, info.frames) == (16000, 1, 16000)
    assert set(core) <= set(words)
    assert len(words) > len(core)  # filler words for 'unknown'
    spk_of = {}
    for w in words:
        for f in os.listdir(os.path.join(root, w)):
            assert FILE_RE.match(f), f
            info = sf.info(os.path.join(root, w, f))
            assert (info.samplerate, info.channels, info.frames) == (16000, 1, 16000)
            assert info.format == "WAV" and info.subtype == "PCM_16"
            spk_of[f"{w}/{f}"] = f.split("_nohash_")[0]
    lists = {}
    for name in ("validation_list.txt", "testing_list.txt"):
        lines = open(os.path.join(root, name)).read().splitlines()
        assert lines and all(line in spk_of for line in lines)
        lists[name] = set(lines)
    assert not lists["validation_list.txt"] & lists["testing_list.txt"]
    train = set(spk_of) - lists["validation_list.txt"] - lists["testing_list.txt"]
    spk = {k: {spk_of[x] for x in v} for k, v in
           (("train", train), ("valid", lists["validation_list.txt"]),
            ("test", lists["testing_list.txt"]))}
    assert not spk["train"] & spk["valid"]
    assert not spk["train"] & spk["test"]
    assert not spk["valid"] & spk["test"]
    bg = [f for f in os.listdir(os.path.join(root, "_background_noise_")) if f.endswith(".wav")]
    assert bg
    for f in bg:
        info = sf.info(os.path.join(root, "_background_noise_", f))
        assert info.samplerate == 16000 and info.channels == 1 and info.duration >= 10
    return spk_of, spk


def test_speech_commands_layout(gsc):
    a, _, stats, _ = gsc
    spk_of, spk = check_speech_commands_layout(a)
    other = open(os.path.join(a, "testing_other_list.txt")).read().splitlines()
    assert stats["total"]["utterances"] == len(spk_of) + len(other)
    assert stats["train"]["speakers"] == len(spk["train"]) == 3
    assert stats["speech_check_failures"] == 0
    for rel in spk_of:
        x, sr = sf.read(os.path.join(a, rel), dtype="float32")
        ok, why = speech_check(x, sr, 1)
        assert ok, (rel, why)
        # the word is roughly centred: energy centroid in the middle half
        e = x.astype(np.float64) ** 2
        centroid = (np.arange(len(e)) * e).sum() / e.sum() / len(e)
        assert 0.2 < centroid < 0.8, rel


def test_speech_commands_deterministic(gsc):
    a, b, sa, sb = gsc
    assert tree_digest(a) == tree_digest(b)


def test_cli_synth(tmp_path, capsys):
    main = run_verb
    out = tmp_path / "sc"
    args = ["synth", "speech-commands", str(out), "--seed", "1", "--train-speakers", "2",
            "--valid-speakers", "1", "--test-speakers", "1", "--test-other-speakers", "1",
            "--repeats", "1",
            "--filler-prob", "0", "--noise-seconds", "10", "--words",
            ",".join(CORE + ["cat"])]
    assert main(args) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["total"]["utterances"] == 40 + 3 + 11  # + the festival speaker's 11
    check_speech_commands_layout(out)
    assert main(args) == 0  # second run: skipped, same stats
    again = json.loads(capsys.readouterr().out)
    assert again == stats
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x").write_text("x")
    assert main(["synth", "librispeech", str(foreign)]) == 2
    assert "not empty" in capsys.readouterr().err


# ---------------------------------------------------------------- engines and splits

def speakers_txt(root):
    """{subset: [(engine, voice)]} from SPEAKERS.TXT."""
    out = {}
    for line in open(os.path.join(root, "SPEAKERS.TXT")):
        if line.startswith(";"):
            continue
        sid, sex, subset, minutes, name = [x.strip() for x in line.split("|")]
        engine, voice = name.split()[0].split(":")
        out.setdefault(subset, []).append((engine, voice))
    return out


# The voices each split may use, per engine, as README documents them (written here
# independently of synth.ROLE_VOICES).  flite's kal/kal16, RHVoice's slt and flite's slt
# record the people of festival's kal_diphone and slt voices: never in training.
KOKORO_DEV = {"af_river", "am_eric", "bf_lily", "bm_lewis"}
KOKORO_TEST = {"af_nova", "am_echo", "bf_isabella", "bm_fable"}
DOCUMENTED_VOICES = {
    "train-clean-100": {"flite": {"awb", "rms"}, "mbrola": {"mb-us1", "mb-us2"},
                        "pico": {"en-US", "en-GB"},
                        "rhvoice": {"bdl", "clb", "alan", "evgeniy-eng"},
                        "kokoro": None, "piper": {"joe"}},   # kokoro: see below
    "dev-clean": {"flite": {"kal16"}, "kokoro": KOKORO_DEV},
    "test-clean": {"flite": {"slt"}, "mbrola": {"mb-en1"}, "rhvoice": {"lyubov"},
                   "kokoro": KOKORO_TEST},
}


def kokoro_parents(voice):
    """The Kokoro voices of a voice or of a blend ``a+b@w``."""
    return {v.split("@")[0] for v in voice.split("+")}


def test_engines_are_dealt_by_weight():
    from denseshift_speech.data.synth import ENGINE_WEIGHTS, _deal
    names = ["flite", "mbrola", "pico", "rhvoice", "kokoro", "piper"]
    for n in range(0, 40):
        counts = _deal(n, names)
        assert sum(counts) == n
        weights = [ENGINE_WEIGHTS.get(e, 1) for e in names]
        for c, w in zip(counts, weights):
            assert abs(c - n * w / sum(weights)) < 1  # largest remainders
    assert _deal(12, names) == [1, 1, 1, 1, 6, 2]


def test_librispeech_engines_of_each_split(ls):
    """train/dev/test-clean: espeak-ng plus the other training engines on the documented,
    disjoint voices, ENGINE_SHARE of the speakers; test-other: festival only, an engine
    (and speakers) never used in training."""
    from denseshift_speech.data.synth import ENGINE_SHARE
    spk = speakers_txt(ls[0])
    for split, allowed in DOCUMENTED_VOICES.items():
        by_engine = {}
        for e, v in spk[split]:
            by_engine.setdefault(e, set()).add(v)
        assert set(by_engine) <= {"espeak-ng"} | set(allowed), (split, by_engine)
        for e, voices in by_engine.items():
            if e == "espeak-ng":
                continue
            if allowed[e] is None:   # kokoro training voices: none of dev's or test's
                parents = set().union(*map(kokoro_parents, voices))
                assert not parents & (KOKORO_DEV | KOKORO_TEST), parents
            else:
                assert voices <= allowed[e], (split, e, voices)
        n = len(spk[split])
        others = sum(1 for e, _ in spk[split] if e != "espeak-ng")
        assert others == max(int(n >= 2), round(ENGINE_SHARE * n)), (split, spk[split])
    assert {e for e, _ in spk["test-other"]} == {"festival"}
    training = set(spk["train-clean-100"])
    assert not training & {("flite", "kal"), ("flite", "kal16"), ("flite", "slt"),
                           ("rhvoice", "slt")}
    assert not {v for _, v in training} & {v for _, v in spk["test-other"]}
    stats = ls[2]
    assert set(stats["test-other"]["engines"]) == {"festival"}
    assert "festival" not in stats["train-clean-100"]["engines"]


def test_speech_commands_other_engine_list(gsc, tmp_path):
    """testing_other_list.txt: festival speakers only, none of them in the other lists;
    the preparer turns it into test_other.csv and keeps it out of train.csv."""
    root = gsc[0]
    spk_of, spk = check_speech_commands_layout(root)
    other = open(os.path.join(root, "testing_other_list.txt")).read().splitlines()
    other_spk = {os.path.basename(p).split("_nohash_")[0] for p in other}
    assert not other_spk & (spk["train"] | spk["valid"] | spk["test"])
    assert set(gsc[2]["testing_other"]["engines"]) == {"festival"}
    assert "festival" not in gsc[2]["train"]["engines"]
    from denseshift_speech.data import prepare_speech_commands
    prepare_speech_commands(root, tmp_path, words=CORE, percentage_unknown=10,
                            percentage_silence=10)
    rows = {s: open(tmp_path / f"{s}.csv").read() for s in ("train", "test_other")}
    assert "_other_engine_" in rows["test_other"] and "_other_engine_" not in rows["train"]
    assert rows["test_other"].count("\n") > len(CORE)


def test_speech_commands_speakers_txt_names_every_speaker(gsc):
    """SPEAKERS.TXT (LibriSpeech's format) names the engine:voice of every speaker of the
    keyword-spotting corpus: festival for the held-out-engine clips only."""
    from denseshift_speech.data import read_speakers
    root = gsc[0]
    spk_of, _ = check_speech_commands_layout(root)
    other = {os.path.basename(p).split("_nohash_")[0]
             for p in open(os.path.join(root, "testing_other_list.txt")).read().split()}
    voices = read_speakers(root)
    assert set(voices) == set(spk_of.values()) | other
    assert all(voices[s].startswith("festival:") for s in other)
    assert not any(voices[s].startswith("festival:") for s in spk_of.values())
    assert read_speakers(os.path.join(root, "_background_noise_")) == {}


@pytest.mark.parametrize("engine,voice", [
    ("espeak-ng", "en-us+m3"), ("flite", "awb"), ("flite", "slt"), ("mbrola", "mb-us1"),
    ("mbrola", "mb-en1"), ("pico", "en-US"), ("pico", "en-GB"), ("rhvoice", "clb"),
    ("rhvoice", "alan"), ("festival", "ked_diphone"), ("festival", "cmu_us_slt_arctic_hts"),
    ("kokoro", "af_heart"), ("kokoro", "bm_george"), ("kokoro", "am_adam+bf_emma@0.40"),
    ("piper", "joe")])
def test_every_engine_speaks(engine, voice):
    """Listening-free: each engine's audio has speech energy, and its duration follows
    the word count (a 12-word sentence lasts clearly longer than a 3-word one)."""
    from denseshift_speech.data.engines import Speaker, synthesize
    spk = Speaker("1", engine, voice, rate=170, pitch=50)
    short, long = synthesize([("turn on the lights", 1.0),
                              ("please remind me to call my sister at half past seven "
                               "tomorrow evening", 1.0)], spk)
    for x, n in ((short, 4), (long, 13)):
        ok, why = speech_check(x, 16000, n)
        assert ok, (engine, voice, n, why)
    assert 1.8 < len(long) / len(short) < 5.0


ENGINE_PROGRAMS = ("espeak-ng", "flite", "mbrola", "pico2wave", "RHVoice-test", "festival")


def _path_without(tmp_path, missing):
    """A PATH whose bin folder links every engine program except ``missing`` (plus
    dpkg-query, which reports two engines' versions)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ENGINE_PROGRAMS + ("dpkg-query",):
        if tool != missing:
            os.symlink(shutil.which(tool), bin_dir / tool)
    return str(bin_dir)


@pytest.mark.parametrize("program,message", [
    ("flite", r"flite is not installed.*apt-get install -y flite"),
    ("mbrola", r"mbrola is not installed.*apt-get install -y mbrola"),
    ("pico2wave", r"pico is not installed.*apt-get install -y libttspico-utils"),
    ("RHVoice-test", r"rhvoice is not installed.*apt-get install -y rhvoice rhvoice-english"),
])
def test_missing_engine_is_one_clear_error_and_keeps_the_corpus(ls, tmp_path, monkeypatch,
                                                                program, message):
    a = ls[0]
    before = tree_digest(a)
    monkeypatch.setenv("PATH", _path_without(tmp_path, program))
    with pytest.raises(DataError, match=message):
        synthesize_librispeech(a, seed=9, **LS_KW)  # other options: would replace it
    assert tree_digest(a) == before


def test_missing_mbrola_voice_names_its_package(tmp_path, monkeypatch):
    from denseshift_speech.data import engines
    monkeypatch.setattr(engines.Mbrola, "DATABASES", str(tmp_path))
    with pytest.raises(DataError, match=r"mbrola voice mb-en1 .*apt-get install -y mbrola-en1"):
        engines.synthesize([("hello", 1.0)], engines.Speaker("1", "mbrola", "mb-en1", 170))


def test_empty_engine_output_keeps_written_files_and_resumes(ls, tmp_path, monkeypatch):
    """A flite that writes an empty WAV: one clear error; what was written stays, and a
    second run with a working flite finishes the same corpus as an uninterrupted run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "flite"
    fake.write_text("#!/usr/bin/env python3\nimport sys, wave\n"
                    "if '--version' in sys.argv: print('flite version fake'); sys.exit(0)\n"
                    "w = wave.open(sys.argv[sys.argv.index('-o') + 1], 'wb')\n"
                    "w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000); w.close()\n")
    fake.chmod(0o755)
    real_path = os.environ["PATH"]
    out = tmp_path / "corpus"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{real_path}")
    with pytest.raises(DataError, match="flite wrote an empty file for voice"):
        synthesize_librispeech(out, seed=3, **dict(LS_KW, jobs=1))
    written = [p for p in tree_digest(out) if p.endswith(".flac")]
    assert written, "the espeak-ng speakers' files written before the error are kept"
    # the marker records engine versions: resume with a flite reporting the same one
    monkeypatch.setenv("PATH", real_path)
    from denseshift_speech.data import engines
    monkeypatch.setattr(engines.Flite, "version", lambda self: "flite version fake")
    synthesize_librispeech(out, seed=3, **LS_KW)
    got = {k: v for k, v in tree_digest(out).items() if k.endswith(".flac")}
    ref = {k: v for k, v in tree_digest(ls[0]).items() if k.endswith(".flac")}
    assert got == ref


@pytest.mark.parametrize("bad,match", [
    (dict(test_other_snr=(5.0, 100.0)), "snr_db range"),
    (dict(test_other_snr=(float("nan"), 10.0)), "snr_db range"),
    (dict(rt60=(0.05, 0.3), room_size=(3.0, 30.0)), "impossible in a 30 m room"),
    (dict(room_size=(1.0, 5.0)), "room_size range"),
    (dict(rt60=(0.0, 0.5)), "rt60 range"),
])
def test_impossible_acoustic_settings_fail_before_writing(ls, bad, match):
    a = ls[0]
    before = tree_digest(a)
    with pytest.raises(DataError, match=match):
        synthesize_librispeech(a, seed=3, **dict(LS_KW, **bad))
    assert tree_digest(a) == before


def test_vocabulary_size_limits_every_split(tmp_path):
    from denseshift_speech.data.synth import common_words
    out = tmp_path / "small"
    synthesize_librispeech(out, seed=1, **dict(LS_KW, vocabulary_size=120))
    content = check_librispeech_layout(out)
    allowed = common_words(120)
    train = {w for t in sum(content["train-clean-100"].values(), []) for w in t.split()}
    assert train <= allowed
    for s in ("dev-clean", "test-clean", "test-other"):
        words = {w for t in sum(content[s].values(), []) for w in t.split()}
        assert words <= train
    with pytest.raises(DataError, match="vocabulary_size"):
        synthesize_librispeech(tmp_path / "none", seed=1, **dict(LS_KW, vocabulary_size=0))


def test_a_corpus_of_an_older_generator_is_outdated(ls, tmp_path):
    from denseshift_speech.data.synth import MARKER, is_outdated_corpus
    assert not is_outdated_corpus(ls[0])
    old = tmp_path / "old"
    old.mkdir()
    (old / MARKER).write_text(json.dumps({"options": {"generator": 4}, "stats": {}}))
    assert is_outdated_corpus(old)
    # versions are per kind: a LibriSpeech-layout corpus without device utterances is
    # outdated, a Speech Commands one of the same generator version is not
    for kind, outdated in (("librispeech", True), ("speech-commands", False)):
        (old / MARKER).write_text(json.dumps({"options": {"generator": 7, "kind": kind},
                                              "stats": {}}))
        assert is_outdated_corpus(old) is outdated
    assert not is_outdated_corpus(tmp_path / "missing")


@pytest.mark.parametrize("marker", ["finished", "partial"])
def test_a_corpus_of_a_newer_generator_is_never_removed(tmp_path, marker):
    """An older version of the package finds a corpus a newer one wrote (or is writing):
    one clear error, from synth and from a recipe's ensure_data, and nothing removed."""
    from denseshift_speech.data.synth import GENERATOR_VERSIONS, MARKER, PARTIAL, is_outdated_corpus
    from denseshift_speech.integrations.speechbrain import recipe
    newer = tmp_path / "newer"
    newer.mkdir()
    options = {"kind": "speech-commands", "generator": GENERATOR_VERSIONS["speech-commands"] + 1}
    if marker == "finished":
        (newer / MARKER).write_text(json.dumps({"options": options, "stats": {}}))
    else:
        (newer / PARTIAL).write_text(json.dumps(options))
    (newer / "kept.wav").write_bytes(b"RIFF")
    assert not is_outdated_corpus(newer)
    with pytest.raises(DataError, match="written by a newer version of denseshift-speech"):
        synthesize_speech_commands(newer, **GSC_KW)
    hparams = {"data_folder": str(newer), "synthesize_if_missing": True, "synth_seed": 0}
    with pytest.raises(recipe.HparamsError, match="data_folder: .* newer version"):
        recipe.ensure_data(hparams, "Speech Commands v0.02", synthesize_speech_commands, **GSC_KW)
    assert (newer / "kept.wav").exists()


def test_speech_commands_does_not_depend_on_the_hash_seed(tmp_path):
    """Two processes with different PYTHONHASHSEED write the same corpus (set iteration
    order of strings follows the hash seed; the speaker ids once did)."""
    import subprocess
    import sys
    code = ("import sys; from denseshift_speech.data.synth import synthesize_speech_commands as s;"
            "s(sys.argv[1], seed=2, words=('yes','no','up','down','left','right','on','off',"
            "'stop','go','cat'), train_speakers=2, valid_speakers=1, test_speakers=1,"
            "test_other_speakers=1, repeats=1, filler_prob=0.0, noise_seconds=4.0, jobs=1)")
    for k, hash_seed in enumerate(("1", "2")):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        subprocess.run([sys.executable, "-c", code, str(tmp_path / str(k))], env=env,
                       check=True, capture_output=True)
    assert tree_digest(tmp_path / "0") == tree_digest(tmp_path / "1")


def test_engine_program_gone_mid_run_is_the_same_clear_error():
    """The set-up check finds a missing engine first; a program removed while a corpus is
    being written still gives the message naming the package, not a FileNotFoundError."""
    from denseshift_speech.data.engines import Flite, Speaker

    class Gone(Flite):
        binary = "flite-removed-while-running"

    with pytest.raises(DataError, match=r"flite is not installed.*apt-get install -y flite"):
        Gone()._run([Gone.binary, "-t", "hello"], Speaker("1", "flite", "awb", 0))

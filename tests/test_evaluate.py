"""`denseshift-speech evaluate` and the keyword-spotter loader, on tiny model files built
here (random weights, the recipes' hparams shrunk, packed by the recipes' export_packed)
and tiny evaluation sets written in tmp_path in the three layouts.  Nothing here reads
../shared/real: the layouts are copied in miniature."""
import json
import os
import re
import types

import numpy as np
import pytest
import soundfile as sf
import torch

from denseshift_speech.cli import main as cli_main
from denseshift_speech.errors import UserError
from denseshift_speech.integrations.speechbrain import recipe
from denseshift_speech.streaming import evaluate as ev
from denseshift_speech.streaming.kws import load_kws_model
from denseshift_speech.streaming.model import ModelFileError, load_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SR = 16000
KWS_CLASSES = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
               "unknown", "silence"]
WORDS = "yes no up down left right on off stop go zero one two three four five six seven".split()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tone(seconds, seed, sr=SR):
    """A speech-like clip: a wobbling tone plus noise, different per seed."""
    g = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f = 200 + 100 * seed % 700 + 300 * np.sin(2 * np.pi * (1 + seed % 3) * t)
    x = 0.3 * np.sin(2 * np.pi * np.cumsum(f) / sr) + 0.02 * g.standard_normal(t.size)
    return x.astype(np.float32)


def _write(path, data, sr=SR):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, data, sr, subtype="PCM_16")
    return str(path)


# ------------------------------------------------------------------- model files -------

def _kws_file(folder, metadata=True):
    hparams, text = recipe.load_hparams(os.path.join(ROOT, "hparams", "kws_ds.yaml"), {
        "output_folder": str(folder), "tdnn_channels": [16, 16, 16, 16, 32], "lin_neurons": 16})
    recipe.save_resolved_hparams(str(folder), text)
    summary = recipe.apply_denseshift(hparams["modules"], hparams)
    meta = {"classes": json.dumps(KWS_CLASSES)} if metadata else None
    return recipe.export_packed(hparams, summary, "kws", metadata=meta)


@pytest.fixture(scope="module")
def kws_file(tmp_path_factory):
    """A 12-class 3-bit keyword spotter (kws_ds.yaml, shrunk, random weights), packed."""
    return _kws_file(tmp_path_factory.mktemp("kws_model"))


@pytest.fixture(scope="module")
def asr_file(tmp_path_factory):
    """A tiny 3-bit conformer CTC model (conformer_ds.yaml, shrunk, random weights) with a
    SentencePiece tokenizer trained here, packed (as tests/test_streaming.py builds it)."""
    import sentencepiece as spm
    out = tmp_path_factory.mktemp("asr_model")
    rng = np.random.default_rng(0)
    (out / "text.txt").write_text("\n".join(" ".join(rng.choice(WORDS, 5)).upper()
                                            for _ in range(200)))
    spm.SentencePieceTrainer.train(input=str(out / "text.txt"), model_prefix=str(out / "tok"),
                                   vocab_size=30, model_type="unigram", character_coverage=1.0,
                                   bos_id=-1, eos_id=-1, unk_id=0, minloglevel=2)
    overrides = {"d_model": 32, "nhead": 2, "num_encoder_layers": 1, "d_ffn": 64,
                 "kernel_size": 7, "n_mels": 40, "vocab_size": 30, "dropout": 0.0,
                 "output_folder": str(out / "run")}
    hparams, text = recipe.load_hparams(os.path.join(ROOT, "hparams", "conformer_ds.yaml"), overrides)
    recipe.save_resolved_hparams(overrides["output_folder"], text)
    norm = hparams["normalize"]
    feats = hparams["compute_features"](torch.from_numpy(_tone(2.0, 99)).unsqueeze(0))
    norm.glob_mean, norm.glob_std = feats[0].mean(0), feats[0].std(0) + 1.0
    summary = recipe.apply_denseshift(hparams["modules"], hparams)
    tokenizer = types.SimpleNamespace(prefix_model_file=str(out / "tok"))
    return recipe.export_packed(hparams, summary, "asr", tokenizer)


# --------------------------------------------------------------- evaluation sets -------

@pytest.fixture(scope="module")
def gsc(tmp_path_factory):
    """Speech Commands layout: two class words, one word that is no class (bed), the 12-class
    test set's _unknown_ (word-prefixed names, doubled .wav) and _silence_ folders, plus
    what must be ignored (background noise, a README)."""
    root = tmp_path_factory.mktemp("gsc") / "speech_commands_test"
    clips = {"yes": [("aa11", 0, 1.0), ("bb22", 0, 1.0), ("bb22", 1, 0.8)],
             "no": [("aa11", 0, 1.0), ("cc33", 2, 1.0)],
             "bed": [("cc33", 0, 1.0)]}
    seed = 0
    for word, rows in clips.items():
        for spk, n, seconds in rows:
            seed += 1
            _write(root / word / f"{spk}_nohash_{n}.wav", _tone(seconds, seed))
    _write(root / "_unknown_" / "dog_dd44_nohash_0.wav.wav", _tone(1.0, 20))
    _write(root / "_silence_" / "0.wav", 0.01 * _tone(1.0, 21))
    _write(root / "_background_noise_" / "white.wav", _tone(3.0, 22))
    (root / "README.md").write_text("clips")
    return str(root)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """Free Spoken Digit layout at 8 kHz: digits 3 and 7, speakers alice and bob."""
    root = tmp_path_factory.mktemp("fsdd") / "recordings"
    for i, name in enumerate(["3_alice_0", "3_alice_1", "3_bob_0", "7_alice_0", "7_bob_0"]):
        _write(root / f"{name}.wav", _tone(0.4 + 0.05 * i, 30 + i, sr=8000), sr=8000)
    return str(root)


@pytest.fixture(scope="module")
def transcripts(tmp_path_factory):
    """A wav,transcript CSV with relative paths."""
    root = tmp_path_factory.mktemp("csv")
    _write(root / "audio" / "a.wav", _tone(1.2, 40))
    _write(root / "audio" / "b.wav", _tone(0.9, 41))
    (root / "list.csv").write_text("wav,transcript\naudio/a.wav,Yes no!\naudio/b.wav,stop\n")
    return str(root / "list.csv")


def _run_cli(*args):
    return cli_main(["evaluate", *map(str, args)])


# ----------------------------------------------------------------------- layouts -------

def test_each_layout_is_detected_and_read(gsc, digits, transcripts):
    found = ev.read_eval_set(gsc)
    assert found.layout == "speech_commands"
    assert sorted({c.group for c in found.clips}) == ["_silence_", "_unknown_", "bed", "no", "yes"]
    assert len(found.clips) == 8                          # background noise left out
    assert any("_background_noise_" in note for note in found.notes)
    speakers = {os.path.basename(c.path): c.speaker for c in found.clips}
    assert speakers["dog_dd44_nohash_0.wav.wav"] == "dd44"  # the word prefix is not the speaker
    assert speakers["0.wav"] == ev.NO_SPEAKER
    assert {c.reference for c in found.clips if c.group.startswith("_")} == {""}

    found = ev.read_eval_set(digits)
    assert found.layout == "free_spoken_digits"
    assert [(c.reference, c.speaker) for c in found.clips] == [
        ("three", "alice"), ("three", "alice"), ("three", "bob"), ("seven", "alice"), ("seven", "bob")]

    found = ev.read_eval_set(transcripts)
    assert found.layout == "csv"
    assert [c.reference for c in found.clips] == ["Yes no!", "stop"]
    assert all(os.path.isfile(c.path) for c in found.clips)   # relative to the CSV


def test_recipe_manifest_csv_and_its_speakers(tmp_path):
    wav = _write(tmp_path / "x" / "84-121-0001.wav", _tone(0.5, 1))
    (tmp_path / "m.csv").write_text(f"ID,duration,wav,spk_id,wrd\nu1,0.5,{wav},84-121,HELLO\n")
    (clip,) = ev.read_eval_set(tmp_path / "m.csv").clips
    assert (clip.reference, clip.speaker) == ("HELLO", "84-121")


def test_a_corpus_with_testing_list_is_evaluated_on_that_list(tmp_path):
    for word in ("yes", "no"):
        for n in range(2):
            _write(tmp_path / word / f"sp{n}_nohash_0.wav", _tone(1.0, n))
    (tmp_path / "testing_list.txt").write_text("yes/sp1_nohash_0.wav\nno/sp0_nohash_0.wav\n")
    found = ev.read_eval_set(tmp_path)
    assert sorted(os.path.relpath(c.path, tmp_path) for c in found.clips) == [
        "no/sp0_nohash_0.wav", "yes/sp1_nohash_0.wav"]


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "the folder is empty"),
    (lambda p: (p / "notes.txt").write_text("x"), "found 1 file(s) (0 .wav)"),
    (lambda p: _write(p / "hello.wav", _tone(0.2, 1)), "not named <digit>_<speaker>_<n>.wav"),
    (lambda p: (_write(p / "yes" / "a_nohash_0.wav", _tone(0.2, 1)),
                _write(p / "3_bob_0.wav", _tone(0.2, 1))), "not a mix"),
    (lambda p: (p / "bad.csv").write_text("path,text\na.wav,yes\n"), "lacks the columns wav and"),
    (lambda p: (p / "list.txt").write_text("a.wav,yes\n"), "not a .csv"),
])
def test_a_wrong_layout_gets_one_clear_error(tmp_path, make, message):
    make(tmp_path)
    target = next((tmp_path / n for n in ("bad.csv", "list.txt") if (tmp_path / n).exists()), tmp_path)
    with pytest.raises(UserError, match=re.escape(message)) as err:
        ev.read_eval_set(target)
    assert str(target) in str(err.value)
    expected = "expected a header row wav,transcript" if target.name == "bad.csv" else \
        "expected a Speech Commands folder"
    assert expected in str(err.value)


def test_a_missing_path_and_an_empty_csv(tmp_path):
    with pytest.raises(UserError, match="no such file or folder"):
        ev.read_eval_set(tmp_path / "nowhere")
    (tmp_path / "empty.csv").write_text("wav,transcript\n")
    with pytest.raises(UserError, match="no clips to evaluate"):
        ev.read_eval_set(tmp_path / "empty.csv")


def test_limit_takes_every_folder_and_speaker_in_turn():
    clips = [ev.Clip(f"{g}{s}{n}", g, g, s) for g in "ab" for s in "xy" for n in range(3)]
    picked = ev.take(clips, 4)
    assert [(c.group, c.speaker) for c in picked] == [("a", "x"), ("b", "x"), ("a", "y"), ("b", "y")]
    assert ev.take(clips, None) == clips and ev.take(clips, 100) == clips


# -------------------------------------------------------------- keyword spotter --------

def test_kws_loader_labels_posteriors_and_packed_modules(kws_file):
    model = load_kws_model(kws_file)
    assert model.labels == KWS_CLASSES and model.packed and model.bits == [3]
    assert model.packed_modules()               # the packed layers run the packed modules
    probs = model.posteriors(torch.from_numpy(np.stack([_tone(1.0, 1), _tone(1.0, 2)])))
    assert probs.shape == (2, 12) and torch.allclose(probs.sum(-1), torch.ones(2), atol=1e-5)
    twin = load_kws_model(kws_file, fp32=True)
    assert not twin.packed_modules() and twin.fp32
    assert torch.allclose(twin.posteriors(torch.from_numpy(_tone(1.0, 1))), probs[:1], atol=1e-3)
    exact = load_kws_model(kws_file, kernel_path="exact")
    assert {m.path for m in exact.packed_modules()} == {"exact"}


def test_kws_labels_without_metadata_come_from_classes_txt_or_hparams(tmp_path):
    path = _kws_file(tmp_path, metadata=False)
    assert load_kws_model(path).labels == KWS_CLASSES          # words + unknown + silence
    (tmp_path / "classes.txt").write_text("\n".join(reversed(KWS_CLASSES)) + "\n")
    assert load_kws_model(path).labels == KWS_CLASSES[::-1]    # the preparer's file wins


def test_kws_on_speech_commands_folder_counts_and_mapping(kws_file, gsc):
    r = ev.evaluate(kws_file, gsc)
    assert r["task"] == "kws" and r["layout"] == "speech_commands"
    assert r["clips"] == 8 and len(r["per_clip"]) == 8
    assert {f: (m["class"], m["clips"]) for f, m in r["mapping"].items()} == {
        "yes": ("yes", 3), "no": ("no", 2), "bed": ("unknown", 1),
        "_unknown_": ("unknown", 1), "_silence_": ("silence", 1)}
    assert {c: row["clips"] for c, row in r["per_class"].items()} == {
        "yes": 3, "no": 2, "unknown": 2, "silence": 1}
    assert {s: row["clips"] for s, row in r["per_speaker"].items()} == {
        "aa11": 2, "bb22": 2, "cc33": 2, "dd44": 1, ev.NO_SPEAKER: 1}
    right = [row["reference"] == row["predicted"] for row in r["per_clip"]]
    assert r["correct"] == sum(right) and r["accuracy"] == pytest.approx(100 * sum(right) / 8, abs=0.01)
    assert sum(map(sum, r["confusion"]["matrix"])) == 8
    assert r["native_kernel"] == load_kws_model(kws_file).uses_native_kernel()
    # every clip's class is the one the model gives it alone (batching changes nothing)
    model = load_kws_model(kws_file)
    for row in r["per_clip"]:
        wav, _ = sf.read(row["wav"], dtype="float32")
        share = torch.tensor([wav.size / max(wav.size, SR)])      # of the 1-second input
        alone = model.posteriors(ev._pad(torch.from_numpy(wav), SR), share)
        assert model.labels[int(alone.argmax())] == row["predicted"]
        assert float(alone.max()) == pytest.approx(row["probability"], abs=2e-4)


def test_score_kws_with_known_predictions():
    clips = [ev.Clip(f"{i}.wav", g, g, s) for i, (g, s) in enumerate(
        [("yes", "a"), ("yes", "b"), ("no", "a"), ("bed", "b")])]
    r = ev.score_kws(clips, [0, 0, 1, 2], [0, 1, 1, 1], ["yes", "no", "unknown"])
    assert (r["correct"], r["accuracy"]) == (2, 50.0)
    assert r["per_class"]["yes"] == {"clips": 2, "correct": 1, "accuracy": 50.0}
    assert r["per_class"]["unknown"]["correct"] == 0
    assert r["per_speaker"]["a"]["accuracy"] == 100.0 and r["per_speaker"]["b"]["accuracy"] == 0.0
    assert r["confusion"]["matrix"] == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]


def test_folder_mapping_without_unknown_or_silence_class():
    labels = ["yes", "no"]
    assert ev.map_folder("yes", labels) == ("yes", "a class of the model")
    assert ev.map_folder("bed", labels)[0] is None
    assert ev.map_folder("_silence_", labels)[1] == "skipped: the model has no silence class"
    assert ev.map_folder("_unknown_", ["yes", "_unknown_"])[0] == "_unknown_"


def test_kws_given_digits_or_a_csv_errors(kws_file, digits, transcripts, capsys):
    assert _run_cli(kws_file, digits) == 2
    err = capsys.readouterr().err
    assert "digit words are not the keyword spotter's classes" in err and err.count("\n") == 1
    with pytest.raises(UserError, match="a CSV of transcripts is an ASR evaluation set"):
        ev.evaluate(kws_file, transcripts)
    with pytest.raises(UserError, match="settings of ASR models"):
        ev.evaluate(kws_file, digits, decoding="greedy")


def test_cli_kws_json_limit_kernel_path_and_fp32(kws_file, gsc, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert _run_cli(kws_file, gsc, "--limit", 5, "--kernel-path", "exact", "--json", out) == 0
    text = capsys.readouterr().out
    assert "accuracy" in text and "_silence_ -> silence" in text and "bed -> unknown" in text
    r = json.loads(out.read_text())
    assert r["clips"] == 5 and len(r["per_clip"]) == 5 and r["kernel_path"] == ["exact"]
    assert len(r["per_folder"]) == 5                     # one clip of each folder first
    assert _run_cli(kws_file, gsc, "--fp32", "--json", out) == 0
    r = json.loads(out.read_text())
    assert r["compute"].startswith("fp32") and r["clips"] == 8


# ------------------------------------------------------------------------- ASR ---------

def test_asr_on_digits_resamples_and_counts(asr_file, digits):
    r = ev.evaluate(asr_file, digits, decoding="greedy")
    assert r["task"] == "asr" and r["layout"] == "free_spoken_digits"
    assert r["decoding"] == "greedy" and r["input"]["resampled"] == 5
    assert r["utterances"] == 5 and r["ref_words"] == 5
    assert {w: row["utterances"] for w, row in r["per_word"].items()} == {"THREE": 3, "SEVEN": 2}
    assert {s: row["utterances"] for s, row in r["per_speaker"].items()} == {"alice": 3, "bob": 2}
    from denseshift_speech.streaming.run import word_errors
    errors = sum(word_errors(ev.normalize_text(u["reference"]), ev.normalize_text(u["hypothesis"]))[0]
                 for u in r["per_clip"])
    assert r["word_errors"] == errors and r["wer"] == pytest.approx(100 * errors / 5, abs=0.01)
    assert r["exact"] == sum(u["exact"] for u in r["per_clip"])
    # batched full-context decoding gives each clip the recipe's offline decoding alone
    from denseshift_speech.streaming.audio import read_audio
    from denseshift_speech.streaming.run import full_context_text
    model = load_model(asr_file)
    for u in r["per_clip"]:
        assert u["hypothesis"] == full_context_text(model, read_audio(u["wav"], SR).samples)


def test_asr_on_speech_commands_skips_unknown_and_silence(asr_file, gsc, capsys):
    assert _run_cli(asr_file, gsc, "--decoding", "greedy") == 0
    out = capsys.readouterr().out
    assert "skipped _unknown_ (1 clips)" in out and "skipped _silence_ (1 clips)" in out
    assert "decoding  greedy" in out and "exactly right" in out
    r = ev.evaluate(asr_file, gsc, decoding="greedy")
    assert r["utterances"] == 6
    assert {w: row["utterances"] for w, row in r["per_word"].items()} == {"YES": 3, "NO": 2, "BED": 1}


def test_asr_csv_and_score_with_known_hypotheses(asr_file, transcripts):
    r = ev.evaluate(asr_file, transcripts, decoding="greedy")
    assert r["layout"] == "csv" and r["utterances"] == 2 and r["ref_words"] == 3
    assert "per_word" not in r                       # a two-word reference: no word table
    clips = [ev.Clip("a", "", "Yes, no!", "s1"), ev.Clip("b", "", "stop", "s2"),
             ev.Clip("c", "", "go", "s2")]
    s = ev.score_asr(clips, ["YES NO", "stop it", ""])
    assert (s["exact"], s["word_errors"], s["ref_words"]) == (1, 2, 4)
    assert s["wer"] == 50.0 and s["exact_rate"] == pytest.approx(33.33, abs=0.01)
    assert s["per_speaker"]["s2"] == {"utterances": 2, "exact": 0, "exact_rate": 0.0,
                                      "word_errors": 2, "ref_words": 2, "wer": 100.0}


def test_asr_very_short_clip_is_zero_padded_and_counted(asr_file, tmp_path):
    _write(tmp_path / "tiny.wav", _tone(0.005, 1))           # 80 samples: under one window
    (tmp_path / "l.csv").write_text("wav,transcript\ntiny.wav,go\n")
    r = ev.evaluate(asr_file, tmp_path / "l.csv", decoding="greedy")
    assert r["utterances"] == 1 and r["input"]["padded"] == 1


def test_asr_decoding_uses_the_lm_beside_the_model(asr_file, digits, tmp_path):
    pytest.importorskip("kenlm")
    import shutil
    from denseshift_speech.integrations.speechbrain.lm import write_arpa
    model = tmp_path / "model.dsp"
    shutil.copy(asr_file, model)
    r = ev.evaluate(model, digits)
    assert r["decoding"] == "greedy" and "no LM beside the model" in r["decoding_reason"]
    with pytest.raises(UserError, match="LM file not found"):
        ev.evaluate(model, digits, decoding="beam_lm")
    rng = np.random.default_rng(1)
    (tmp_path / "save").mkdir()
    write_arpa([" ".join(rng.choice(WORDS, 5)).upper() for _ in range(50)],
               str(tmp_path / "save" / "lm_3gram.arpa"))
    r = ev.evaluate(model, digits, limit=2)
    assert r["decoding"] == "beam_lm" and r["lm_arpa"].endswith("lm_3gram.arpa")
    assert r["utterances"] == 2
    assert ev.evaluate(model, digits, limit=2, decoding="greedy")["decoding"] == "greedy"


# ------------------------------------------------------------------ bad inputs ---------

def test_empty_and_unreadable_wavs_stop_the_run_naming_the_file(asr_file, kws_file, tmp_path, capsys):
    folder = tmp_path / "set"
    _write(folder / "yes" / "a_nohash_0.wav", _tone(1.0, 1))
    empty = _write(folder / "yes" / "b_nohash_0.wav", np.zeros(0, np.float32))
    assert _run_cli(kws_file, folder) == 2
    err = capsys.readouterr().err
    assert empty in err and "empty" in err and err.count("\n") == 1
    os.remove(empty)
    garbage = folder / "yes" / "c_nohash_0.wav"
    garbage.write_bytes(b"RIFF not really a wave file" * 10)
    assert _run_cli(asr_file, folder, "--decoding", "greedy") == 2
    err = capsys.readouterr().err
    assert str(garbage) in err and "cannot read audio" in err and err.count("\n") == 1


def test_nan_samples_are_zeroed_and_reported(kws_file, tmp_path, capsys):
    wav = _tone(1.0, 3)
    wav[100:150] = np.nan
    folder = tmp_path / "set"
    _write(folder / "no" / "a_nohash_0.wav", _tone(1.0, 4))
    os.makedirs(folder / "yes")
    sf.write(folder / "yes" / "n_nohash_0.wav", wav, SR, subtype="FLOAT")
    r = ev.evaluate(kws_file, folder)
    assert r["input"]["nonfinite_clips"] == 1 and r["input"]["nonfinite_samples"] == 50
    assert all(0.0 <= row["probability"] <= 1.0 for row in r["per_clip"])
    assert _run_cli(kws_file, folder) == 0
    assert "1 with non-finite samples (50 zeroed)" in capsys.readouterr().out


def test_each_loader_refuses_the_other_models_file(kws_file, asr_file):
    with pytest.raises(ModelFileError, match="not an ASR model") as err:
        load_model(kws_file)
    assert "load_kws_model" in str(err.value)
    with pytest.raises(ModelFileError, match="an ASR model .* not a keyword spotter"):
        load_kws_model(asr_file)


def test_a_bad_model_file_gets_one_line(gsc, tmp_path, capsys):
    bad = tmp_path / "model.dsp"
    bad.write_bytes(b"not a model")
    assert _run_cli(bad, gsc) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and err.count("\n") == 1
    assert _run_cli(tmp_path / "none.dsp", gsc) == 2
    assert "no such packed model file" in capsys.readouterr().err

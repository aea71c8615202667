"""The keyword-spotting recipe, end to end through the real train.py (as a subprocess):
smoke training of both twins, DenseShift values in the checkpoint, resuming a killed run,
and hparams errors that stop the run at start with one clear line."""
import glob
import json
import os
import re
import shutil
import signal
import subprocess

import pytest
import torch

from conftest import ROOT, recipe_command, recipe_env, run_recipe
from denseshift_speech.integrations.speechbrain import recipe
from denseshift_speech.core import quant
from denseshift_speech.core.nn import codes_and_scale, iter_denseshift, parametrization

KWS = "recipes/speech_commands/train.py"
FP, DS = "kws_fp.yaml", "kws_ds.yaml"
N_TRAIN, BATCH = 40, 8           # 5 optimizer steps per epoch
STEPS_PER_EPOCH = N_TRAIN // BATCH


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A very small Speech-Commands-layout corpus (espeak-ng), shared by the module."""
    from denseshift_speech.data import synthesize_speech_commands
    out = tmp_path_factory.mktemp("gsc") / "speech_commands"
    synthesize_speech_commands(out, seed=0, train_speakers=4, valid_speakers=2,
                               test_speakers=2, repeats=1, filler_prob=0.3,
                               noise_seconds=12.0)
    return str(out)


def tiny(corpus, out, *extra, epochs=1):
    return [f"--data_folder={corpus}", f"--output_folder={out}", f"--number_of_epochs={epochs}",
            f"--max_train_items={N_TRAIN}", "--max_eval_items=24", f"--batch_size={BATCH}",
            *extra]


def results(out):
    with open(os.path.join(out, "results.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def real_like(corpus, tmp_path_factory):
    """Stand-ins for the real-speech sets, made from the corpus' test clips: a Speech
    Commands-layout folder (two words and _unknown_) and a folder of spoken digits."""
    root = tmp_path_factory.mktemp("real_like")
    tests = open(os.path.join(corpus, "testing_list.txt")).read().split()
    for folder, words in (("sc", ("yes", "no", "cat")),):
        for rel in [t for t in tests if t.split("/")[0] in words]:
            word = rel.split("/")[0]
            dest = root / folder / (word if word in ("yes", "no") else "_unknown_")
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy(os.path.join(corpus, rel), dest / os.path.basename(rel))
    (root / "digits").mkdir()
    shutil.copy(os.path.join(corpus, tests[0]), root / "digits" / "3_alice_0.wav")
    return str(root / "sc"), str(root / "digits")


@pytest.fixture(scope="module")
def fp_run(corpus, real_like, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("kws_fp"))
    proc = run_recipe(KWS, FP, *tiny(corpus, out), f"--real_speech_folders=[{','.join(real_like)}]")
    with open(os.path.join(out, "console.txt"), "w") as f:  # what the user saw
        f.write(proc.stdout + proc.stderr)
    return out


@pytest.fixture(scope="module")
def ds_run(corpus, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("kws_ds"))
    run_recipe(KWS, DS, *tiny(corpus, out))
    return out


def check_common(res, out):
    assert res["task"] == "kws" and res["arch"] == "xvector_tdnn"
    assert 0.0 <= res["accuracy"] <= 100.0
    assert len(res["classes"]) == 12 and res["classes"][-2:] == ["unknown", "silence"]
    cm = torch.tensor(res["confusion_matrix"])
    assert cm.shape == (12, 12) and int(cm.sum()) == res["test_items"] > 0
    assert res["accuracy"] == pytest.approx(100.0 * int(cm.diag().sum()) / int(cm.sum()), abs=1e-3)
    assert res["epochs"] == 1 and res["optimizer_steps"] == STEPS_PER_EPOCH
    assert res["train_seconds"] > 0
    assert res["fp32_bytes"] == 4 * res["params"]
    assert res["packed_file"] == "model.dsp"
    assert res["packed_bytes"] == os.path.getsize(os.path.join(out, "model.dsp"))
    assert os.path.isfile(os.path.join(out, recipe.RESOLVED_HPARAMS))
    assert glob.glob(os.path.join(out, "save", "CKPT+*", "model.ckpt"))


def load_model_file(out):
    """A fresh float model built from the run's hparams, loaded from its model.dsp."""
    from denseshift_speech.packed import load_packed
    hparams, _ = recipe.load_hparams(os.path.join(out, recipe.RESOLVED_HPARAMS))
    model = recipe.module_container(hparams["modules"])
    info = load_packed(model, os.path.join(out, "model.dsp"))
    return model, info


def test_real_speech_folders_are_measured_after_training(fp_run, real_like):
    """The exported file on each real-speech folder: counts for the Speech Commands
    layout, and spoken digits (not a keyword spotter's classes) recorded as skipped."""
    real = results(fp_run)["real_speech"]
    sc, digits = ("/".join(p.split(os.sep)[-2:]) for p in real_like)
    clips = sum(len(files) for _, _, files in os.walk(real_like[0]))
    assert real[sc]["layout"] == "speech_commands" and real[sc]["clips"] == clips > 0
    assert 0.0 <= real[sc]["accuracy"] <= 100.0
    assert "skipped" in real[digits] and "digit" in real[digits]["skipped"]


def test_missing_real_speech_folder_fails_at_start(corpus, tmp_path):
    proc = run_recipe(KWS, FP, *tiny(corpus, str(tmp_path / "out")),
                      f"--real_speech_folders=[{tmp_path / 'nowhere'}]", timeout=120, check=False)
    assert proc.returncode != 0
    assert "real_speech_folders" in proc.stderr + proc.stdout
    assert not glob.glob(str(tmp_path / "out" / "save" / "CKPT*"))  # stopped before training


@pytest.mark.slow
def test_fp_smoke(fp_run):
    res = results(fp_run)
    check_common(res, fp_run)
    assert res["bits"] == 32 and res["quantized_params"] == 0
    # the float model file loads into a fresh model and predicts as the trained one
    assert res["packed_accuracy"] == res["accuracy"]
    model, info = load_model_file(fp_run)
    assert info.layers == [] and json.loads(info.metadata["classes"]) == res["classes"]
    assert res["packed_bytes"] > res["fp32_bytes"]  # float weights + header
    # per engine:voice (the corpus' SPEAKERS.TXT): festival speaks test_other only
    by_voice = res["accuracy_by_voice"]
    assert by_voice["test_other"] and all(v.startswith("festival:")
                                          for v in by_voice["test_other"])
    assert by_voice["test"] and not any(v.startswith("festival:") for v in by_voice["test"])
    assert all(0.0 <= a <= 100.0 for split in by_voice.values() for a in split.values())
    assert set(res["accuracy_by_engine"]["test_other"]) == {"festival"}


@pytest.mark.slow
def test_ds_smoke(ds_run, fp_run):
    res = results(ds_run)
    check_common(res, ds_run)
    fp = results(fp_run)
    assert res["bits"] == 3 and res["denseshift"]["bits"] == 3
    assert res["params"] == fp["params"] and res["fp32_bytes"] == fp["fp32_bytes"]
    assert 0.5 < res["quantized_fraction"] < 1.0
    assert res["packed_bytes"] < fp["packed_bytes"] / 2
    model, info = load_model_file(ds_run)
    assert sum(torch.Size(rec["shape"]).numel() for rec in info.layers) == res["quantized_params"]
    assert {rec["bits"] for rec in info.layers} == {3}
    assert json.loads(info.metadata["classes"]) == res["classes"]
    # the packed file's model, run with the packed kernels, predicts as the trained one
    one_item = 100.0 / res["test_items"]
    assert abs(res["packed_accuracy"] - res["accuracy"]) <= one_item + 1e-6
    with open(os.path.join(ds_run, "train_log.txt")) as f:
        assert "code_flip" in f.read()


@pytest.mark.slow
def test_ds_checkpoint_holds_denseshift_weights(ds_run):
    """A fresh model, quantized as the hparams say, loads the checkpoint strictly and
    decodes to alpha * (+-2^e), e in 0..3, for every quantized weight."""
    hparams, _ = recipe.load_hparams(os.path.join(ds_run, recipe.RESOLVED_HPARAMS))
    summary = recipe.apply_denseshift(hparams["modules"], hparams)
    assert summary is not None and summary.bits == 3
    model = hparams["model"]
    ckpt = sorted(glob.glob(os.path.join(ds_run, "save", "CKPT+*", "model.ckpt")))[-1]
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert any(k.endswith("parametrizations.weight.original1") for k in state)
    model.load_state_dict(state, strict=True)
    allowed = quant.value_set(3)
    n = 0
    for name, module, pname in iter_denseshift(model):
        assert parametrization(module, pname).bits == 3
        codes, alpha = codes_and_scale(module, pname)
        with torch.no_grad():
            w = getattr(module, pname)
        unit = w / alpha.reshape(-1, *([1] * (w.dim() - 1)))
        assert torch.isin(unit, allowed).all(), name
        assert torch.equal(unit, quant.decode(codes, 3)), name
        assert (unit != 0).all()
        n += 1
    assert n == len(summary.entries) > 0


@pytest.mark.slow
def test_killed_run_resumes_from_its_checkpoint(corpus, tmp_path):
    out = str(tmp_path / "resume")
    args = tiny(corpus, out, "--ckpt_interval_minutes=0", "--ckpt_interval_steps=1", epochs=2)
    kill_at = STEPS_PER_EPOCH + 2  # in the middle of epoch 2
    killed = run_recipe(KWS, FP, *args, kill_after_steps=kill_at, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not os.path.exists(os.path.join(out, "results.json"))
    intra = [d for d in glob.glob(os.path.join(out, "save", "CKPT+*"))
             if "intra" in open(os.path.join(d, "CKPT.yaml")).read().lower()]
    assert intra, "no intra-epoch checkpoint before the kill"

    resumed = run_recipe(KWS, FP, *args)
    assert "Loading a checkpoint" in resumed.stderr + resumed.stdout
    res = results(out)
    assert res["epochs"] == 2
    # the counters went on from the checkpoint: as many optimizer steps as an
    # uninterrupted 2-epoch run, not 2 epochs + the steps done before the kill
    assert res["optimizer_steps"] == 2 * STEPS_PER_EPOCH
    with open(os.path.join(out, "train_log.txt")) as f:
        log = f.read()
    assert log.count("epoch: 1,") == 1 and log.count("epoch: 2,") == 1


@pytest.mark.slow
def test_finished_corpus_is_used_as_it_is(corpus, fp_run):
    """A finished synthetic corpus written with other options than the recipe's synth_*
    defaults (here: the fixture's 4 training speakers) is not re-synthesized, and the
    run's log names each setting that differs."""
    from denseshift_speech.data import synth
    with open(os.path.join(corpus, synth.MARKER)) as f:
        assert json.load(f)["options"]["speakers"]["train"] == 4
    with open(os.path.join(fp_run, "console.txt")) as f:
        log = f.read()
    assert "holds a synthetic corpus written with other settings" in log
    assert re.search(r"speakers: written \{[^}]*'train': 4[^}]*\}, asked \{[^}]*'train': 240", log)
    assert "repeats: written 1, asked 3" in log


@pytest.mark.slow
def test_twins_started_together_share_one_synthesis(tmp_path):
    """fp and ds started at once on a missing data folder (as `make demo` does): one
    writes the corpus, the other waits for it; both train."""
    data = str(tmp_path / "corpus")
    small = ["--synth_train_speakers=4", "--synth_eval_speakers=2", "--synth_repeats=1"]
    procs = [subprocess.Popen(
        recipe_command(KWS, hp, f"--data_folder={data}", *small,
                       f"--output_folder={tmp_path / name}", "--number_of_epochs=1",
                       f"--max_train_items={N_TRAIN}", "--max_eval_items=24",
                       f"--batch_size={BATCH}"),
        cwd=ROOT, env=recipe_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for hp, name in ((FP, "fp"), (DS, "ds"))]
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out[-3000:]
    for name in ("fp", "ds"):
        assert results(str(tmp_path / name))["test_items"] > 0


def fails_at_start(proc, out, *words):
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error:"), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in last, last
    assert not os.path.exists(os.path.join(out, "results.json"))


def test_unknown_hparam_fails_at_start(tmp_path):
    out = str(tmp_path / "o")
    proc = run_recipe(KWS, FP, f"--output_folder={out}", "--no_such_key=3", timeout=120,
                      check=False)
    fails_at_start(proc, out, "no_such_key", "kws_fp.yaml")
    assert not os.path.exists(out)


def test_bits_out_of_range_fails_at_start(tmp_path):
    out = str(tmp_path / "o")
    proc = run_recipe(KWS, DS, f"--output_folder={out}", f"--ds_bits={quant.MAX_BITS + 1}",
                      timeout=120, check=False)
    fails_at_start(proc, out, "bits", str(quant.MAX_BITS + 1))
    assert not os.path.exists(out)


def test_missing_data_folder_without_synthesis_fails_at_start(tmp_path):
    out = str(tmp_path / "o")
    missing = str(tmp_path / "no_corpus_here")
    proc = run_recipe(KWS, FP, f"--output_folder={out}", f"--data_folder={missing}",
                      "--synthesize_if_missing=False", timeout=120, check=False)
    fails_at_start(proc, out, "no_corpus_here", "synthesize_if_missing")
    assert not os.path.exists(missing)
    assert not glob.glob(os.path.join(out, "*.csv"))


def test_by_voice_keys_only_for_a_synthetic_corpus():
    """A real corpus (no SPEAKERS.TXT voices) gets no accuracy_by_* keys, as the ASR
    recipe leaves out wer_by_*; a synthetic one gets {split: {name: %}} per voice and
    per engine."""
    import runpy
    by_voice = runpy.run_path(os.path.join(ROOT, KWS), run_name="recipe")["by_voice"]
    outcomes = {"test": [("a1", True), ("a1", False), ("b2", True)],
                "test_other": [("c3", False)]}
    assert by_voice(outcomes, {}) == {}
    voices = {"a1": "espeak-ng:en-us+m1", "b2": "flite:slt", "c3": "festival:kal_diphone"}
    got = by_voice(outcomes, voices)
    assert got["accuracy_by_voice"]["test"] == {"espeak-ng:en-us+m1": 50.0, "flite:slt": 100.0}
    assert got["accuracy_by_engine"] == {"test": {"espeak-ng": 50.0, "flite": 100.0},
                                         "test_other": {"festival": 0.0}}

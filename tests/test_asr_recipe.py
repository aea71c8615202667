"""The LibriSpeech recipe, run as a user runs it: smoke trainings of the four hparams files,
learning, resume after a kill, torchrun on CPU, and bad hparams."""
import glob
import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml

from conftest import ROOT, recipe_command, recipe_env, run_recipe
from denseshift_speech.integrations.speechbrain import recipe
from denseshift_speech.core import quant
from denseshift_speech.core.nn import codes_and_scale, iter_denseshift

pytestmark = pytest.mark.slow

TINY = {
    "conformer": ["--d_model=32", "--nhead=2", "--num_encoder_layers=1", "--d_ffn=64",
                  "--kernel_size=7", "--cnn_channels=[8,32]"],
    # 80 mels: wider LSTM inputs, so per-channel scales weigh less at this toy size
    "crdnn": ["--cnn_channels=[4,8]", "--rnn_layers=1", "--rnn_neurons=16", "--dnn_neurons=16",
              "--n_mels=80"],
}


def tiny_args(arch, corpus, out, *extra, epochs=1):
    return [f"--data_folder={corpus}", f"--output_folder={out}", f"--number_of_epochs={epochs}",
            "--vocab_size=40", "--batch_size=4", "--synthesize_if_missing=False",
            "--warmup_steps=2", *TINY[arch], *extra]


@pytest.mark.parametrize("hparams", ["conformer_fp.yaml", "conformer_ds.yaml",
                                     "crdnn_fp.yaml", "crdnn_ds.yaml"])
def test_smoke_training_writes_results_and_denseshift_checkpoint(hparams, tiny_librispeech, tmp_path):
    arch = hparams.split("_")[0]
    out = tmp_path / "run"
    extra = ["--eval_packed_paths=[int8,exact]"] if hparams == "conformer_ds.yaml" else []
    run_recipe("recipes/librispeech/train.py", hparams, *tiny_args(arch, tiny_librispeech, out, *extra))
    results = json.loads((out / "results.json").read_text())
    if extra:  # the packed model re-tested on each kernel path
        assert set(results["packed_paths"]) == {"int8", "exact"}
        for path, by_split in results["packed_paths"].items():
            assert set(by_split) == {"test-clean", "test-other"}, path
            assert all(math.isfinite(r["WER"]) and r["WER"] >= 0 for r in by_split.values())
        assert (out / "wer_test-clean.packed-int8.txt").exists()
        from denseshift_speech.packed import read_packed_metadata
        paths = {rec.get("path") for rec in read_packed_metadata(out / "model.dsp")["layers"]
                 if rec["kind"] != "dense"}
        assert paths == {"int8"}  # exported on the default path
    assert results["task"] == "asr" and results["arch"] == arch
    assert set(results["wer"]) == {"test-clean", "test-other"}
    # (a one-epoch toy under the LM's word bonus inserts words: its WER can pass 200)
    assert all(math.isfinite(v) and v >= 0 for v in results["wer"].values())
    assert results["decoding"] == "beam_lm" and set(results["wer_greedy"]) == set(results["wer"])
    # per engine:voice of the synthetic corpus (its SPEAKERS.TXT): festival in test-other only
    by_voice = results["wer_by_voice"]
    assert set(by_voice) == set(results["wer"])
    assert by_voice["test-other"] and all(v.startswith("festival:") for v in by_voice["test-other"])
    assert by_voice["test-clean"] and not any(v.startswith("festival:")
                                              for v in by_voice["test-clean"])
    assert set(results["wer_by_engine"]["test-other"]) == {"festival"}
    assert "espeak-ng" in results["wer_by_engine"]["test-clean"]
    assert (out / "save" / "lm_3gram.arpa").exists()
    assert (out / "wer_test-clean.txt").exists() and (out / "model.dsp").exists()
    ckpts = glob.glob(str(out / "save" / "CKPT+*" / "model.ckpt"))
    assert ckpts
    if hparams.endswith("_ds.yaml"):
        assert results["bits"] == 3 and results["quantized_fraction"] > 0.5
        # tiny models: headers, tokenizer and fp32 ends weigh; the 3-bit tensors are
        # checked at >= 5x below
        assert results["packed_bytes"] < 0.75 * results["fp32_bytes"]
        _assert_checkpoint_is_denseshift(out, ckpts[0], bits=3)
        _assert_export_matches_recipe_file(out)
    else:
        assert results["bits"] == 32 and results["quantized_params"] == 0


def test_lm_weights_are_chosen_on_dev_and_kept_in_the_model_file(tiny_librispeech, tmp_path):
    """With grids, every lm_weight x word_bonus pair is decoded on dev-clean, the best
    one tests the model and goes into the resolved hparams and the packed model (what
    `stream` decodes with)."""
    from denseshift_speech.packed import read_packed_metadata
    out = tmp_path / "tuned"
    run_recipe("recipes/librispeech/train.py", "conformer_fp.yaml",
               *tiny_args("conformer", tiny_librispeech, out, "--lm_weight_grid=[0.1,0.7]",
                          "--word_bonus_grid=[0.0,2.0]"))
    tuning = json.loads((out / "results.json").read_text())["lm_tuning"]
    assert tuning["split"] == "dev-clean" and len(tuning["dev_wer"]) == 4
    best = min(tuning["dev_wer"].values())
    assert tuning["dev_wer"][f"{tuning['lm_weight']}/{tuning['word_bonus']}"] == best
    stored = load_hyperpyyaml(read_packed_metadata(out / "model.dsp")["metadata"]["hparams_yaml"])
    assert (stored["lm_weight"], stored["word_bonus"]) == (tuning["lm_weight"], tuning["word_bonus"])


def _assert_checkpoint_is_denseshift(out, ckpt, bits):
    """Rebuild the architecture, load the checkpoint strictly, read the effective weights."""
    hparams = load_hyperpyyaml((out / recipe.RESOLVED_HPARAMS).read_text())
    summary = recipe.apply_denseshift(hparams["modules"], hparams)
    hparams["model"].load_state_dict(torch.load(ckpt, weights_only=True), strict=True)
    container = recipe.module_container(hparams["modules"])
    seen = 0
    for name, module, pname in iter_denseshift(container):
        codes, alpha = codes_and_scale(module, pname)
        w = getattr(module, pname).detach()
        unscaled = w / alpha.reshape(-1, *[1] * (w.dim() - 1))
        assert torch.equal(unscaled, quant.decode(codes, bits)), name
        assert (unscaled != 0).all()
        seen += 1
    assert seen == len(summary.entries)


def _assert_export_matches_recipe_file(out):
    """`denseshift-speech export RUN_DIR` rebuilds the same packed file from the checkpoint."""
    from denseshift_speech.packed import read_packed_metadata
    again = out / "exported.dsp"
    proc = subprocess.run([sys.executable, "-m", "denseshift_speech", "export", str(out),
                           "--out", str(again)], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = read_packed_metadata(out / "model.dsp"), read_packed_metadata(again)
    assert a["layers"] == b["layers"]
    assert a["sizes"]["quantized_packed_bytes"] == b["sizes"]["quantized_packed_bytes"]
    assert a["sizes"]["quantized_fp32_bytes"] >= 5 * a["sizes"]["quantized_packed_bytes"]


def _train_losses(out):
    log = (out / "train_log.txt").read_text()
    return [float(x) for x in re.findall(r"train loss: ([0-9.e+-]+)", log)]


def test_ctc_loss_falls_on_a_handful_of_utterances(tiny_librispeech, tmp_path):
    """8 utterances, one per step, a one-layer demo-width conformer: the loss must leave
    the CTC blank plateau (about 3.3 here) well behind within 16 epochs."""
    out = tmp_path / "learn"
    run_recipe("recipes/librispeech/train.py", "conformer_fp.yaml",
               f"--data_folder={tiny_librispeech}", f"--output_folder={out}",
               "--synthesize_if_missing=False", "--vocab_size=40", "--num_encoder_layers=1",
               "--kernel_size=7", "--cnn_channels=[8,32]", "--max_train_utterances=8",
               "--batch_size=1", "--number_of_epochs=16", "--warmup_steps=8", "--lr=0.003",
               "--augment_features=False", "--apply_data_augmentation=False",
               "--dropout=0.0", "--decoding=greedy")
    losses = _train_losses(out)
    assert len(losses) == 16
    assert losses[-1] < 0.6 * losses[0], losses


def test_resume_continues_counters(tiny_librispeech, tmp_path):
    out = tmp_path / "resume"
    run_recipe("recipes/librispeech/train.py", "conformer_ds.yaml",
               *tiny_args("conformer", tiny_librispeech, out))
    second = run_recipe("recipes/librispeech/train.py", "conformer_ds.yaml",
                        *tiny_args("conformer", tiny_librispeech, out, epochs=2))
    assert "Loading a checkpoint" in second.stdout + second.stderr
    log = (out / "train_log.txt").read_text()
    epochs = [int(e) for e in re.findall(r"^epoch: (\d+)", log, re.M)]
    assert epochs == [1, 2], log  # epoch 1 was not trained again
    assert json.loads((out / "results.json").read_text())["epochs"] == 2


def test_killed_mid_epoch_resumes_from_intra_epoch_checkpoint(tiny_librispeech, tmp_path):
    out = tmp_path / "killed"
    args = tiny_args("conformer", tiny_librispeech, out, "--ckpt_interval_minutes=0",
                     "--ckpt_interval_steps=1", epochs=2)
    cmd = recipe_command("recipes/librispeech/train.py", "conformer_ds.yaml", *args)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=recipe_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not glob.glob(str(out / "save" / "CKPT+*" / "dataloader-TRAIN.ckpt")):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert glob.glob(str(out / "save" / "CKPT+*")), "no intra-epoch checkpoint was written"
    assert not (out / "results.json").exists()
    rerun = run_recipe("recipes/librispeech/train.py", "conformer_ds.yaml", *args)
    assert "Loading a checkpoint" in rerun.stdout + rerun.stderr
    assert json.loads((out / "results.json").read_text())["epochs"] == 2


def test_torchrun_two_processes_on_cpu(tiny_librispeech, tmp_path):
    out = tmp_path / "ddp"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                "--master_port=29533"]
    run_recipe("recipes/librispeech/train.py", "conformer_ds.yaml",
               *tiny_args("conformer", tiny_librispeech, out), "--distributed_backend=gloo",
               launcher=torchrun)
    assert len(glob.glob(str(out / "**" / "results.json"), recursive=True)) == 1
    assert json.loads((out / "results.json").read_text())["bits"] == 3


@pytest.mark.parametrize("override,message", [
    ("--no_such_key=1", "unknown hparam(s) no_such_key"),
    ("--ds_bits=9", "bits must be an integer in 2..8, got 9"),
    ("--data_folder=/nonexistent/LibriSpeech", "does not exist and synthesize_if_missing is False"),
    ("--decoding=viterbi", "decoding must be 'greedy' or 'beam_lm', got 'viterbi'"),
    ("--lr_schedule=cosine", "lr_schedule must be one of linear, noam, got 'cosine'"),
    ("--lm_arpa=/nonexistent/3-gram.arpa", "no language model file at /nonexistent/3-gram.arpa"),
])
def test_bad_hparams_fail_at_start(override, message, tmp_path):
    proc = run_recipe("recipes/librispeech/train.py", "conformer_ds.yaml",
                      f"--output_folder={tmp_path / 'bad'}", "--synthesize_if_missing=False",
                      override, check=False, timeout=120)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_missing_lm_text_fails_before_training(tiny_librispeech, tmp_path):
    """An lm_text that is not there stops the run once the corpus is in place, before
    any training (not at the test splits, after it)."""
    out = tmp_path / "bad"
    proc = run_recipe("recipes/librispeech/train.py", "conformer_fp.yaml",
                      *tiny_args("conformer", tiny_librispeech, out),
                      "--lm_text=/nonexistent/lm.txt", check=False, timeout=180)
    assert proc.returncode != 0
    assert "lm_text: no text file at /nonexistent/lm.txt" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (out / "save").exists() or not list((out / "save").glob("CKPT+*"))


def test_interrupted_save_is_invisible(tmp_path, monkeypatch):
    """A checkpoint killed half-way through saving is never picked up for resuming."""
    from denseshift_speech.integrations.speechbrain.checkpoints import AtomicCheckpointer
    model = torch.nn.Linear(2, 2)
    ckpt = AtomicCheckpointer(tmp_path, recoverables={"model": model})
    first = ckpt.save_checkpoint(meta={"n": 1})
    assert (first.path / "CKPT.yaml").exists()

    def killed(obj, path):
        raise KeyboardInterrupt("killed while saving")
    monkeypatch.setitem(ckpt.custom_save_hooks, "model", killed)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(meta={"n": 2})
    found = AtomicCheckpointer(tmp_path, recoverables={"model": model}).find_checkpoint()
    assert found.meta["n"] == 1


def test_from_float_init_loads_the_fp_checkpoint(tmp_path):
    """init_from_fp + ds_init=from_float: DenseShift starts from the twin's float weights."""
    overrides = {"d_model": 32, "nhead": 2, "num_encoder_layers": 1, "d_ffn": 64,
                 "kernel_size": 7, "cnn_channels": [8, 32], "vocab_size": 40,
                 "output_folder": str(tmp_path / "x")}
    fp, _ = recipe.load_hparams(os.path.join(ROOT, "hparams/conformer_fp.yaml"), overrides)
    torch.save(fp["model"].state_dict(), tmp_path / "model.ckpt")
    ds, _ = recipe.load_hparams(os.path.join(ROOT, "hparams/conformer_ds.yaml"),
                                {**overrides, "ds_init": "from_float",
                                 "init_from_fp": str(tmp_path)})
    summary = recipe.apply_denseshift(ds["modules"], ds)
    float_weights = recipe.module_container(fp["modules"]).state_dict()
    container = recipe.module_container(ds["modules"])
    for entry in summary.entries[:5]:
        module_name, pname = entry.name.rsplit(".", 1)
        w = getattr(container.get_submodule(module_name), pname).detach()
        assert quant.relative_error(float_weights[entry.name], w) < 0.5, entry.name
    # a run folder: the checkpoint with the lowest validation WER, as the recipe tests
    from denseshift_speech.integrations.speechbrain.checkpoints import AtomicCheckpointer
    run = tmp_path / "fp_run"
    saver = AtomicCheckpointer(run / "save", recoverables={"model": fp["model"]})
    saver.save_checkpoint(meta={"WER": 20.0})
    best = {k: v.clone() for k, v in fp["model"].state_dict().items()}
    with torch.no_grad():
        for p in fp["model"].parameters():
            p.add_(1.0)
    saver.save_checkpoint(meta={"WER": 35.0})
    fresh, _ = recipe.load_hparams(os.path.join(ROOT, "hparams/conformer_fp.yaml"), overrides)
    recipe.load_float_checkpoint(fresh["model"], str(run))
    assert all(torch.equal(v, best[k]) for k, v in fresh["model"].state_dict().items())
    with pytest.raises(recipe.HparamsError, match="does not match this architecture"):
        bad, _ = recipe.load_hparams(os.path.join(ROOT, "hparams/conformer_ds.yaml"),
                                     {**overrides, "d_ffn": 32, "ds_init": "from_float",
                                      "init_from_fp": str(tmp_path)})
        recipe.apply_denseshift(bad["modules"], bad)

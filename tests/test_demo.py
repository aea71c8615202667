"""The `make demo` scheduler: prerequisites, thread budget, failures."""
import sys

import pytest

from denseshift_speech.integrations.speechbrain import demo

WRITE = "import sys, time; time.sleep(0.3); open(sys.argv[1], 'w').write('ok')"
NEED = "import os, sys; sys.exit(0 if os.path.exists(sys.argv[1]) else 3)"
THREADS = "import os, sys; sys.exit(0 if os.environ['OMP_NUM_THREADS'] == sys.argv[1] else 4)"


def job(name, code, *args):
    return [sys.executable, "-c", code, *map(str, args), f"--output_folder=out/{name}"]


def test_prerequisite_runs_first_and_threads_are_passed(tmp_path):
    flag = tmp_path / "fp_done"
    demo.run_pool([(job("ds", NEED, flag), "fp", 2),
                   (job("fp", WRITE, flag), None, 2),
                   (job("kws", THREADS, 1), None, 1)], 2, str(tmp_path))
    assert flag.read_text() == "ok"
    assert (tmp_path / "ds.log").exists() and (tmp_path / "kws.log").exists()


def test_a_failure_stops_the_demo_with_its_log(tmp_path):
    code = "import sys; print('boom: bad hparam'); sys.exit(2)"
    with pytest.raises(SystemExit, match="demo step failed.*boom: bad hparam"):
        demo.run_pool([(job("bad", code), None, 1)], 2, str(tmp_path))


def test_plan_fine_tunes_the_3bit_models_from_their_fp32_twins():
    trainings, then = demo.plan("results/demo", full=False)
    by_name = {demo._name(cmd): (cmd, after) for cmd, after, _ in trainings}
    assert set(by_name) == {"conformer_fp", "conformer_ds3", "kws_fp", "kws_ds3"}
    cmd, after = by_name["conformer_ds3"]
    assert after == "conformer_fp"
    assert "--ds_init=from_float" in cmd and "--init_from_fp=results/demo/conformer_fp" in cmd
    cmd, after = by_name["kws_ds3"]  # the keyword spotter likewise, from its own twin
    assert after == "kws_fp"
    assert "--ds_init=from_float" in cmd and "--init_from_fp=results/demo/kws_fp" in cmd
    full, _ = demo.plan("results/demo", full=True)
    assert {demo._name(c) for c, _, _ in full} >= {"crdnn_fp", "crdnn_ds3", "conformer_ds2",
                                                  "conformer_ds4", "conformer_ds3_scratch",
                                                  "kws_ds2", "kws_ds4"}


def test_ablation_takes_one_ingredient_away_per_run():
    """Each ablation run differs from the demo's fp32 conformer in one corpus ingredient,
    and a run that changes the corpus writes it to a folder of its own (a finished
    corpus in data_folder would be reused as it is)."""
    trainings, then = demo.plan_ablation("results/ablation")
    by_name = {demo._name(cmd): cmd for cmd, _, _ in trainings}
    assert set(by_name) == {"espeak_flite", "espeak_only", "vocabulary_288",
                            "no_augmentation"}
    extra = {name: [a for a in cmd if a.startswith("--") and not a.startswith("--output")]
             for name, cmd in by_name.items()}
    assert extra["no_augmentation"] == ["--apply_data_augmentation=False"]
    assert "--synth_train_engines=[espeak-ng]" in extra["espeak_only"]
    assert "--synth_train_engines=[espeak-ng,flite]" in extra["espeak_flite"]
    assert "--synth_vocabulary_size=288" in extra["vocabulary_288"]
    folders = [a for name in ("espeak_flite", "espeak_only", "vocabulary_288")
               for a in extra[name] if a.startswith("--data_folder=")]
    assert len(set(folders)) == 3
    assert all(cmd[2] == "hparams/conformer_fp.yaml" for cmd in by_name.values())
    assert "results/demo/conformer_fp" in then[-1]


def test_scratch_study_changes_one_known_hparam_per_run():
    """Each from-scratch row is hparams/conformer_ds.yaml with the study's base and its own
    overrides (a row's key replaces the base's: no key twice), every override names a
    top-level hparam of the recipe, and the 2-bit row fine-tunes the study's fp32 twin."""
    import re
    trainings, then = demo.plan_scratch_study("results/scratch")
    by_name = {demo._name(cmd): (cmd, after) for cmd, after, _ in trainings}
    assert set(by_name) == set(demo.SCRATCH_STUDY) | {"finetuned_2bit", demo.SCRATCH_FP32,
                                                      "fp32_warmup_1000"}
    keys = set()
    for name in ("conformer_ds.yaml", "conformer_fp.yaml"):
        text = open(f"hparams/{name}").read()
        keys |= set(re.findall(r"^(\w+):", text, flags=re.M))
    for name, (cmd, _) in by_name.items():
        extra = [a for a in cmd[3:] if not a.startswith("--output_folder=")]
        names = [a[2:].split("=")[0] for a in extra]
        assert len(names) == len(set(names)), (name, extra)
        assert set(names) <= keys, (name, extra)
        if name in demo.SCRATCH_STUDY:
            assert cmd[2] == "hparams/conformer_ds.yaml"
            assert extra == demo.with_base(demo.SCRATCH_BASE, demo.SCRATCH_STUDY[name])
    assert by_name["warmup_100"][0][3:] == ["--output_folder=results/scratch/warmup_100",
                                             *demo.SCRATCH_BASE]
    assert "--warmup_steps=100" in demo.SCRATCH_BASE
    assert all("--lr_schedule=noam" in cmd for cmd, _ in by_name.values())
    assert "--warmup_steps=1000" in by_name["warmup_1000"][0]
    assert "--warmup_steps=100" not in by_name["warmup_1000"][0]
    fp_cmd, _ = by_name[demo.SCRATCH_FP32]
    assert fp_cmd[2] == "hparams/conformer_fp.yaml" and "--warmup_steps=100" in fp_cmd
    ft_cmd, after = by_name["finetuned_2bit"]
    assert after == demo.SCRATCH_FP32 and "--ds_bits=2" in ft_cmd
    assert "--number_of_epochs=3" in ft_cmd and "--warmup_steps=100" in ft_cmd
    assert f"--init_from_fp=results/scratch/{demo.SCRATCH_FP32}" in ft_cmd
    assert then[-1][-3:] == ["results/scratch", "--out", "results/scratch"]
    with pytest.raises(SystemExit, match="separate studies"):
        demo.main(["--ablation", "--scratch-study", "--dry-run"])

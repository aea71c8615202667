"""The `make demo` scheduler (recipes/demo/demo.py): its plans (recipes/demo/plans.yaml),
prerequisites, thread budget, failures."""
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "recipes", "demo"))
import demo  # noqa: E402  (recipes/demo/demo.py)

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


def by_name(trainings):
    return {demo._name(cmd): (cmd, after) for cmd, after, _ in trainings}


def test_plan_fine_tunes_the_3bit_models_from_their_fp32_twins():
    trainings, then = demo.plan("demo", "results/demo")
    runs = by_name(trainings)
    assert set(runs) == {"conformer_fp", "conformer_ds3", "kws_fp", "kws_ds3"}
    assert list(runs)[0] == "conformer_fp"  # the longest run starts first
    cmd, after = runs["conformer_ds3"]
    assert after == "conformer_fp"
    assert "--ds_init=from_float" in cmd and "--init_from_fp=results/demo/conformer_fp" in cmd
    assert "--number_of_epochs=2" in cmd and "--eval_packed_paths=[int8,exact]" in cmd
    cmd, after = runs["kws_ds3"]  # the keyword spotter likewise, from its own twin
    assert after == "kws_fp"
    assert "--ds_init=from_float" in cmd and "--init_from_fp=results/demo/kws_fp" in cmd
    assert "--number_of_epochs=5" in cmd
    assert [c[3] for c in then] == ["spot", "spot", "report", "stream"]
    from denseshift_speech.integrations.speechbrain.report import SPOTTING_FILE
    evaluate = then[1]  # saved where the report looks for it: beside the run's results
    assert evaluate[evaluate.index("--save") + 1] == f"results/demo/kws_ds3/{SPOTTING_FILE}"
    data = evaluate[evaluate.index("--evaluate") + 1]  # the keyword spotter's own corpus
    assert re.search(rf"^data_folder: {data}\b", open("hparams/kws_fp.yaml").read(), re.M)
    full, full_then = demo.plan("full", "results/demo")
    assert list(by_name(full))[:4] == list(runs)  # the demo's trainings first
    assert set(by_name(full)) >= {"crdnn_fp", "crdnn_ds3", "conformer_ds2", "conformer_ds4",
                                  "conformer_ds3_scratch", "kws_ds2", "kws_ds4"}
    assert full_then == then
    assert "--ds_bits=2" in by_name(full)["kws_ds2"][0]


def test_ablation_takes_one_ingredient_away_per_run():
    """Each ablation run differs from the demo's fp32 conformer in one corpus ingredient,
    and a run that changes the corpus writes it to a folder of its own (a finished
    corpus in data_folder would be reused as it is)."""
    trainings, then = demo.plan("ablation", "results/ablation")
    runs = {name: cmd for name, (cmd, _) in by_name(trainings).items()}
    assert set(runs) == {"espeak_flite", "espeak_only", "vocabulary_288", "no_augmentation"}
    extra = {name: [a for a in cmd if a.startswith("--") and not a.startswith("--output")]
             for name, cmd in runs.items()}
    assert extra["no_augmentation"] == ["--apply_data_augmentation=False"]
    assert "--synth_train_engines=[espeak-ng]" in extra["espeak_only"]
    assert "--synth_train_engines=[espeak-ng,flite]" in extra["espeak_flite"]
    assert "--synth_vocabulary_size=288" in extra["vocabulary_288"]
    folders = [a for name in ("espeak_flite", "espeak_only", "vocabulary_288")
               for a in extra[name] if a.startswith("--data_folder=")]
    assert len(set(folders)) == 3
    assert all(cmd[2] == "hparams/conformer_fp.yaml" for cmd in runs.values())
    assert "results/demo/conformer_fp" in then[-1]


def test_scratch_study_changes_one_known_hparam_per_run():
    """Each from-scratch row is hparams/conformer_ds.yaml with the study's base and its own
    overrides (a row's key replaces the base's: no key twice), every override names a
    top-level hparam of the recipe, and the 2-bit row fine-tunes the study's fp32 twin."""
    spec = demo.read_plans()["plans"]["scratch-study"]
    base = spec["base"]
    trainings, then = demo.plan("scratch-study", "results/scratch")
    runs = by_name(trainings)
    assert list(runs) == [t["name"] for t in spec["trainings"]]
    keys = set()
    for name in ("conformer_ds.yaml", "conformer_fp.yaml"):
        text = open(f"hparams/{name}").read()
        keys |= set(re.findall(r"^(\w+):", text, flags=re.M))
    for name, (cmd, _) in runs.items():
        extra = [a for a in cmd[3:] if not a.startswith("--output_folder=")]
        names = [a[2:].split("=")[0] for a in extra]
        assert len(names) == len(set(names)), (name, extra)
        assert set(names) <= keys, (name, extra)
    assert runs["warmup_100"][0][3:] == ["--output_folder=results/scratch/warmup_100", *base]
    assert "--warmup_steps=100" in base
    assert all("--lr_schedule=noam" in cmd for cmd, _ in runs.values())
    assert "--warmup_steps=1000" in runs["warmup_1000"][0]
    assert "--warmup_steps=100" not in runs["warmup_1000"][0]
    fp_cmd, _ = runs["fp32_warmup_100"]
    assert fp_cmd[2] == "hparams/conformer_fp.yaml" and "--warmup_steps=100" in fp_cmd
    ft_cmd, after = runs["finetuned_2bit"]
    assert after == "fp32_warmup_100" and "--ds_bits=2" in ft_cmd
    assert "--number_of_epochs=3" in ft_cmd and "--number_of_epochs=12" not in ft_cmd
    assert "--init_from_fp=results/scratch/fp32_warmup_100" in ft_cmd
    assert then[-1][-3:] == ["results/scratch", "--out", "results/scratch"]


def test_merged_overrides_replace_earlier_values_of_a_key():
    assert demo.merged(["--a=1", "--b=2"], ["--b=3"], ["--c=4", "--a=5"]) == \
        ["--b=3", "--c=4", "--a=5"]


def test_a_bad_plan_is_one_error_naming_it():
    plans = {"fine_tune": {"librispeech": []}, "plans": {
        "p": {"trainings": [{"name": "x", "recipe": "librispeech", "hparams": "a.yaml",
                             "fine_tune": "missing"}]},
        "q": {"trainings": [{"name": "x", "recipe": "timit", "hparams": "a.yaml"}]},
        "r": {"trainings": [{"name": "x", "recipe": "librispeech", "hparams": "a.yaml",
                             "epochs": 3}]}}}
    with pytest.raises(demo.PlanError, match="fine-tunes 'missing'"):
        demo.plan("p", "out", plans)
    with pytest.raises(demo.PlanError, match="recipe must be one of"):
        demo.plan("q", "out", plans)
    with pytest.raises(demo.PlanError, match="unknown keys \\['epochs'\\]"):
        demo.plan("r", "out", plans)
    with pytest.raises(demo.PlanError, match="no plan 'z'"):
        demo.plan("z", "out", plans)

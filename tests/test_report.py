"""`denseshift-speech report` on hand-made results.json fixtures."""
import json
import os

import pytest

from denseshift_speech import cli
from denseshift_speech.integrations.speechbrain.report import ReportError, build_report, find_results


def write(folder, **res):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump(res, f)
    return str(folder)


@pytest.fixture
def runs(tmp_path):
    """Two ASR twins and three KWS runs (fp, 3-bit, 2-bit), nested under one folder."""
    root = tmp_path / "results"
    write(root / "conformer_fp", task="asr", arch="conformer", bits=32,
          wer={"test-clean": 10.0, "test-other": 20.0}, params=1000, quantized_params=0,
          quantized_fraction=0.0, fp32_bytes=4000, packed_bytes=4100)
    write(root / "conformer_ds3", task="asr", arch="conformer", bits=3,
          wer={"test-clean": 11.5, "test-other": 19.0}, params=1000, quantized_params=900,
          quantized_fraction=0.9, fp32_bytes=4000, packed_bytes=800, epochs=3, best_epoch=2,
          denseshift={"bits": 3, "init": "from_float"})
    write(root / "kws" / "kws_fp", task="kws", arch="xvector_tdnn", bits=32, accuracy=97.5,
          params=500, quantized_params=0, quantized_fraction=0.0, fp32_bytes=2000,
          packed_bytes=2100, epochs=12, train_seconds=60.0)
    write(root / "kws" / "kws_ds3", task="kws", arch="xvector_tdnn", bits=3, accuracy=97.0,
          params=500, quantized_params=400, quantized_fraction=0.8, fp32_bytes=2000,
          packed_bytes=700)
    write(root / "kws" / "kws_ds2", task="kws", arch="xvector_tdnn", bits=2, accuracy=98.0,
          params=500, quantized_params=400, quantized_fraction=0.8, fp32_bytes=2000,
          packed_bytes=600)
    return root


SPOTTING = {"settings": {"threshold": 0.7}, "sweep": [
    {"threshold": 0.5, "hit_rate": 90.0, "false_alarms_per_hour": 30.0},
    {"threshold": 0.7, "hit_rate": 85.0, "false_alarms_per_hour": 4.0}],
    "keyword_stream": {"hit_rate": 85.0, "clip_accuracy": 88.0, "keywords": 40},
    "keyword_free_stream": {"false_alarms_per_hour": 4.0, "seconds": 900.0},
    "cost": {"rtf": 0.0123, "threads": 1}}


def test_a_saved_spotting_evaluation_joins_its_runs_row(runs, tmp_path):
    (runs / "kws" / "kws_ds3" / "spotting.json").write_text(json.dumps(SPOTTING))
    rows = build_report([runs], tmp_path / "report")
    spotting = {r["source"]: r["spotting"] for r in rows if r["task"] == "kws"}
    assert spotting[str(runs / "kws" / "kws_fp")] is None
    s = spotting[str(runs / "kws" / "kws_ds3")]
    assert (s["hit_rate"], s["clip_accuracy"], s["false_alarms_per_hour"]) == (85.0, 88.0, 4.0)
    md = (tmp_path / "report" / "report.md").read_text()
    table = md.split("## Keyword spotting on a stream")[1]
    assert "| 0.7 | 85.00 | 88.00 | 4.0 | 15.0 min | 0.0123 (1 thr) |" in table
    assert "| 0.5 | 90.00 | 30.0 |" in table
    (runs / "kws" / "kws_ds3" / "spotting.json").write_text("{\"sweep\": []}")
    with pytest.raises(ReportError, match="spotting.json: not a `spot --evaluate --save`"):
        build_report([runs], tmp_path / "report")


def test_rows_and_baseline_deltas(runs, tmp_path):
    out = tmp_path / "report"
    rows = build_report([runs], out)
    assert [(r["task"], r["bits"]) for r in rows] == [
        ("asr", 32), ("asr", 3), ("kws", 32), ("kws", 3), ("kws", 2)]
    by = {(r["task"], r["bits"]): r for r in rows}
    asr = by[("asr", 3)]
    assert asr["wer"] == {"test-clean": 11.5, "test-other": 19.0}
    assert asr["delta_wer"] == {"test-clean": pytest.approx(1.5), "test-other": pytest.approx(-1.0)}
    assert asr["baseline"] == by[("asr", 32)]["source"]
    assert asr["size_ratio"] == pytest.approx(4100 / 800, rel=1e-3)
    assert by[("kws", 3)]["delta_accuracy"] == pytest.approx(-0.5)
    assert by[("kws", 2)]["delta_accuracy"] == pytest.approx(0.5)
    assert by[("kws", 3)]["error_rate"] == pytest.approx(3.0)
    for r in rows:
        for key in ("task", "arch", "bits", "fp32_bytes", "packed_bytes", "params",
                    "quantized_fraction"):
            assert key in r
        assert ("wer" in r) == (r["task"] == "asr") and ("accuracy" in r) == (r["task"] == "kws")
    assert by[("kws", 32)]["baseline"] is None and "delta_accuracy" not in by[("kws", 32)]

    with open(out / "report.json") as f:
        assert json.load(f) == json.loads(json.dumps(rows))
    md = (out / "report.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(rows)
    assert "-0.50 pts" in md and "+1.50 / -1.00 WER" in md and "(baseline)" in md
    assert "| 3-bit DS | 3 ep (best: 2) from fp32 |" in md and "| 3-bit DS | - |" in md
    png = (out / "error_vs_size.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


def test_several_dirs_and_no_baseline(tmp_path):
    a = write(tmp_path / "a", task="kws", arch="cnn", bits=3, accuracy=90.0,
              fp32_bytes=100, packed_bytes=20)
    b = write(tmp_path / "b", task="kws", arch="xvector_tdnn", bits=32, accuracy=95.0,
              fp32_bytes=100, packed_bytes=110)
    rows = build_report([a, b], tmp_path / "out")
    ds = [r for r in rows if r["bits"] == 3][0]
    assert ds["baseline"] is None and "delta_accuracy" not in ds  # other arch: no twin
    assert "no fp32 run" in (tmp_path / "out" / "report.md").read_text()


def test_find_results_recursive_and_deduplicated(runs):
    found = find_results([runs, runs / "kws", runs / "kws" / "kws_fp" / "results.json"])
    assert len(found) == 5


def test_dir_without_results_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReportError, match=r"empty: no results.json"):
        build_report([str(empty)], tmp_path / "out")
    with pytest.raises(ReportError, match="no such folder"):
        build_report([str(tmp_path / "missing")], tmp_path / "out")


@pytest.mark.parametrize("content, match", [
    ("{not json", "not valid JSON"),
    (json.dumps({"task": "tts", "accuracy": 1}), "'task' must be one of"),
    (json.dumps({"task": "kws", "bits": 3}), "needs 'accuracy'"),
    (json.dumps({"task": "asr", "wer": 5.0}), "needs 'wer'"),
    (json.dumps({"task": "kws", "accuracy": "high"}), "'accuracy' must be a finite number"),
])
def test_bad_results_file_names_the_file(tmp_path, content, match):
    d = tmp_path / "run"
    d.mkdir()
    (d / "results.json").write_text(content)
    with pytest.raises(ReportError, match=match) as err:
        build_report([str(d)], tmp_path / "out")
    assert str(d / "results.json") in str(err.value)


def test_cli_verb(runs, tmp_path, capsys):
    out = tmp_path / "cli_out"
    assert cli.main(["report", str(runs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| kws | xvector_tdnn | 3-bit DS |" in printed
    assert (out / "report.md").is_file() and (out / "report.json").is_file()

    empty = tmp_path / "nothing"
    empty.mkdir()
    assert cli.main(["report", str(empty), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("denseshift-speech report: error:") and "nothing" in err
    assert len(err.strip().splitlines()) == 1


def test_packed_paths_get_their_own_table(tmp_path):
    root = tmp_path / "results"
    write(root / "fp", task="asr", arch="conformer", bits=32, wer={"test-clean": 10.0},
          fp32_bytes=4000, packed_bytes=4100)
    write(root / "ds3", task="asr", arch="conformer", bits=3, wer={"test-clean": 10.5},
          fp32_bytes=4000, packed_bytes=800,
          packed_paths={"int8": {"test-clean": {"WER": 10.6, "CER": 5.0, "WER_greedy": 20.1}},
                        "exact": {"test-clean": {"WER": 10.5, "CER": 5.0, "WER_greedy": 20.0}}})
    rows = build_report([str(root)], str(tmp_path / "out"))
    ds = [r for r in rows if r["bits"] == 3][0]
    assert ds["packed_paths"]["int8"]["test-clean"]["WER"] == 10.6
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## The packed model on each kernel path" in md
    assert "| int8 | 10.60 (20.10) |" in md and "| exact | 10.50 (20.00) |" in md


def test_kws_other_engine_accuracy_in_rows_and_table(tmp_path):
    """results.json's accuracy_other_engine (clips of an unseen speech engine) is shown
    beside the accuracy, with its own difference to the fp32 twin."""
    root = tmp_path / "r"
    write(root / "fp", task="kws", arch="xvector_tdnn", bits=32, accuracy=97.5,
          accuracy_other_engine=90.0, params=10, quantized_params=0, fp32_bytes=40,
          packed_bytes=41)
    write(root / "ds3", task="kws", arch="xvector_tdnn", bits=3, accuracy=97.0,
          accuracy_other_engine=88.5, params=10, quantized_params=8, fp32_bytes=40,
          packed_bytes=12)
    rows = build_report([str(root)], str(tmp_path / "out"))
    by = {r["bits"]: r for r in rows}
    assert by[3]["delta_accuracy_other_engine"] == pytest.approx(-1.5)
    table = open(tmp_path / "out" / "report.md").read()
    assert "acc 97.00% / other engine 88.50%" in table and "-0.50 / -1.50 pts" in table


def test_per_engine_and_voice_tables(tmp_path):
    """results.json's wer_by_engine/by_voice (accuracy_ for keyword spotting) get their
    own tables; espeak-ng's one-speaker voices only count in the per-engine table."""
    root = tmp_path / "r"
    write(root / "asr", task="asr", arch="conformer", bits=32, wer={"test-clean": 10.0},
          wer_by_engine={"test-clean": {"espeak-ng": 8.0, "flite": 14.0}},
          wer_by_voice={"test-clean": {"espeak-ng:en-us+m3": 8.0, "flite:slt": 14.0}})
    write(root / "kws", task="kws", arch="xvector_tdnn", bits=32, accuracy=97.5,
          accuracy_by_engine={"test_other": {"festival": 60.0}},
          accuracy_by_voice={"test_other": {"festival:kal_diphone": 70.0,
                                            "festival:ked_diphone": 50.0}})
    rows = build_report([str(root)], str(tmp_path / "out"))
    asr = [r for r in rows if r["task"] == "asr"][0]
    assert asr["by_engine"] == {"test-clean": {"espeak-ng": 8.0, "flite": 14.0}}
    md = (tmp_path / "out" / "report.md").read_text()
    engines = md.split("## Per speech engine")[1].split("## Per voice")[0]
    assert "| espeak-ng | festival | flite |" in engines
    assert "| test-clean | 8.00 | - | 14.00 |" in engines
    assert "| test_other | - | 60.00 | - |" in engines
    voices = md.split("## Per voice")[1]
    assert "espeak-ng:en-us+m3" not in voices
    assert "| test_other | 70.00 | 50.00 | - |" in voices


def test_real_speech_rows_or_where_to_get_them(runs, tmp_path):
    """Runs measured on real recordings get one row per folder; without any, the report
    says where the public test sets come from."""
    build_report([runs], tmp_path / "none")
    text = (tmp_path / "none" / "report.md").read_text()
    assert "No run was measured on real recordings" in text
    assert "speech_commands_test_set_v0.02.tar.gz" in text
    res = json.loads((runs / "kws" / "kws_fp" / "results.json").read_text())
    res["real_speech"] = {"real/speech_commands_v0.02_test": {
        "layout": "speech_commands", "accuracy": 91.25, "clips": 2652, "correct": 2420}}
    write(runs / "kws" / "kws_fp", **res)
    res = json.loads((runs / "conformer_fp" / "results.json").read_text())
    res["real_speech"] = {"free_spoken_digits/recordings": {
        "layout": "digits", "wer": 12.5, "exact_rate": 87.5, "utterances": 1500,
        "exact": 1312, "decoding": "beam_lm"}}
    write(runs / "conformer_fp", **res)
    build_report([runs], tmp_path / "some")
    lines = (tmp_path / "some" / "report.md").read_text().splitlines()
    rows = [line for line in lines if "real/speech_commands" in line or
            "free_spoken_digits" in line]
    assert any("| fp32 | real/speech_commands_v0.02_test | 2652 | 91.25 | - | - |" in r
               for r in rows), rows
    assert any("| fp32 | free_spoken_digits/recordings | 1500 | 87.50 | 12.50 | beam_lm |" in r
               for r in rows), rows

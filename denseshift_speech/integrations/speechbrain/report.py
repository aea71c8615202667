"""The report of ``denseshift-speech report RESULT_DIRS... [--out DIR]``: tables and a plot of what the
DenseShift models lose or keep against their full-precision twins.

Reads every ``results.json`` a recipe wrote (the given folders, searched recursively),
and writes into ``--out``:

* ``report.md``   -- one Markdown table, one row per trained model;
* ``report.json`` -- the same rows as a list of objects (see :func:`build_report`);
* ``error_vs_size.png`` -- error rate (WER % for ASR, 100 - accuracy for KWS) against
  the size of the model file (packed for DenseShift models, float for full precision).

Each DenseShift row is compared with the full-precision run of the same task and
architecture (``bits == 32``) found among the inputs: ``delta_accuracy`` (points,
positive = better) for keyword spotting, ``delta_wer`` (points per split, negative =
better) for ASR, and ``size_ratio`` (baseline file bytes / this model's file bytes; without
a baseline, this model's float32 bytes / its file bytes).

Python API: ``build_report(result_dirs, out_dir) -> rows``.
"""
from __future__ import annotations

import json
import math
import os

from ...errors import UserError

RESULTS_FILE = "results.json"
REPORT_MD = "report.md"
REPORT_JSON = "report.json"
REPORT_PNG = "error_vs_size.png"
# `spot --evaluate ... --save <run>/spotting.json` (the demo writes one for its 3-bit
# keyword spotter): the report adds its streaming numbers to the run's row
SPOTTING_FILE = "spotting.json"
TASKS = ("asr", "kws")


class ReportError(UserError):
    """A results folder or file the report cannot use; the message names it."""


# ---------------------------------------------------------------------------
# Finding and reading results
# ---------------------------------------------------------------------------

def find_results(result_dirs) -> list:
    """Paths of the ``results.json`` files under each folder (a folder's own file first,
    then its sub-folders, recursively, in sorted order).  A folder with none is an error."""
    if isinstance(result_dirs, (str, os.PathLike)):
        result_dirs = [result_dirs]
    if not result_dirs:
        raise ReportError("no result folders given")
    found = []
    for d in map(os.fspath, result_dirs):
        if os.path.isfile(d) and os.path.basename(d) == RESULTS_FILE:
            found.append(d)
            continue
        if not os.path.isdir(d):
            raise ReportError(f"{d}: no such folder")
        here = []
        for root, dirs, files in os.walk(d):
            dirs.sort()
            if RESULTS_FILE in files:
                here.append(os.path.join(root, RESULTS_FILE))
        if not here:
            raise ReportError(f"{d}: no {RESULTS_FILE} in this folder or below "
                              "(did its training run finish?)")
        found.extend(here)
    seen, unique = set(), []
    for p in found:
        key = os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def _number(path, key, value, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ReportError(f"{path}: '{key}' must be a finite number, got {value!r}")
    return value


def read_result(path: str) -> dict:
    """One results.json -> a normalized row (without the baseline comparison)."""
    try:
        with open(path) as f:
            res = json.load(f)
    except OSError as err:
        raise ReportError(f"{path}: cannot read ({err.strerror})")
    except ValueError as err:
        raise ReportError(f"{path}: not valid JSON ({err})")
    if not isinstance(res, dict):
        raise ReportError(f"{path}: expected a JSON object, got {type(res).__name__}")
    task = res.get("task")
    if task not in TASKS:
        raise ReportError(f"{path}: 'task' must be one of {', '.join(TASKS)}, got {task!r}")
    bits = res.get("bits", 32)
    if bits is None:
        bits = 32
    bits = int(_number(path, "bits", bits))
    row = {"task": task, "arch": str(res.get("arch") or "?"), "bits": bits,
           "source": os.path.dirname(os.path.abspath(path))}
    if task == "kws":
        if "accuracy" not in res:
            raise ReportError(f"{path}: a kws result needs 'accuracy' (percent)")
        row["accuracy"] = float(_number(path, "accuracy", res["accuracy"]))
        row["error_rate"] = round(100.0 - row["accuracy"], 4)
        if res.get("accuracy_other_engine") is not None:  # clips of an unseen engine
            row["accuracy_other_engine"] = float(_number(
                path, "accuracy_other_engine", res["accuracy_other_engine"]))
    else:
        wer = res.get("wer")
        if not isinstance(wer, dict) or not wer:
            raise ReportError(f"{path}: an asr result needs 'wer', a mapping split -> WER %")
        row["wer"] = {str(k): float(_number(path, f"wer.{k}", v)) for k, v in wer.items()}
        row["error_rate"] = row["wer"][_primary_split(row["wer"])]
    for key in ("params", "quantized_params", "fp32_bytes", "packed_bytes"):
        row[key] = _number(path, key, res.get(key), allow_none=True)
        if row[key] is not None:
            row[key] = int(row[key])
    qf = res.get("quantized_fraction")
    row["quantized_fraction"] = (None if qf is None
                                 else float(_number(path, "quantized_fraction", qf)))
    for key in ("epochs", "best_epoch", "train_seconds", "name", "experiment", "decoding"):
        if key in res:
            row[key] = res[key]
    paths = res.get("packed_paths")  # {kernel path: {split: {WER, CER, WER_greedy}}}
    if isinstance(paths, dict) and paths:
        row["packed_paths"] = {
            str(p): {str(sp): {k: float(_number(path, f"packed_paths.{p}.{sp}.{k}", v))
                               for k, v in r.items() if isinstance(v, (int, float))}
                     for sp, r in splits.items() if isinstance(r, dict)}
            for p, splits in paths.items() if isinstance(splits, dict)}
    metric = "accuracy" if task == "kws" else "wer"
    for kind in ("engine", "voice"):  # synthetic corpora: {split: {engine[:voice]: %}}
        groups = res.get(f"{metric}_by_{kind}")
        if isinstance(groups, dict) and groups:
            row[f"by_{kind}"] = {
                str(sp): {str(k): float(_number(path, f"{metric}_by_{kind}.{sp}.{k}", v))
                          for k, v in by.items()}
                for sp, by in groups.items() if isinstance(by, dict)}
    real = res.get("real_speech")  # {folder name: {accuracy | wer, exact_rate, ...}}
    if isinstance(real, dict) and real:
        row["real_speech"] = {str(name): {k: v for k, v in r.items()
                                          if isinstance(v, (int, float, str))}
                              for name, r in real.items() if isinstance(r, dict)}
    if task == "kws":
        row["spotting"] = _spotting(os.path.join(row["source"], SPOTTING_FILE))
    config = res.get("denseshift")
    row["init"] = config.get("init") if isinstance(config, dict) else None
    # the size a deployed model takes on disk: packed file if there is one, else fp32
    row["model_bytes"] = row["packed_bytes"] if row["packed_bytes"] else row["fp32_bytes"]
    return row


def _spotting(path: str) -> dict | None:
    """The headline numbers of a ``spot --evaluate --save`` file, or None without one."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            res = json.load(f)
        kw, free, cost = res["keyword_stream"], res["keyword_free_stream"], res["cost"]
        return {"threshold": res["settings"]["threshold"], "hit_rate": kw["hit_rate"],
                "clip_accuracy": kw.get("clip_accuracy"), "keywords": kw["keywords"],
                "false_alarms_per_hour": free["false_alarms_per_hour"],
                "keyword_free_minutes": round(free["seconds"] / 60, 1), "rtf": cost["rtf"],
                "threads": cost["threads"], "sweep": res.get("sweep", []),
                "plot": res.get("plot")}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ReportError(f"{path}: not a `spot --evaluate --save` result ({err!r})")


def _primary_split(wer: dict) -> str:
    for split in ("test-clean", "test", "test-other"):
        if split in wer:
            return split
    return sorted(wer)[0]


# ---------------------------------------------------------------------------
# Comparison against the full-precision twin
# ---------------------------------------------------------------------------

def _baseline_for(row, rows):
    """The full-precision row of the same task + arch; prefer one in the same parent folder."""
    cands = [r for r in rows if r is not row and r["bits"] == 32
             and r["task"] == row["task"] and r["arch"] == row["arch"]]
    if not cands:
        return None
    parent = os.path.dirname(row["source"])
    near = [r for r in cands if os.path.dirname(r["source"]) == parent]
    return (near or cands)[0]


def compare(rows: list) -> list:
    for row in rows:
        base = _baseline_for(row, rows) if row["bits"] != 32 else None
        row["baseline"] = base["source"] if base else None
        if base is None:
            if row["bits"] != 32 and row.get("fp32_bytes") and row.get("model_bytes"):
                # no trained twin: compare with this model's own float32 size
                row["size_ratio"] = round(row["fp32_bytes"] / row["model_bytes"], 3)
            continue
        if row["task"] == "kws":
            row["delta_accuracy"] = round(row["accuracy"] - base["accuracy"], 4)
            if "accuracy_other_engine" in row and "accuracy_other_engine" in base:
                row["delta_accuracy_other_engine"] = round(
                    row["accuracy_other_engine"] - base["accuracy_other_engine"], 4)
        else:
            row["delta_wer"] = {k: round(v - base["wer"][k], 4)
                                for k, v in row["wer"].items() if k in base["wer"]}
        if base.get("model_bytes") and row.get("model_bytes"):
            row["size_ratio"] = round(base["model_bytes"] / row["model_bytes"], 3)
    return rows


def build_report(result_dirs, out_dir) -> list:
    """Read the results under ``result_dirs``; write report.md, report.json and the plot
    into ``out_dir``; return the rows (list of dicts, sorted by task, arch, parent folder,
    bits descending)."""
    rows = [read_result(p) for p in find_results(result_dirs)]
    rows.sort(key=lambda r: (r["task"], r["arch"], os.path.dirname(r["source"]), -r["bits"],
                             r["source"]))
    compare(rows)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, REPORT_JSON), "w") as f:
        json.dump(rows, f, indent=2, sort_keys=True)
    with open(os.path.join(out_dir, REPORT_MD), "w") as f:
        f.write(markdown(rows))
    plot(rows, os.path.join(out_dir, REPORT_PNG))
    return rows


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------

def _size(n) -> str:
    if n is None:
        return "-"
    for unit, k in (("MB", 1e6), ("kB", 1e3)):
        if n >= k:
            return f"{n / k:.1f} {unit}" if n < 100 * k else f"{n / k:.0f} {unit}"
    return f"{n} B"


def _signed(x) -> str:
    return f"{x:+.2f}"


def _metric(row) -> str:
    if row["task"] == "kws":
        other = row.get("accuracy_other_engine")
        return f"acc {row['accuracy']:.2f}%" + (
            f" / other engine {other:.2f}%" if other is not None else "")
    return " / ".join(f"{k} {v:.2f}" for k, v in row["wer"].items())


def _delta(row) -> str:
    if row["bits"] == 32:
        return "(baseline)"
    if row.get("baseline") is None:
        return "no fp32 run"
    if row["task"] == "kws":
        other = row.get("delta_accuracy_other_engine")
        return (_signed(row["delta_accuracy"])
                + (f" / {_signed(other)}" if other is not None else "") + " pts")
    return " / ".join(_signed(v) for v in row["delta_wer"].values()) + " WER"


def _display_path(path: str) -> str:
    """Relative to the working directory when below it, else absolute."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def markdown(rows: list) -> str:
    head = ["task", "arch", "bits", "training", "result", "vs fp32", "params", "quantized",
            "fp32 size", "model file", "smaller by", "run"]
    lines = ["# DenseShift vs full precision", "",
             "Result: accuracy (%) for keyword spotting (`other engine`: clips by a speech "
             "engine never used in training), WER (%) per test split for ASR. "
             "`vs fp32`: difference to the full-precision run of the same task and "
             "architecture. `training`: epochs (and the epoch of the best-validation "
             "checkpoint tested, when not the last), `from fp32` for DenseShift fine-tuned "
             "from the full-precision run's weights (else trained from the paper's "
             "low-variance initialization). `model file`: the packed DenseShift file, or "
             "the float32 weights for full precision.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        qf = "-" if r["quantized_fraction"] is None else f"{100 * r['quantized_fraction']:.1f}%"
        src = _display_path(r["source"])
        ratio = f"{r['size_ratio']:.1f}x" if r.get("size_ratio") else "-"
        params = "-" if r["params"] is None else f"{r['params']:,}"
        lines.append("| " + " | ".join([
            r["task"], r["arch"], "fp32" if r["bits"] == 32 else f"{r['bits']}-bit DS",
            _training(r), _metric(r), _delta(r), params, qf, _size(r["fp32_bytes"]),
            _size(r["model_bytes"]), ratio, f"`{src}`"]) + " |")
    with_paths = [r for r in rows if r.get("packed_paths")]
    if with_paths:
        lines += ["", "## The packed model on each kernel path", "",
                  "The packed file re-tested on the test splits per kernel path (recipe option "
                  "`eval_packed_paths`): WER %, LM decoding (greedy CTC in brackets).", "",
                  "| run | kernel path | " + " | ".join(sorted({sp for r in with_paths
                                                                  for p in r["packed_paths"].values()
                                                                  for sp in p})) + " |"]
        splits = sorted({sp for r in with_paths for p in r["packed_paths"].values() for sp in p})
        lines.append("|" + "---|" * (2 + len(splits)))
        for r in with_paths:
            for kp, by_split in sorted(r["packed_paths"].items()):
                cells = []
                for sp in splits:
                    m = by_split.get(sp, {})
                    cells.append("-" if "WER" not in m else
                                 f"{m['WER']:.2f}" + (f" ({m['WER_greedy']:.2f})" if "WER_greedy" in m else ""))
                lines.append(f"| `{_display_path(r['source'])}` | {kp} | " + " | ".join(cells) + " |")
    lines += _spotting_table(rows)
    lines += _real_speech_table(rows)
    lines += _by_voice_tables(rows)
    return "\n".join(lines) + "\n"


def _spotting_table(rows: list) -> list:
    """The keyword spotters run on a stream (``spot --evaluate``): hit rate against the
    same clips' accuracy, false alarms per hour, cost; then each one's threshold sweep."""
    measured = [r for r in rows if r.get("spotting")]
    if not measured:
        return []
    lines = ["", "## Keyword spotting on a stream", "",
             "`denseshift-speech spot MODEL --evaluate DIR`: the test clips joined with gaps "
             "into one stream, a 1-second window every 100 ms, smoothed posteriors, a "
             "threshold and a refractory time. Hit rate: keywords detected at the right "
             "time; clip accuracy: the same keyword clips each classified as one clip; "
             "false alarms per hour on keyword-free audio (unknown words, silence, held-out "
             "noise); real-time factor of the packed spotter.", "",
             "| run | bits | threshold | hit rate % | clip accuracy % | false alarms / h | "
             "keyword-free audio | real-time factor |", "|---|---|---|---|---|---|---|---|"]
    for r in measured:
        s = r["spotting"]
        bits = "fp32" if r["bits"] == 32 else f"{r['bits']}-bit DS"
        acc = "-" if s["clip_accuracy"] is None else f"{s['clip_accuracy']:.2f}"
        lines.append(f"| `{_display_path(r['source'])}` | {bits} | {s['threshold']} | "
                     f"{s['hit_rate']:.2f} | {acc} | {s['false_alarms_per_hour']:.1f} | "
                     f"{s['keyword_free_minutes']} min | {s['rtf']:.4f} ({s['threads']} thr) |")
    for r in measured:
        s = r["spotting"]
        lines += ["", f"Threshold sweep of `{_display_path(r['source'])}`"
                  + (f" (plot: `{_display_path(s['plot'])}`)" if s.get("plot") else "") + ":",
                  "", "| threshold | hit rate % | false alarms / h |", "|---|---|---|"]
        lines += [f"| {p['threshold']} | {p['hit_rate']:.2f} | {p['false_alarms_per_hour']:.1f} |"
                  for p in s["sweep"]]
    return lines


# where users get the public real-speech test sets (the runs take their folders)
REAL_SPEECH_SOURCES = (
    "Speech Commands v0.02 test set: the archive speech_commands_test_set_v0.02.tar.gz "
    "(Warden 2018, arXiv:1804.03209; CC BY 4.0), unpacked: one folder per class",
    "Free Spoken Digit Dataset (Zenodo DOI 10.5281/zenodo.1342401; CC BY-SA 4.0): its "
    "recordings/ folder of {digit}_{speaker}_{n}.wav")


def _real_speech_table(rows: list) -> list:
    """One row per run and folder of real recordings (hparam real_speech_folders), or how
    to get such folders when no run was given any."""
    lines = ["", "## Real speech", ""]
    measured = [r for r in rows if r.get("real_speech")]
    if not measured:
        return lines + [
            "No run was measured on real recordings. Give the recipes folders of them "
            "(`--real_speech_folders=[DIR,...]`, or `make demo REAL_SPEECH=\"DIR ...\"`); "
            "public test sets:", ""] + [f"- {src}" for src in REAL_SPEECH_SOURCES]
    lines += ["Human recordings, never trained on: accuracy % for keyword spotting; for ASR "
              "the share of utterances transcribed exactly right and the WER %.", "",
              "| run | bits | real-speech set | items | accuracy / exactly right | WER | "
              "decoding |", "|---|---|---|---|---|---|---|"]
    for r in measured:
        bits = "fp32" if r["bits"] == 32 else f"{r['bits']}-bit DS"
        for name, m in sorted(r["real_speech"].items()):
            if "skipped" in m:
                continue
            if "accuracy" in m:
                cells = [str(m.get("clips", "-")), f"{m['accuracy']:.2f}", "-", "-"]
            else:
                cells = [str(m.get("utterances", "-")), f"{m.get('exact_rate', 0):.2f}",
                         f"{m.get('wer', 0):.2f}", str(m.get("decoding", "-"))]
            lines.append(f"| `{_display_path(r['source'])}` | {bits} | {name} | "
                         + " | ".join(cells) + " |")
    return lines


def _by_voice_tables(rows: list) -> list:
    """Per engine, then per voice of the engines other than espeak-ng (whose hundreds of
    accent+variant voices are one speaker each), of the runs on a synthetic corpus."""
    lines = []
    for kind, title in (("engine", "Per speech engine"),
                        ("voice", "Per voice (engines other than espeak-ng)")):
        names = sorted({name for r in rows for by in r.get(f"by_{kind}", {}).values()
                        for name in by if not name.startswith("espeak-ng:")})
        if not names:
            continue
        lines += ["", f"## {title}", "",
                  "Synthetic corpora (their SPEAKERS.TXT): WER % for ASR (the reported "
                  "decoding), accuracy % for keyword spotting.", "",
                  "| run | split | " + " | ".join(names) + " |",
                  "|" + "---|" * (2 + len(names))]
        for r in rows:
            for sp, by in sorted(r.get(f"by_{kind}", {}).items()):
                vals = [f"{by[n]:.2f}" if n in by else "-" for n in names]
                if any(v != "-" for v in vals):
                    lines.append(f"| `{_display_path(r['source'])}` | {sp} | "
                                 + " | ".join(vals) + " |")
    return lines


def _training(row: dict) -> str:
    epochs = f"{row['epochs']} ep" if row.get("epochs") is not None else "-"
    if row.get("best_epoch") not in (None, row.get("epochs")):
        epochs += f" (best: {row['best_epoch']})"
    return f"{epochs} from fp32" if row.get("init") == "from_float" else epochs


def plot(rows: list, path: str):
    """Error rate against model file size, one panel per task."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    tasks = [t for t in TASKS if any(r["task"] == t for r in rows)]
    fig, axes = plt.subplots(1, max(len(tasks), 1), figsize=(5.5 * max(len(tasks), 1), 4),
                             squeeze=False)
    for ax, task in zip(axes[0], tasks):
        sel = [r for r in rows if r["task"] == task and r.get("model_bytes")]
        series = []  # (label, [(row, error rate)])
        for arch in sorted({r["arch"] for r in sel}):
            pts = sorted((r for r in sel if r["arch"] == arch), key=lambda r: r["model_bytes"])
            if task == "kws":
                series.append((arch, [(r, r["error_rate"]) for r in pts]))
                continue
            for split in sorted({k for r in pts for k in r["wer"]}):
                series.append((f"{arch} {split}",
                               [(r, r["wer"][split]) for r in pts if split in r["wer"]]))
        for label, pts in series:
            xs = [r["model_bytes"] / 1e3 for r, _ in pts]
            ys = [y for _, y in pts]
            ax.plot(xs, ys, "o-", label=label)
            for (r, _), x, y in zip(pts, xs, ys):
                ax.annotate("fp32" if r["bits"] == 32 else f"{r['bits']}b", (x, y),
                            textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("model file size (kB, log scale)")
        ax.set_ylabel("error rate (%)" + (" = 100 - accuracy" if task == "kws" else " = WER"))
        ax.set_title({"kws": "keyword spotting", "asr": "speech recognition"}[task])
        ax.grid(True, which="both", alpha=0.3)
        if series:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

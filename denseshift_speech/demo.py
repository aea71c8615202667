"""`make demo` / `make results`: the whole user path, from nothing to a report.

Runs the same commands a user types (each printed before it runs): train the
full-precision and 3-bit DenseShift conformer and keyword spotter (each recipe synthesizes
its embedded corpus when missing), write the report, then stream a few held-out test utterances through the packed
model.  Twin trainings run side by side, one thread each (2 cores here).

    python -m denseshift_speech.demo --out results/demo           # about 20 minutes
    python -m denseshift_speech.demo --out results/full --full    # + CRDNN, 2/3/4-bit sweep
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable


def asr_run(hparams: str, out: str, name: str, *extra: str) -> list:
    return [PY, "recipes/librispeech/train.py", f"hparams/{hparams}",
            f"--output_folder={out}/{name}", *extra]


def kws_run(hparams: str, out: str, name: str, *extra: str) -> list:
    return [PY, "recipes/speech_commands/train.py", f"hparams/{hparams}",
            f"--output_folder={out}/{name}", *extra]


def plan(out: str, full: bool) -> list:
    """Stages; the commands inside a stage run in parallel."""
    # Each recipe synthesizes its corpus when missing (the first of two twins to get
    # there writes it, the other waits on its lock).
    stages = [
        [asr_run("conformer_fp.yaml", out, "conformer_fp"),
         asr_run("conformer_ds.yaml", out, "conformer_ds3")],
        [kws_run("kws_fp.yaml", out, "kws_fp"), kws_run("kws_ds.yaml", out, "kws_ds3")],
    ]
    if full:
        stages += [
            [asr_run("conformer_ds.yaml", out, "conformer_ds2", "--ds_bits=2"),
             asr_run("conformer_ds.yaml", out, "conformer_ds4", "--ds_bits=4")],
            [asr_run("crdnn_fp.yaml", out, "crdnn_fp"), asr_run("crdnn_ds.yaml", out, "crdnn_ds3")],
            [kws_run("kws_ds.yaml", out, "kws_ds2", "--ds_bits=2"),
             kws_run("kws_ds.yaml", out, "kws_ds4", "--ds_bits=4")],
        ]
    stages.append([[PY, "-m", "denseshift_speech", "report", out, "--out", out]])
    stages.append([[PY, "-m", "denseshift_speech", "stream", f"{out}/conformer_ds3/model.dsp",
                    "--manifest", f"{out}/conformer_ds3/test-clean.csv", "--limit", "4"]])
    return stages


def run_stage(commands: list, log_dir: str) -> None:
    """Run commands side by side; a lone command prints to the terminal, parallel ones log."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    procs = []
    for i, cmd in enumerate(commands):
        print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
        log = None
        if len(commands) > 1:
            log = open(os.path.join(log_dir, f"{_name(cmd)}.log"), "w")
        procs.append((cmd, subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log,
                                            stderr=subprocess.STDOUT if log else None), log))
    failed = [(cmd, log) for cmd, proc, log in procs if proc.wait() != 0]
    for _, _, log in procs:
        if log:
            log.close()
    for cmd, log in failed:
        tail = open(log.name).read()[-3000:] if log else ""
        sys.exit(f"demo step failed: {' '.join(cmd)}\n{tail}")


def _name(cmd: list) -> str:
    for arg in cmd:
        if arg.startswith("--output_folder="):
            return os.path.basename(arg.split("=", 1)[1])
    return "_".join(os.path.basename(c) for c in cmd[2:4])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/demo")
    parser.add_argument("--full", action="store_true", help="also CRDNN and the 2/3/4-bit sweep")
    args = parser.parse_args(argv)
    os.makedirs(os.path.join(ROOT, args.out, "logs"), exist_ok=True)
    start = time.time()
    for stage in plan(args.out, args.full):
        t = time.time()
        run_stage(stage, os.path.join(ROOT, args.out, "logs"))
        print(f"   ({time.time() - t:.0f} s)", flush=True)
    print(f"demo finished in {(time.time() - start) / 60:.1f} min; report: {args.out}/report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

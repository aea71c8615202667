"""`make demo` / `make results`: the whole user path, from nothing to a report.

Runs the same commands a user types (each printed before it runs): train the
full-precision and 3-bit DenseShift conformer and keyword spotter (each recipe synthesizes
its embedded corpus when missing), write the report, then stream a few held-out test utterances through the packed
model.  Trainings run two at a time, one thread each (2 cores here), longest first, each
logging to <out>/logs/<name>.log.

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


def plan(out: str, full: bool) -> tuple:
    """(trainings, then) -- trainings are independent and listed longest first; the
    report and the streaming check run after all of them."""
    # Each recipe synthesizes its corpus when missing (the first of two runs to get
    # there writes it, the other waits on its lock).
    trainings = [asr_run("conformer_ds.yaml", out, "conformer_ds3"),
                 asr_run("conformer_fp.yaml", out, "conformer_fp")]
    if full:
        trainings += [asr_run("conformer_ds.yaml", out, "conformer_ds2", "--ds_bits=2"),
                      asr_run("conformer_ds.yaml", out, "conformer_ds4", "--ds_bits=4"),
                      asr_run("crdnn_ds.yaml", out, "crdnn_ds3"),
                      asr_run("crdnn_fp.yaml", out, "crdnn_fp")]
    trainings += [kws_run("kws_ds.yaml", out, "kws_ds3"), kws_run("kws_fp.yaml", out, "kws_fp")]
    if full:
        trainings += [kws_run("kws_ds.yaml", out, "kws_ds2", "--ds_bits=2"),
                      kws_run("kws_ds.yaml", out, "kws_ds4", "--ds_bits=4")]
    then = [[PY, "-m", "denseshift_speech", "report", out, "--out", out],
            [PY, "-m", "denseshift_speech", "stream", f"{out}/conformer_ds3/model.dsp",
             "--manifest", f"{out}/conformer_ds3/test-clean.csv", "--limit", "4"]]
    return trainings, then


def run_pool(commands: list, slots: int, log_dir: str) -> None:
    """Run ``commands`` in order, ``slots`` at a time (one thread each), each logging to
    <log_dir>/<name>.log; the first failure stops the rest and shows its log's tail."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    queue, running = list(commands), []
    while queue or running:
        while queue and len(running) < slots:
            cmd = queue.pop(0)
            print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
            log = open(os.path.join(log_dir, f"{_name(cmd)}.log"), "w")
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            running.append((cmd, proc, log, time.time()))
        time.sleep(0.5)
        for job in [j for j in running if j[1].poll() is not None]:
            cmd, proc, log, t = job
            running.remove(job)
            log.close()
            if proc.returncode != 0:
                for _, other, _, _ in running:
                    other.kill()
                sys.exit(f"demo step failed: {' '.join(cmd)}\n{open(log.name).read()[-3000:]}")
            print(f"   done: {_name(cmd)} ({time.time() - t:.0f} s)", flush=True)


def run(cmd: list) -> None:
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    if subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1")).returncode:
        sys.exit(f"demo step failed: {' '.join(cmd)}")


def _name(cmd: list) -> str:
    for arg in cmd:
        if arg.startswith("--output_folder="):
            return os.path.basename(arg.split("=", 1)[1])
    return "_".join(os.path.basename(c) for c in cmd[2:4])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/demo")
    parser.add_argument("--full", action="store_true", help="also CRDNN and the 2/3/4-bit sweep")
    parser.add_argument("--jobs", type=int, default=2,
                        help="trainings run side by side, one thread each (default: 2 cores)")
    args = parser.parse_args(argv)
    os.makedirs(os.path.join(ROOT, args.out, "logs"), exist_ok=True)
    start = time.time()
    trainings, then = plan(args.out, args.full)
    run_pool(trainings, args.jobs, os.path.join(ROOT, args.out, "logs"))
    for cmd in then:
        run(cmd)
    print(f"demo finished in {(time.time() - start) / 60:.1f} min; report: {args.out}/report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

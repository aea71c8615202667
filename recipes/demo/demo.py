"""`make demo` and the studies: the recipes' trainings of a plan, then the report.

Runs the same commands a user types (each printed before it runs): the trainings of a
plan in ``plans.yaml`` beside this file (``demo``: the fp32 conformer and keyword
spotter and their 3-bit twins fine-tuned from them; ``full``, ``ablation``,
``scratch-study``: see there), then its ``then`` commands (the report, a streaming
check).  Each recipe synthesizes its embedded corpus when missing.  Trainings share the
machine's cores (``--cores``), one thread each, each logging to <out>/logs/<name>.log;
the terminal shows a live line per running training (epoch, loss, validation WER or
accuracy, time left; :mod:`progress`), or one line per finished epoch when stdout is not
a terminal.

    python recipes/demo/demo.py --out results/demo
    python recipes/demo/demo.py --out results/demo --plan full --dry-run

It runs the recipes of the checkout it sits in; ``--out`` is relative to that checkout.
How long it takes: docs/results/2026-12-03-make-demo-time.md.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # progress.py beside this file (also under PYTHONSAFEPATH / -P)
import progress  # noqa: E402
PLANS = os.path.join(HERE, "plans.yaml")
ROOT = os.path.dirname(os.path.dirname(HERE))  # recipes/demo/ -> the checkout
PY = sys.executable
RECIPES = ("librispeech", "speech_commands")
TRAINING_KEYS = {"name", "recipe", "hparams", "overrides", "fine_tune"}


class PlanError(ValueError):
    """plans.yaml names something that does not exist or is not allowed."""


def read_plans(path: str = PLANS) -> dict:
    with open(path) as fh:
        return yaml.safe_load(fh)


def merged(*override_lists) -> list:
    """Overrides (``--key=value``) of the lists in order, a later list's value of a key
    replacing an earlier one's (a key given twice would be a duplicate YAML key)."""
    out = []
    for overrides in override_lists:
        keys = {arg.split("=", 1)[0] for arg in overrides}
        out = [arg for arg in out if arg.split("=", 1)[0] not in keys] + list(overrides)
    return out


def plan(name: str, out: str, plans: dict | None = None) -> tuple:
    """(trainings, then) of plan ``name`` with outputs under ``out``.  trainings:
    ``(command, the training it needs first or None, threads)`` in start order; then:
    commands run after them all."""
    plans = plans or read_plans()
    if name not in plans["plans"]:
        raise PlanError(f"no plan {name!r}; plans: {', '.join(plans['plans'])}")
    spec = plans["plans"][name]
    parent = plan(spec["extends"], out, plans) if "extends" in spec else ([], [])
    names = {_name(cmd) for cmd, _, _ in parent[0]}
    trainings = list(parent[0])
    for training in spec["trainings"]:
        trainings.append(_training(training, spec.get("base", []), plans["fine_tune"],
                                   out, names))
        names.add(training["name"])
    then = ([[PY, "-m", "denseshift_speech", *(arg.format(out=out) for arg in cmd)]
             for cmd in spec["then"]] if "then" in spec else parent[1])
    return trainings, then


def _training(spec: dict, base: list, fine_tune: dict, out: str, earlier: set) -> tuple:
    unknown = set(spec) - TRAINING_KEYS
    if unknown:
        raise PlanError(f"training {spec.get('name')!r}: unknown keys {sorted(unknown)}; "
                        f"expected {sorted(TRAINING_KEYS)}")
    if spec["recipe"] not in RECIPES:
        raise PlanError(f"training {spec['name']!r}: recipe must be one of {RECIPES}, "
                        f"got {spec['recipe']!r}")
    twin = spec.get("fine_tune")
    tuning = []
    if twin is not None:
        if twin not in earlier:
            raise PlanError(f"training {spec['name']!r} fine-tunes {twin!r}, which is not "
                            f"a training listed before it")
        tuning = fine_tune[spec["recipe"]] + [f"--init_from_fp={out}/{twin}"]
    cmd = [PY, f"recipes/{spec['recipe']}/train.py", f"hparams/{spec['hparams']}",
           f"--output_folder={out}/{spec['name']}",
           *merged(base, tuning, spec.get("overrides", []))]
    return cmd, twin, 1


def with_real_speech(trainings: list, folders: list) -> list:
    """Every training measured on ``folders`` of real recordings after it is trained."""
    if not folders:
        return trainings
    missing = [f for f in folders if not os.path.exists(f)]
    if missing:
        sys.exit(f"demo: --real-speech folder not found: {', '.join(missing)}")
    arg = "--real_speech_folders=[" + ",".join(os.path.abspath(f) for f in folders) + "]"
    return [(cmd + [arg], after, threads) for cmd, after, threads in trainings]
def run_pool(trainings: list, cores: int, log_dir: str, board: progress.Board | None = None) -> None:
    """Run ``trainings`` ((command, prerequisite name or None, threads)) on ``cores``
    threads in all, each logging to <log_dir>/<name>.log.  Ready trainings start in
    order (one that needs more threads than are free holds back those behind it); a
    training is ready once its prerequisite has finished.  The first failure stops the
    rest and shows its log.  ``board`` (default: one on stdout) shows their progress."""
    board = board or progress.Board()
    try:
        _run_pool(trainings, cores, log_dir, board)
    finally:
        board.close()


def _run_pool(trainings, cores, log_dir, board):
    queue, running, done = list(trainings), [], set()
    while queue or running:
        free = cores - sum(job[4] for job in running)
        for job in [j for j in queue if j[1] is None or j[1] in done]:
            cmd, _, threads = job
            threads = min(threads, cores)
            if threads > free:
                break
            queue.remove(job)
            free -= threads
            running.append(_start(cmd, threads, log_dir, board))
        if not running:
            sys.exit(f"demo plan error: {[_name(j[0]) for j in queue]} wait on runs never started")
        time.sleep(0.5)
        board.poll()
        for job in [j for j in running if j[1].poll() is not None]:
            cmd, proc, log, t, _ = job
            running.remove(job)
            log.close()
            board.finish(_name(cmd), ok=proc.returncode == 0)
            if proc.returncode != 0:
                for other in running:
                    other[1].kill()
                board.close()
                sys.exit(f"demo step failed: {' '.join(cmd)}\n{open(log.name).read()[-3000:]}")
            done.add(_name(cmd))
            board.message(f"   done: {_name(cmd)} ({time.time() - t:.0f} s)")


def _start(cmd: list, threads: int, log_dir: str, board: progress.Board) -> tuple:
    board.message(f"$ OMP_NUM_THREADS={threads} " + " ".join(shlex.quote(c) for c in cmd))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    log_path = os.path.join(log_dir, f"{_name(cmd)}.log")
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    folder = _output_folder(cmd)
    board.add(_name(cmd), log_path, cmd, folder and os.path.join(ROOT, folder))
    return cmd, proc, log, time.time(), threads


def run(cmd: list) -> None:
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    # PYTHONSAFEPATH (3.11+): `-m denseshift_speech` runs the installed package even from
    # a checkout of its sources (those have no compiled kernel when installed as a wheel)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONSAFEPATH="1")
    if subprocess.run(cmd, cwd=ROOT, env=env).returncode:
        sys.exit(f"demo step failed: {' '.join(cmd)}")


def _output_folder(cmd: list) -> str | None:
    for arg in cmd:
        if arg.startswith("--output_folder="):
            return arg.split("=", 1)[1]
    return None


def _name(cmd: list) -> str:
    for arg in cmd:
        if arg.startswith("--output_folder="):
            return os.path.basename(arg.split("=", 1)[1])
    return "_".join(os.path.basename(c) for c in cmd[2:4])


def main(argv=None) -> int:
    plans = read_plans()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/demo")
    parser.add_argument("--plan", default="demo", choices=list(plans["plans"]),
                        help="which trainings to run (recipes/demo/plans.yaml; default: demo)")
    parser.add_argument("--cores", type=int, default=2,
                        help="threads for all trainings together (default: this machine's 2)")
    parser.add_argument("--real-speech", action="append", default=[], metavar="DIR",
                        help="a folder of real recordings every trained model is measured on "
                             "(recipe hparam real_speech_folders; repeat for several): "
                             "rows in the report")
    parser.add_argument("--dry-run", action="store_true",
                        help="show the checkout and the commands, run nothing")
    args = parser.parse_args(argv)
    try:
        trainings, then = plan(args.plan, args.out, plans)
    except PlanError as err:
        sys.exit(f"demo: {PLANS}: {err}")
    trainings = with_real_speech(trainings, args.real_speech)
    if args.dry_run:
        import denseshift_speech
        print(f"root: {ROOT}")
        print(f"package: {os.path.dirname(os.path.dirname(denseshift_speech.__file__))}")
        for cmd, after, threads in trainings:
            print(f"$ OMP_NUM_THREADS={threads} " + " ".join(shlex.quote(c) for c in cmd)
                  + (f"   # after {after}" if after else ""))
        for cmd in then:
            print("$ " + " ".join(shlex.quote(c) for c in cmd))
        return 0
    os.makedirs(os.path.join(ROOT, args.out, "logs"), exist_ok=True)
    start = time.time()
    run_pool(trainings, args.cores, os.path.join(ROOT, args.out, "logs"))
    for cmd in then:
        run(cmd)
    print(f"demo finished in {(time.time() - start) / 60:.1f} min; report: {args.out}/report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

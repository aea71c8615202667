"""`make demo` / `make results`: the whole user path, from nothing to a report.

Runs the same commands a user types (each printed before it runs): train the
full-precision conformer and keyword spotter, their 3-bit DenseShift twins (the conformer
fine-tuned from its fp32 twin's weights for an epoch, the keyword spotter for five),
write the report, then stream a few held-out test utterances
through the packed model.  Each recipe synthesizes its embedded corpus when missing.
Trainings share the machine's 2 cores (see :func:`plan`), each logging to
<out>/logs/<name>.log; the terminal shows a live line per running training (epoch, loss,
validation WER or accuracy, time left; see :mod:`.progress`), or one line per finished
epoch when stdout is not a terminal.  `--full` adds CRDNN, the 2- and 4-bit conformers and keyword
spotters, and a 3-bit conformer trained from scratch (the paper's initialization).

    python -m denseshift_speech.integrations.speechbrain.demo --out results/demo
    python -m denseshift_speech.integrations.speechbrain.demo --out results/demo --full    # + CRDNN, 2/3/4-bit sweep
                                                                  # (reuses finished demo runs)

How long it takes: docs/results/2026-12-03-make-demo-time.md.

It runs the recipes of a checkout (``recipes/`` and ``hparams/``; ``--out`` is relative to
it): the current directory when it has them (an installed wheel, run from a checkout),
else the checkout this package was imported from (editable install), else ``--root``.
``--dry-run`` shows the checkout and the commands without running them.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time

from . import progress

# what the demo runs from a checkout
NEEDS = ("recipes/librispeech/train.py", "recipes/speech_commands/train.py", "hparams")
# the checkout this module sits in when installed in editable mode
# (denseshift_speech/integrations/speechbrain/ -> the repository root)
PACKAGE_CHECKOUT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir,
                                                os.pardir))
PY = sys.executable


def is_checkout(path: str) -> bool:
    return all(os.path.exists(os.path.join(path, need)) for need in NEEDS)


def find_root(cwd: str | None = None) -> str | None:
    """The checkout whose recipes/ and hparams/ the demo runs: ``cwd`` (default: the
    current directory) when it has them, else the checkout of an editable install, else
    ``None``."""
    for cand in (os.path.abspath(cwd or os.getcwd()), PACKAGE_CHECKOUT):
        if is_checkout(cand):
            return cand
    return None


# where the trainings run (main() sets it from --root / find_root())
ROOT = find_root() or PACKAGE_CHECKOUT


def asr_run(hparams: str, out: str, name: str, *extra: str) -> list:
    return [PY, "recipes/librispeech/train.py", f"hparams/{hparams}",
            f"--output_folder={out}/{name}", *extra]


def kws_run(hparams: str, out: str, name: str, *extra: str) -> list:
    return [PY, "recipes/speech_commands/train.py", f"hparams/{hparams}",
            f"--output_folder={out}/{name}", *extra]


def fine_tune(fp_run: str, epochs: int | None = None) -> list:
    """Overrides that make a *_ds.yaml run fine-tune the finished fp32 twin's weights
    (from_float init) for a few epochs (default ``FINE_TUNE_EPOCHS``) instead of training
    from the low-variance init: a short warm-up to a third of the recipe's peak rate."""
    return ["--ds_init=from_float", f"--init_from_fp={fp_run}",
            f"--number_of_epochs={epochs or FINE_TUNE_EPOCHS}", f"--lr={FINE_TUNE_LR}",
            f"--warmup_steps={FINE_TUNE_WARMUP}"]


FINE_TUNE_EPOCHS = 1
FINE_TUNE_LR = 0.001
FINE_TUNE_WARMUP = 100
KWS_FINE_TUNE_EPOCHS = 5
KWS_FINE_TUNE_LR = 0.001


def fine_tune_kws(fp_run: str) -> list:
    """The same for a keyword spotter: ``KWS_FINE_TUNE_EPOCHS`` epochs of its per-epoch
    linear decay, from a quarter of its rate down to its lr_final (against training from
    scratch: docs/results/2026-12-03-keyword-spotter-augmentation-and-fine-tuning.md)."""
    return ["--ds_init=from_float", f"--init_from_fp={fp_run}",
            f"--number_of_epochs={KWS_FINE_TUNE_EPOCHS}", f"--lr={KWS_FINE_TUNE_LR}"]


def plan(out: str, full: bool) -> tuple:
    """(trainings, then).  trainings: (command, the training it needs first or None,
    threads), in start order; the report and the streaming check run after them all.

    The fp32 conformer, the longest run, starts first on one core while the keyword
    spotters take turns on the other; then its 3-bit fine-tuning.  Every run gets one
    thread: a second one barely speeds a demo-sized conformer up, and beside any other
    job OpenMP threads wait on each other (docs/results/2026-11-26-one-thread-per-run.md).
    """
    # Each recipe synthesizes its corpus when missing (the first of two runs to get
    # there writes it, the other waits on its lock).
    conformer_fp, crdnn_fp, kws_fp = (f"{out}/{name}" for name in
                                      ("conformer_fp", "crdnn_fp", "kws_fp"))
    trainings = [(asr_run("conformer_fp.yaml", out, "conformer_fp"), None, 1),
                 (kws_run("kws_fp.yaml", out, "kws_fp"), None, 1),
                 (kws_run("kws_ds.yaml", out, "kws_ds3", *fine_tune_kws(kws_fp)), "kws_fp", 1),
                 (asr_run("conformer_ds.yaml", out, "conformer_ds3", *fine_tune(conformer_fp),
                          "--eval_packed_paths=[int8,exact]"),
                  "conformer_fp", 1)]
    if full:
        trainings += [(asr_run("crdnn_fp.yaml", out, "crdnn_fp"), None, 1),
                      (asr_run("conformer_ds.yaml", out, "conformer_ds3_scratch"), None, 1),
                      (asr_run("crdnn_ds.yaml", out, "crdnn_ds3", *fine_tune(crdnn_fp)),
                       "crdnn_fp", 1)]
        trainings += [(asr_run("conformer_ds.yaml", out, f"conformer_ds{b}", f"--ds_bits={b}",
                               *fine_tune(conformer_fp)), "conformer_fp", 1) for b in (2, 4)]
        trainings += [(kws_run("kws_ds.yaml", out, f"kws_ds{b}", f"--ds_bits={b}",
                               *fine_tune_kws(kws_fp)), "kws_fp", 1) for b in (2, 4)]
    then = [[PY, "-m", "denseshift_speech", "report", out, "--out", out],
            [PY, "-m", "denseshift_speech", "stream", f"{out}/conformer_ds3/model.dsp",
             "--manifest", f"{out}/conformer_ds3/test-clean.csv", "--limit", "4"]]
    return trainings, then


def plan_ablation(out: str) -> tuple:
    """(trainings, then) of `--ablation`: the demo's fp32 conformer retrained with one
    ingredient of the embedded corpus taken away at a time -- mbrola, pico and RHVoice
    (espeak-ng and flite left), then flite too (espeak-ng alone), the on-the-fly
    augmentation, the grammar's 1,325-word vocabulary (down to its 288 commonest words) --
    each on its own corpus folder; the report compares them with the finished
    demo run on the same held-out engine (test-other)."""
    data = "data/ablation"
    trainings = [
        (asr_run("conformer_fp.yaml", out, "espeak_flite",
                 "--synth_train_engines=[espeak-ng,flite]",
                 f"--data_folder={data}/espeak_flite"), None, 1),
        (asr_run("conformer_fp.yaml", out, "espeak_only", "--synth_train_engines=[espeak-ng]",
                 f"--data_folder={data}/espeak_only"), None, 1),
        (asr_run("conformer_fp.yaml", out, "vocabulary_288", "--synth_vocabulary_size=288",
                 f"--data_folder={data}/vocabulary_288"), None, 1),
        (asr_run("conformer_fp.yaml", out, "no_augmentation",
                 "--apply_data_augmentation=False"), None, 1)]
    then = [[PY, "-m", "denseshift_speech", "report", out, "results/demo/conformer_fp",
             "--out", out]]
    return trainings, then


# `--scratch-study`: the 3-bit conformer trained from scratch (the paper's low-variance
# init) with the demo's 12-epoch budget, one setting changed per run, beside its fp32 twin
# (docs/results/2026-12-02-training-from-scratch.md).  SCRATCH_BASE pins the recipe the
# study's rows ran on (Noam with a 100-step warm-up, dropout 0.1): every run starts from
# it, and a row's own value of a key replaces it.
SCRATCH_BASE = ["--warmup_steps=100", "--lr_schedule=noam", "--dropout=0.1",
                "--number_of_epochs=12"]
SCRATCH_FP32 = "fp32_warmup_100"
SCRATCH_STUDY = {
    "warmup_100": [],
    "sgd_paper": ["--ds_optimizer=sgd", "--lr=0.1", "--weight_decay=0.0001",
                  "--ds_latent_lr_scale=1"],
    "latent_lr_0.02": ["--ds_latent_lr_scale=0.02"],
    "latent_lr_0.05": ["--ds_latent_lr_scale=0.05"],
    "latent_lr_0.001": ["--ds_latent_lr_scale=0.001"],
    # AdamW's decoupled decay shrinks a latent by lr x wd a step: with the latents' lr
    # (0.005 x 0.003) a wd of 1 shrinks them at the paper's rate (SGD lr 0.1 x wd 1e-4)
    "latent_wd_1": ["--ds_latent_weight_decay=1.0"],
    "scale_gain_0.5": ["--ds_init_scale_gain=0.5"],
    "epochs_24": ["--number_of_epochs=24"],
    "warmup_1000": ["--warmup_steps=1000"],
    "warmup_1000_latent_lr_0.02": ["--warmup_steps=1000", "--ds_latent_lr_scale=0.02"],
}


def with_base(base: list, extra: list) -> list:
    """``base`` overrides, each replaced by ``extra``'s value of the same key, then the rest
    of ``extra`` (a key given twice would be a duplicate YAML key)."""
    keys = {arg.split("=", 1)[0] for arg in extra}
    return [arg for arg in base if arg.split("=", 1)[0] not in keys] + list(extra)


def plan_scratch_study(out: str) -> tuple:
    """(trainings, then) of `--scratch-study`: the fp32 twin and the rows of
    ``SCRATCH_STUDY`` (longest first), then the 2-bit conformer fine-tuned from that fp32
    run; the report compares every row with the fp32 run in the same folder."""
    fp_run = f"{out}/{SCRATCH_FP32}"
    rows = sorted(SCRATCH_STUDY.items(), key=lambda kv: kv[0] != "epochs_24")
    trainings = [(asr_run("conformer_fp.yaml", out, SCRATCH_FP32, *SCRATCH_BASE), None, 1),
                 # the twin of the warmup_1000 rows (today's recipe default)
                 (asr_run("conformer_fp.yaml", out, "fp32_warmup_1000",
                          *with_base(SCRATCH_BASE, ["--warmup_steps=1000"])), None, 1)]
    trainings += [(asr_run("conformer_ds.yaml", out, name, *with_base(SCRATCH_BASE, extra)),
                   None, 1) for name, extra in rows]
    trainings.append((asr_run("conformer_ds.yaml", out, "finetuned_2bit", "--ds_bits=2",
                              *with_base(SCRATCH_BASE, fine_tune(fp_run, epochs=3))),
                      SCRATCH_FP32, 1))
    then = [[PY, "-m", "denseshift_speech", "report", out, "--out", out]]
    return trainings, then


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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/demo")
    parser.add_argument("--full", action="store_true", help="also CRDNN and the 2/3/4-bit sweep")
    parser.add_argument("--ablation", action="store_true",
                        help="retrain the fp32 conformer without each corpus ingredient "
                             "(flite, augmentation, vocabulary) after `make demo`; "
                             "use with --out results/ablation")
    parser.add_argument("--scratch-study", action="store_true",
                        help="train the 3-bit conformer from scratch with one setting changed "
                             "per run beside its fp32 twin, and fine-tune a 2-bit one; "
                             "use with --out results/scratch")
    parser.add_argument("--cores", type=int, default=2,
                        help="threads for all trainings together (default: this machine's 2)")
    parser.add_argument("--root", help="the checkout with recipes/ and hparams/ (default: the "
                        "current directory if it has them, else this package's checkout)")
    parser.add_argument("--real-speech", action="append", default=[], metavar="DIR",
                        help="a folder of real recordings every trained model is measured on "
                             "(recipe hparam real_speech_folders; repeat for several): "
                             "rows in the report")
    parser.add_argument("--dry-run", action="store_true",
                        help="show the checkout and the commands, run nothing")
    args = parser.parse_args(argv)
    global ROOT
    root = os.path.abspath(args.root) if args.root else find_root()
    if root is None or not is_checkout(root):
        sys.exit("demo: needs a checkout of denseshift-speech, the directory with "
                 f"{', '.join(NEEDS)} (not installed with the package): run it from there, "
                 f"or pass --root PATH ({'looked in ' + root if root else 'not in the current directory'}"
                 f"{'' if root else ' nor in ' + PACKAGE_CHECKOUT})")
    ROOT = root
    if args.ablation and args.scratch_study:
        sys.exit("demo: --ablation and --scratch-study are separate studies: give one")
    trainings, then = (plan_ablation(args.out) if args.ablation else
                       plan_scratch_study(args.out) if args.scratch_study else
                       plan(args.out, args.full))
    trainings = with_real_speech(trainings, args.real_speech)
    if args.dry_run:
        print(f"root: {ROOT}")
        print(f"package: {os.path.dirname(os.path.dirname(os.path.dirname(__file__)))}")
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

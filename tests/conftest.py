"""Shared fixtures: a tiny synthetic LibriSpeech-layout corpus made once per session."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def tiny_librispeech(tmp_path_factory):
    """24 training utterances and 6 per evaluation split, 4 held-out speakers each."""
    from denseshift_speech.data import synthesize_librispeech
    out = tmp_path_factory.mktemp("tiny_librispeech") / "LibriSpeech"
    synthesize_librispeech(out, seed=3, train_utts=24, dev_utts=6, test_utts=6,
                           test_other_utts=6, train_speakers=4, dev_speakers=2,
                           test_speakers=2, test_other_speakers=2, lm_sentences=200)
    return str(out)


# Runs a recipe with a callback installed from outside: after KILL_AFTER_STEPS optimizer
# steps of this process it dies like a preempted job (SIGKILL, no clean-up).
KILL_LAUNCHER = """
import logging, os, runpy, signal, sys
import speechbrain as sb
kill_at, steps = int(os.environ["KILL_AFTER_STEPS"]), [0]
original = sb.Brain.on_fit_batch_end
def on_fit_batch_end(self, *args, **kwargs):
    original(self, *args, **kwargs)
    steps[0] += 1
    if steps[0] >= kill_at:
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)
sb.Brain.on_fit_batch_end = on_fit_batch_end
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def recipe_command(script, hparams, *overrides, launcher=None) -> list:
    """The command line a user types: ``python recipes/<x>/train.py hparams/<y> --k=v``."""
    return (launcher or [sys.executable]) + [os.path.join(ROOT, script),
                                             os.path.join(ROOT, "hparams", hparams), *overrides]


def recipe_env(**extra) -> dict:
    return dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
                OMP_NUM_THREADS="1", **extra)


def run_recipe(script, hparams, *overrides, timeout=600, check=True, launcher=None,
               kill_after_steps=None):
    """Run a recipe's train.py as a user would; return the CompletedProcess.  ``check``:
    a failure is an AssertionError with the run's output; ``kill_after_steps``: the run
    kills itself (SIGKILL) after that many optimizer steps."""
    env = recipe_env()
    if kill_after_steps is not None:
        env["KILL_AFTER_STEPS"] = str(kill_after_steps)
        launcher = [sys.executable, "-c", KILL_LAUNCHER]
    cmd = recipe_command(script, hparams, *overrides, launcher=launcher)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tests (as the CLI verbs default to), restored after."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

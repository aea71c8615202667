"""Live progress of the demo's trainings on the terminal, read from their log files.

Each training of ``make demo`` / ``make results`` runs as a subprocess whose stdout and
stderr go to ``<out>/logs/<name>.log``.  SpeechBrain writes three things there that are
enough to follow it:

* ``speechbrain.utils.epoch_loop - Going into epoch 3``: an epoch starts;
* tqdm bars, ``\\r``-separated: `` 41%|... | 77/188 [00:09<00:12,  9.0it/s, train_loss=2.1]``
  (training: with ``train_loss``; validation and test: without);
* the train logger's line (also in the run's ``train_log.txt``):
  ``epoch: 3, lr: 1e-03 - train loss: 2.74 - valid loss: 1.95, valid WER: 90.50, ...``
  (keyword spotting: ``valid ErrorRate: 2.87e-01``, shown as accuracy), and after
  training ``Epoch loaded: 19 - test loss: ..., test ErrorRate: ...``.

:class:`RunProgress` turns that text, fed incrementally, into a state;
:func:`format_line` makes a one-line summary of it (run, epoch x/N, loss, WER or
accuracy, elapsed, time left); :class:`Board` follows several log files and shows one
live line per running training on a terminal, or, when stdout is not a TTY (CI,
``| tee``), prints one plain line each time a run finishes an epoch.
"""
from __future__ import annotations

import codecs
import os
import re
import shutil
import sys
import time

EPOCH_START = re.compile(r"Going into epoch (\d+)")
BAR = re.compile(r"(\d+)/(\d+) \[[^\]]*?\]")
BAR_LOSS = re.compile(r"train_loss=([-+0-9.eE]+|nan|inf)")
TEST_LOADED = re.compile(r"Epoch loaded: (\d+)")
NUMBER_OF_EPOCHS = re.compile(r"^number_of_epochs:\s*(\d+)\s*(?:#.*)?$", re.M)


def parse_stats(line: str) -> dict:
    """The train logger's ``key: value`` pairs: ``{"epoch": "3", "train loss": "2.74",
    "valid WER": "90.50", ...}`` (sections split on `` - ``, pairs on ``, ``)."""
    out = {}
    for section in line.split(" - "):
        for pair in section.split(", "):
            key, sep, value = pair.partition(": ")
            if sep:
                out[key.strip()] = value.strip()
    return out


def _float(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def metric(stats: dict, stage: str = "valid"):
    """(label, value) of the headline metric in a stats dict: WER in %, or accuracy in %
    from a classification ``ErrorRate`` (a fraction); ``None`` if there is none."""
    wer = _float(stats.get(f"{stage} WER"))
    if wer is not None:
        return "WER", wer
    err = _float(stats.get(f"{stage} ErrorRate"))
    if err is not None:
        return "acc", 100.0 * (1.0 - err)
    cer = _float(stats.get(f"{stage} CER"))
    if cer is not None:
        return "CER", cer
    return None


class RunProgress:
    """The state of one training, from its log text fed in pieces (:meth:`feed`).

    Times are the ``now`` passed to :meth:`feed` (seconds, any clock), so the state is
    a function of the text and when it arrived: tests feed synthetic text with made-up
    times.
    """

    def __init__(self, name: str, total_epochs: int | None = None, started: float | None = None):
        self.name = name
        self.total = total_epochs
        self.started = started
        self.epoch = 0             # the epoch running (or last run)
        self.epochs_done = 0       # the last epoch the train logger reported
        self.batch = self.batches = 0
        self.phase = "starting"    # starting | train | valid | test | finished | failed
        self.live_loss = None      # train_loss of the running epoch's bar
        self.epoch_loss = None     # train loss the logger reported for epochs_done
        self.metric = None         # (label, value) of epochs_done
        self.test_metric = None    # (label, value) after training
        self.first_epoch = None    # (epoch number, time) of the first epoch start seen
        self.changed = False       # an epoch finished since the last :meth:`take_change`
        self._pending = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    # -- parsing -------------------------------------------------------------------
    def feed(self, data, now: float | None = None) -> None:
        """Take more log text (str or bytes).  Complete segments (ended by ``\\r`` or
        ``\\n``) change the state; the unfinished tail only shows the running bar."""
        now = time.time() if now is None else now
        if self.started is None:
            self.started = now
        if isinstance(data, bytes):
            data = self._decoder.decode(data)
        text = self._pending + data
        parts = re.split(r"[\r\n]", text)
        self._pending = parts.pop()
        for seg in parts:
            self._segment(seg, now)
        if self._pending:
            self._bar(self._pending)

    def _segment(self, seg: str, now: float) -> None:
        m = EPOCH_START.search(seg)
        if m:
            self.epoch = int(m.group(1))
            self.phase = "train"
            self.batch = self.batches = 0
            self.live_loss = None
            if self.first_epoch is None:
                self.first_epoch = (self.epoch, now)
            return
        if "epoch: " in seg and " - " in seg and "train loss" in seg:
            stats = parse_stats(seg[seg.index("epoch: "):])
            done = stats.get("epoch", "")
            if done.isdigit():
                self.epochs_done = int(done)
                self.epoch = max(self.epoch, self.epochs_done)
                self.epoch_loss = _float(stats.get("train loss"))
                self.metric = metric(stats, "valid") or self.metric
                self.phase = "train"  # between epochs: checkpointing, then the next
                self.batch = self.batches = 0
                self.live_loss = None
                self.changed = True
            return
        m = TEST_LOADED.search(seg)
        if m:
            self.test_metric = metric(parse_stats(seg[m.start():]), "test")
            self.phase = "test"
            return
        self._bar(seg)

    def _bar(self, seg: str) -> None:
        found = BAR.findall(seg)
        if not found:
            return
        self.batch, self.batches = (int(v) for v in found[-1])
        loss = BAR_LOSS.findall(seg)
        if loss:  # a training bar
            self.live_loss = _float(loss[-1])
            if self.epoch > self.epochs_done:
                self.phase = "train"
        elif self.total and self.epochs_done >= self.total:
            self.phase = "test"  # a bar without train_loss after the last epoch
        elif self.phase == "train" and self.epoch > self.epochs_done:
            self.phase = "valid"  # ... or while an epoch runs: its validation

    def take_change(self) -> bool:
        """True once after each finished epoch (for the plain, one-line-per-epoch mode)."""
        changed, self.changed = self.changed, False
        return changed

    # -- derived -------------------------------------------------------------------
    def loss(self):
        """The last train loss: the running bar's, else the last finished epoch's."""
        if self.phase == "train" and self.live_loss is not None:
            return self.live_loss
        return self.epoch_loss if self.epoch_loss is not None else self.live_loss

    def fraction(self) -> float | None:
        """How much of the training is done (0..1), counting the running epoch's batches;
        ``None`` without the number of epochs."""
        if not self.total:
            return None
        if self.phase in ("test", "finished"):
            return 1.0
        done = self.epochs_done
        if self.epoch > self.epochs_done:  # an epoch runs (those before it are done)
            within = 0.0
            if self.phase == "valid":
                within = 1.0  # its training is done; validation is not counted
            elif self.batches:
                within = min(1.0, self.batch / self.batches)
            done = self.epoch - 1 + within
        done = min(done, self.total)
        return done / self.total

    def seconds_left(self, now: float) -> float | None:
        """Estimated training time left: the time since the first epoch started, scaled
        by the share of the epochs (from there on) still to go.  ``None`` until some of
        an epoch is done or without the number of epochs."""
        frac = self.fraction()
        if frac is None or self.first_epoch is None:
            return None
        if frac >= 1.0:
            return 0.0
        first, t0 = self.first_epoch
        base = (first - 1) / self.total  # a resumed run starts part-way
        span = frac - base
        if span <= 1e-3 or now <= t0:
            return None
        return (now - t0) * (1.0 - frac) / span


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(max(0.0, seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{s:02d}s"
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m"


def _value(label: str, value: float) -> str:
    return f"{label} {value:.1f}%" if label == "acc" else f"{label} {value:.2f}"


def format_line(run: RunProgress, now: float, plain: bool = False) -> str:
    """``conformer_fp  epoch 3/28 [77/188]  loss 2.1  valid WER 90.50  4m12s elapsed  ~38m00s left``;
    ``plain`` (one line per finished epoch) leaves out the batch counter."""
    total = str(run.total) if run.total else "?"
    parts = [run.name]
    if run.phase == "starting":
        parts.append("starting")
    elif run.phase in ("test", "finished", "failed"):
        parts.append(f"epoch {run.epochs_done}/{total}, {run.phase if run.phase != 'test' else 'testing'}")
    else:
        where = f"epoch {run.epoch}/{total}"
        if not plain and run.phase == "train" and run.batches:
            where += f" [{run.batch}/{run.batches}]"
        elif not plain and run.phase == "valid":
            where += " [valid]"
        parts.append(where)
    loss = run.loss()
    if loss is not None:
        parts.append(f"loss {loss:.3g}")
    shown = run.test_metric if run.phase in ("test", "finished") and run.test_metric else run.metric
    if shown:
        parts.append(("test " if shown is run.test_metric else "valid ") + _value(*shown))
    if run.started is not None:
        parts.append(f"{format_duration(now - run.started)} elapsed")
    if run.phase not in ("test", "finished", "failed", "starting"):
        left = run.seconds_left(now)
        if left is not None:
            parts.append(f"~{format_duration(left)} left")
    return "   " + ", ".join(parts) if plain else "  ".join(parts)


def total_epochs(cmd: list, output_folder: str | None) -> int | None:
    """The number of epochs of a training: a ``--number_of_epochs=`` override on its
    command line, else its resolved hparams (``<output_folder>/hyperparams_resolved.yaml``,
    written when the recipe starts); ``None`` until known."""
    for arg in cmd:
        if arg.startswith("--number_of_epochs="):
            value = arg.split("=", 1)[1]
            if value.isdigit():
                return int(value)
    if output_folder:
        try:
            with open(os.path.join(output_folder, "hyperparams_resolved.yaml")) as fh:
                m = NUMBER_OF_EPOCHS.search(fh.read())
        except OSError:
            return None
        if m:
            return int(m.group(1))
    return None


class Board:
    """Follows the log files of the running trainings and shows their progress.

    On a terminal: a block of live lines (one per running training) at the bottom,
    redrawn at most every ``interval`` seconds; :meth:`message` prints a permanent line
    above it.  Otherwise (``tty=False``): one plain line each time a run finishes an
    epoch, and messages as they come.
    """

    def __init__(self, stream=None, tty: bool | None = None, interval: float = 1.0):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = interval
        self.runs = {}     # name -> [RunProgress, log path, offset, cmd, output folder]
        self._drawn = 0    # live lines on screen
        self._last = 0.0

    def add(self, name: str, log_path: str, cmd: list | None = None,
            output_folder: str | None = None, now: float | None = None) -> RunProgress:
        now = time.time() if now is None else now
        run = RunProgress(name, total_epochs(cmd or [], None), started=now)
        self.runs[name] = [run, log_path, 0, list(cmd or []), output_folder]
        return run

    def finish(self, name: str, ok: bool = True) -> None:
        """Stop following ``name`` (its line leaves the live block)."""
        entry = self.runs.pop(name, None)
        if entry is not None:
            now = time.time()
            self._read(entry, now)
            if not self.tty and entry[0].take_change():  # its last epoch, read just now
                self._write(format_line(entry[0], now, plain=True) + "\n")
            entry[0].phase = "finished" if ok else "failed"
        self.refresh(force=True)

    def _read(self, entry, now: float) -> None:
        run, path, offset, cmd, folder = entry
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except OSError:
            return
        entry[2] = offset + len(data)
        if data:
            run.feed(data, now)
        if run.total is None:
            run.total = total_epochs(cmd, folder)

    def poll(self, now: float | None = None) -> None:
        """Read what the logs gained and show it."""
        now = time.time() if now is None else now
        for entry in self.runs.values():
            self._read(entry, now)
        if self.tty:
            self.refresh(now=now)
        else:
            for entry in self.runs.values():
                if entry[0].take_change():
                    self._write(format_line(entry[0], now, plain=True) + "\n")

    def lines(self, now: float) -> list:
        width = max(20, shutil.get_terminal_size((100, 20)).columns - 1)
        return [format_line(entry[0], now)[:width] for entry in self.runs.values()]

    def refresh(self, now: float | None = None, force: bool = False) -> None:
        if not self.tty:
            return
        now = time.time() if now is None else now
        if not force and now - self._last < self.interval:
            return
        self._last = now
        self._clear()
        lines = self.lines(now)
        if lines:
            self._write("".join(f"\x1b[2K{line}\n" for line in lines))
        self._drawn = len(lines)

    def _clear(self) -> None:
        if self._drawn:  # to the start of the block, then erase to the end of the screen
            self._write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def message(self, text: str) -> None:
        """A permanent line (a command, a finished run) above the live block."""
        if self.tty:
            self._clear()
            self._write(text + "\n")
            self.refresh(force=True)
        else:
            self._write(text + "\n")

    def close(self) -> None:
        """Remove the live block (before the demo's next, ordinary output)."""
        if self.tty:
            self._clear()

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

"""What every benchmark of the project shares: timing, thread counts, machine facts,
fixed-width tables and the JSON record of a run."""
from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import sys
import time

from ..errors import UserError

#: thread counts timed by default (torch, onnxruntime and DenseShift on each)
DEFAULT_THREADS = (1, 2)


#: timed groups per callable; its reported time is the best group's
GROUPS = 5


def _calibrate(fn, budget: float) -> int:
    """Calls of ``fn`` per timed group (a fifth of 80 % of ``budget``), after two warm-ups."""
    fn()
    fn()
    n, t0 = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < budget * 0.2:
        fn()
        n += 1
    per = (time.perf_counter() - t0) / n
    return max(1, int(budget * 0.8 / GROUPS / max(per, 1e-9)))


def _group(fn, reps: int) -> float:
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def time_us(fn, budget: float, stats: dict | None = None) -> float:
    """Microseconds per call of ``fn``: the best of :data:`GROUPS` timed groups after
    calibration.

    The best group is reported because the 2-core machines this runs on are shared:
    other processes steal whole scheduler slices, which inflates medians at random.
    The median of the groups goes to ``stats["median"]`` when ``stats`` is given.
    """
    reps = _calibrate(fn, budget)
    samples = [_group(fn, reps) for _ in range(GROUPS)]
    if stats is not None:
        stats["median"] = statistics.median(samples) * 1e6
    return min(samples) * 1e6


def time_all(fns: dict, budget: float, setup: dict | None = None) -> tuple:
    """``{name: fn}`` -> ``({name: best us}, {name: median us})``, the groups taken in
    turns: group 1 of every callable, then group 2 of every callable, ...  A slow spell of
    the machine (this VM's speed moves by tens of percent within a minute, and its second
    core's most of all) then falls on every callable compared instead of on whichever ran
    during it.  ``setup[name]()``, when given, runs before each of the name's groups,
    untimed, followed by one untimed call (thread counts, kernel paths).
    """
    setup = setup or {}
    reps, samples = {}, {}
    for name, fn in fns.items():
        if name in setup:
            setup[name]()
        reps[name] = _calibrate(fn, budget)
    for _ in range(GROUPS):
        for name, fn in fns.items():
            if name in setup:
                setup[name]()
                fn()
            samples.setdefault(name, []).append(_group(fn, reps[name]))
    best = {k: min(v) * 1e6 for k, v in samples.items()}
    median = {k: statistics.median(v) * 1e6 for k, v in samples.items()}
    return best, median


def rel_err(y, ref) -> float:
    import numpy as np

    y = np.asarray(y.detach() if hasattr(y, "detach") else y, dtype=np.float64)
    ref = np.asarray(ref.detach() if hasattr(ref, "detach") else ref, dtype=np.float64)
    return float(np.linalg.norm(y - ref) / max(np.linalg.norm(ref), 1e-30))


def table(title: str, keys: list, rows: list, cols: list, fmt: str, width: int = 10) -> list:
    """Lines of a fixed-width table: ``keys`` (label, width) then numeric ``cols``."""
    head = "  ".join(f"{k:<{w}}" for k, w in keys) + "".join(f"{c:>{width + 1}}" for c in cols)
    lines = [title, head]
    for label, values in rows:
        line = "  ".join(f"{str(v):<{w}}" for v, (_, w) in zip(label, keys))
        for c in cols:
            v = values.get(c)
            line += f"{'-' if v is None else format(v, fmt):>{width + 1}}"
        lines.append(line)
    return lines


def ratio_cols(rows: list, preferred: list) -> list:
    present = set().union(*(r["ratios"] for r in rows)) if rows else set()
    return [c for c in preferred if c in present]


def parse_threads(text, default=DEFAULT_THREADS) -> list:
    """``"1,2"`` -> ``[1, 2]`` (``None``: ``default``); counts >= 1, each once, in order."""
    if text is None:
        return list(default)
    if isinstance(text, int):
        text = str(text)
    out = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            n = int(part)
        except ValueError:
            n = 0
        if n < 1:
            raise UserError(f"--threads: expected thread counts >= 1 separated by commas "
                            f"(e.g. 1,2), got {text!r}")
        if n not in out:
            out.append(n)
    return out


def set_threads(n: int):
    import torch
    torch.set_num_threads(n)


def scaling(rows: list, key) -> None:
    """``row["scaling"][name]``: the name's time on 1 thread over its time on the row's
    count (rows matched by ``key(row)``; only where 1 thread was measured)."""
    one = {key(r): r for r in rows if r["threads"] == 1}
    for r in rows:
        base = one.get(key(r))
        if base is None:
            continue
        r["scaling"] = {k: base["us"][k] / v for k, v in r["us"].items()
                        if k in base["us"] and v > 0}


def scaling_table(title: str, keys: list, rows: list, label, names: list) -> list:
    """Speed-up over one thread of every timed name, for the rows on more threads."""
    multi = [r for r in rows if r["threads"] > 1 and r.get("scaling")]
    if not multi:
        return []
    cols = [n for n in names if any(n in r["scaling"] for r in multi)]
    return [""] + table(title, keys, [(label(r), r["scaling"]) for r in multi], cols, ".2f")


def machine_info():
    import torch

    from .. import kernels

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "loadavg": load,
            "native_kernel": kernels.native_available(), "isas": kernels.supported_isas(),
            "quantized_engine": torch.backends.quantized.engine}


def write_json(path: str, out: dict, elapsed: float):
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(out, f, indent=1)
        print(f"# wrote {path} ({elapsed:.0f} s)")


def command_line() -> str:
    argv = list(sys.argv)
    if argv and os.path.basename(argv[0]) in ("__main__.py", "denseshift-speech"):
        argv[0] = "denseshift-speech"  # (python -m denseshift_speech, or the entry point)
    return " ".join(shlex.quote(a) for a in argv)

"""How much N cores add on this machine: the ceiling of an N-thread speed-up.

The same compute-bound loop (the packed 3-bit tiled int8 linear, 1024 -> 4096, 64 rows:
weights in L2, no memory-bound phase) runs for a fixed time in one process on one thread,
then in N processes at once, one thread each.  N independent processes share nothing but
the machine, so their summed calls per second over one process's is the most that N
threads of one process can gain here: a VM whose vCPUs are SMT siblings, or whose host
is busy, shows well under N.  ``bench`` prints it beside its scaling tables.
"""
from __future__ import annotations

import multiprocessing as mp
import time

SHAPE = (1024, 4096, 64)  # in_features, out_features, rows
BITS = 3


def _loop(seconds: float, queue) -> None:
    import torch

    from .. import kernels
    from ..core import quant
    from ..kernels import layout

    torch.set_num_threads(1)
    k, n, m = SHAPE
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(n, k, generator=gen) / k ** 0.5
    alpha = quant.low_variance_alpha(w, BITS)
    packed, alpha = layout.pack_weight(quant.nearest_codes(w, alpha[:, None], BITS), alpha, BITS)
    tiles, sums = kernels.repack(packed, bits=BITS, in_features=k)
    x = torch.randn(m, k, generator=gen)

    def call():
        kernels.linear_tiled(x, tiles, sums, alpha, None, bits=BITS, in_features=k)

    for _ in range(10):
        call()
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        call()
        calls += 1
    queue.put(calls / (time.perf_counter() - t0))


def _rates(processes: int, seconds: float) -> list:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_loop, args=(seconds, queue)) for _ in range(processes)]
    for p in procs:
        p.start()
    rates = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return rates


def core_capacity(counts, seconds: float = 3.0) -> dict:
    """``{N: summed calls/s of N one-thread processes / calls/s of one}`` for each N > 1
    of ``counts`` (and the one-process rate under key ``"one_process_calls_per_s"``)."""
    one = _rates(1, seconds)[0]
    out = {"one_process_calls_per_s": round(one, 2)}
    for n in sorted(set(counts)):
        if n > 1:
            out[n] = round(sum(_rates(n, seconds)) / one, 3)
    return out

"""The deploy-speed targets as data, checked against a bench run's rows.

Every target is a speed (or size) ratio ``numerator / denominator`` that must reach a
threshold on a set of cases, all of them: ``>1`` means the packed DenseShift model (or
kernel) is the faster one. Names of the timed alternatives are the bench's:
``torch-fp32``, ``torch-int8``, ``ort-fp32``, ``ort-int8`` (the baselines of
:mod:`.baselines`) and ``ds-int8``, ``ds-exact``, ``ds-shift`` (the packed kernel paths).
Every case is at one thread count (``threads`` in ``where``; a row without one counts as
1 thread): the alternative runs on as many threads as DenseShift. Two kinds compare
DenseShift with itself: ``scaling`` (its time on 1 thread over its time on N, the row's
``scaling``) and ``streams`` (several streams one call after another over the same
streams in one call, the bench's several-streams rows).

:func:`evaluate` takes the bench's ``encoder`` and ``layers`` rows, its ``sizes`` and its
several-streams rows and returns one record per target: the ratio of every case, the
smallest, how many pass, and ``status`` ``PASS`` (every case reaches the threshold),
``MISS`` (one does not) or ``n/a`` (no case measured, e.g. in ``--quick`` or with
``--no-onnx``).
"""
from __future__ import annotations

from typing import NamedTuple

#: conformer-small layer shapes (in_features, out_features): attention in-projection, output
#: projection, FFN up, FFN down, pointwise conv before GLU.
SMALL_SHAPES = ((144, 432), (144, 144), (144, 1024), (1024, 144), (144, 288))
#: the two larger single-row shapes of the targets, 2048x512 and 4096x1024 (out x in).
BIG_SHAPES = ((512, 2048), (1024, 4096))


class Target(NamedTuple):
    name: str           # short id (JSON key)
    text: str           # what it says, for the summary
    kind: str           # "encoder", "layer", "size", "scaling" (encoder rows) or "streams"
    num: str            # numerator: the alternative's time (or the fp32 size)
    den: str            # denominator: the DenseShift time (or the packed file size)
    threshold: float
    where: dict         # case filter: row key -> allowed values


ONE, TWO = {"threads": (1,)}, {"threads": (2,)}
SMALL = {"geometry": ("conformer-small",)}

TARGETS = (
    Target("encoder-T16-vs-ort-int8", "conformer-small encoder T=16: ort-int8 / ds-int8",
           "encoder", "ort-int8", "ds-int8", 1.2, {**SMALL, "frames": (16,), **ONE}),
    Target("encoder-T100-vs-ort-int8", "conformer-small encoder T=100: ort-int8 / ds-int8",
           "encoder", "ort-int8", "ds-int8", 1.0, {**SMALL, "frames": (100,), **ONE}),
    Target("encoder-vs-torch-fp32", "conformer-small encoder T=16,100: torch-fp32 / ds-int8",
           "encoder", "torch-fp32", "ds-int8", 2.5, {**SMALL, "frames": (16, 100), **ONE}),
    Target("layers-int8-vs-torch-int8", "layers M=16,100 (5 shapes): torch-int8 / ds-int8",
           "layer", "torch-int8", "ds-int8", 1.5, {"shape": SMALL_SHAPES, "M": (16, 100), **ONE}),
    Target("layers-int8-vs-torch-fp32", "layers M=16,100 (5 shapes): torch-fp32 / ds-int8",
           "layer", "torch-fp32", "ds-int8", 3.0, {"shape": SMALL_SHAPES, "M": (16, 100), **ONE}),
    Target("layers-exact-vs-torch-fp32", "layers M=16,100 (5 shapes): torch-fp32 / ds-exact",
           "layer", "torch-fp32", "ds-exact", 1.2, {"shape": SMALL_SHAPES, "M": (16, 100), **ONE}),
    Target("m1-int8-vs-torch-int8", "M=1 512->2048, 1024->4096: torch-int8 / ds-int8",
           "layer", "torch-int8", "ds-int8", 1.5, {"shape": BIG_SHAPES, "M": (1,), **ONE}),
    Target("m1-exact-vs-torch-fp32", "M=1 512->2048, 1024->4096: torch-fp32 / ds-exact",
           "layer", "torch-fp32", "ds-exact", 3.0, {"shape": BIG_SHAPES, "M": (1,), **ONE}),
    Target("m1-exact-vs-torch-int8", "M=1 512->2048, 1024->4096: torch-int8 / ds-exact",
           "layer", "torch-int8", "ds-exact", 1.0, {"shape": BIG_SHAPES, "M": (1,), **ONE}),
    Target("size-conformer-small", "conformer-small packed file: fp32 weights / file",
           "size", "fp32_param_bytes", "packed_file_bytes", 9.0,
           {"geometry": ("conformer-small",)}),
    # on two threads (onnxruntime on two threads too), the runtimes' default on devices
    Target("encoder-2thr-T16-vs-ort-int8", "2 threads, conformer-small T=16: ort-int8 / ds-int8",
           "encoder", "ort-int8", "ds-int8", 2.0, {**SMALL, "frames": (16,), **TWO}),
    Target("encoder-2thr-T100-vs-ort-int8", "2 threads, conformer-small T=100: ort-int8 / ds-int8",
           "encoder", "ort-int8", "ds-int8", 1.5, {**SMALL, "frames": (100,), **TWO}),
    Target("encoder-scaling-T100", "conformer-small T=100, ds-int8: 1 thread / 2 threads",
           "scaling", "ds-int8", "ds-int8", 1.7, {**SMALL, "frames": (100,), **TWO}),
    Target("streams-4x640ms", "4 x 640 ms streams, ds-int8 (2 thr): one by one / one call",
           "streams", "ds-int8 one by one", "ds-int8 one call", 2.0, {**SMALL, **TWO}),
)


def _matches(row: dict, where: dict) -> bool:
    for key, allowed in where.items():
        if key == "shape":
            value = (row.get("in"), row.get("out"))
        elif key == "threads":
            value = row.get("threads", 1)
        else:
            value = row.get(key)
        if value not in allowed:
            return False
    return True


def _case(row: dict, kind: str) -> str:
    thr = f" {row['threads']} thr" if row.get("threads", 1) != 1 else ""
    if kind in ("encoder", "scaling"):
        return f"{row['geometry']} T={row['frames']}{thr}"
    if kind == "layer":
        return f"{row['in']}->{row['out']} M={row['M']}{thr}"
    if kind == "streams":
        return f"{row['geometry']} {row['streams']} streams{thr}"
    return row["geometry"]


def evaluate(encoder_rows=(), layer_rows=(), sizes=None, stream_rows=()) -> list:
    """One record per :data:`TARGETS` entry (see the module docstring)."""
    out = []
    for t in TARGETS:
        if t.kind == "size":
            rows = [dict(v, geometry=g) for g, v in (sizes or {}).items()]
            get = lambda r: (r.get(t.num), r.get(t.den))  # noqa: E731
        elif t.kind == "scaling":  # the row's scaling is already num(1 thread) / den(N)
            rows = encoder_rows
            get = lambda r: (r.get("scaling", {}).get(t.num), 1.0)  # noqa: E731
        elif t.kind == "streams":
            rows = stream_rows
            get = lambda r: (r["us"].get(t.num), r["us"].get(t.den))  # noqa: E731
        else:
            rows = encoder_rows if t.kind == "encoder" else layer_rows
            get = lambda r: (r["us"].get(t.num), r["us"].get(t.den))  # noqa: E731
        cases = []
        for row in rows:
            if not _matches(row, t.where):
                continue
            num, den = get(row)
            if not num or not den:
                continue
            ratio = num / den
            cases.append({"case": _case(row, t.kind), "ratio": ratio,
                          "pass": ratio >= t.threshold})
        worst = min(cases, key=lambda c: c["ratio"]) if cases else None
        n_pass = sum(c["pass"] for c in cases)
        status = "n/a" if not cases else ("PASS" if n_pass == len(cases) else "MISS")
        expected = 1
        for allowed in t.where.values():
            expected *= len(allowed)
        out.append({"name": t.name, "text": t.text, "ratio": f"{t.num}/{t.den}",
                    "threshold": t.threshold, "status": status, "expected_cases": expected,
                    "min_ratio": worst["ratio"] if worst else None,
                    "min_case": worst["case"] if worst else None,
                    "passed": n_pass, "cases": cases})
    return out


def format_summary(records) -> list:
    """The summary block's lines: one per target, worst case and how many cases pass."""
    lines = []
    for r in records:
        if r["status"] == "n/a":
            got = "not measured in this run"
        else:
            n = len(r["cases"])
            got = f"{r['min_ratio']:6.2f}x worst ({r['min_case']})"
            if n > 1:
                got += f", {r['passed']}/{n} cases pass"
                others = ", ".join(f"{c['case']} {c['ratio']:.2f}" for c in r["cases"]
                                   if c["case"] != r["min_case"])
                if n <= 4:
                    got += f"; {others}"
            if n < r["expected_cases"]:
                got += f" (partial: {n} of {r['expected_cases']} cases measured)"
        lines.append(f"{r['status']:>4}  {r['text']:<58} >= {r['threshold']:<4g} {got}")
    return lines

"""`denseshift-speech <verb>`: the one command-line entry point (the top layer: it may
import every other layer, none imports it; see docs/ARCHITECTURE.md).

Each verb lives in its own module, which exposes ``add_parser(subparsers)``; that
function creates the verb's sub-parser and sets ``func`` (called with the parsed
args, returns an exit code).  Modules are imported lazily so ``--help`` is fast and
a verb's heavy dependencies load only when it runs.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import UserError

# verb -> module implementing it
VERBS = {
    "synth": "denseshift_speech.cli.synth",
    "prepare": "denseshift_speech.cli.prepare",
    "bench": "denseshift_speech.cli.bench",
    "export": "denseshift_speech.cli.export",
    "stream": "denseshift_speech.cli.stream",
    "evaluate": "denseshift_speech.cli.evaluate",
    "spot": "denseshift_speech.cli.spot",
    "report": "denseshift_speech.cli.report",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="denseshift-speech",
        description="DenseShift low-bit speech models: data, kernels, export, streaming, reports.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for module_name in VERBS.values():
        importlib.import_module(module_name).add_parser(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"denseshift-speech {args.verb}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""`denseshift-speech report RESULT_DIRS... [--out DIR]`: the verb's options; the report
is built by :mod:`denseshift_speech.integrations.speechbrain.report`."""
from __future__ import annotations

import os


def add_parser(subparsers):
    p = subparsers.add_parser(
        "report", help="tables + plot comparing DenseShift runs with their fp32 twins",
        description="Read the results.json of each RESULT_DIR (searched recursively) and "
                    "write report.md, report.json and error_vs_size.png.")
    p.add_argument("result_dirs", nargs="+", metavar="RESULT_DIR",
                   help="a recipe output folder, or a folder holding several")
    p.add_argument("--out", default="results/report",
                   help="where to write the report (default: results/report)")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ..integrations.speechbrain.report import (REPORT_JSON, REPORT_MD, REPORT_PNG,
                                                   build_report, markdown)

    rows = build_report(args.result_dirs, args.out)
    print(markdown(rows), end="")
    print(f"wrote {os.path.join(args.out, REPORT_MD)}, {REPORT_JSON}, {REPORT_PNG} "
          f"({len(rows)} runs)")
    return 0

"""Manifest helpers both preparers share: atomic CSV writes and "already prepared" checks."""
from __future__ import annotations

import csv
import json
import os

from ..fsio import atomic_open


def already_prepared(save_folder: str, opt_file: str, options: dict, outputs) -> bool:
    """True when ``opt_file`` in ``save_folder`` records these ``options`` and every output
    exists: preparation can be skipped."""
    try:
        with open(os.path.join(save_folder, opt_file)) as fh:
            old = json.load(fh)
    except (OSError, ValueError):
        return False
    return old == json.loads(json.dumps(options)) and all(os.path.isfile(o) for o in outputs)


def write_csv(path: str, header, rows) -> None:
    """Write ``rows`` under ``header`` via a temporary file (never a half-written manifest)."""
    with atomic_open(path, newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)

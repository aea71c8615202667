"""Crash-safe file writes, for every layer: a file is written under a temporary name
beside its final one and renamed onto it when complete, so a reader (or a run resumed
after a kill) never finds half a file."""
from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def atomic_path(path, suffix: str = ".tmp"):
    """Yield a temporary path beside ``path`` to write; on success it replaces ``path``,
    on an error it is removed and ``path`` is left as it was."""
    path = os.fspath(path)
    tmp = path + suffix
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path, mode: str = "w", **open_kwargs):
    """``open(path, mode)`` through :func:`atomic_path`: the file is closed, then renamed."""
    with atomic_path(path) as tmp, open(tmp, mode, **open_kwargs) as fh:
        yield fh

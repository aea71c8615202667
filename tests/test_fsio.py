"""Crash-safe writes: the final file appears complete or not at all."""
import os

import pytest

from denseshift_speech.fsio import atomic_open, atomic_path


def test_atomic_open_writes_then_renames(tmp_path):
    path = tmp_path / "results.json"
    with atomic_open(path) as fh:
        fh.write("{}")
        assert not path.exists()  # only the temporary file exists while writing
    assert path.read_text() == "{}" and os.listdir(tmp_path) == ["results.json"]


def test_an_error_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "model.dsp"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(path, suffix=".part") as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["model.dsp"]

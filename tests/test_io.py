"""Atomic writes: a reader sees the old file or the new one, never a part, and no temporary."""

from __future__ import annotations

import os

import pytest

from vaebench import io


def test_write_replaces_whole_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "m.json"
    io.atomic_write_json(target, {"b": 1, "a": [1.5, None]})
    io.atomic_write_json(target, {"b": 2, "a": [1.5, None]})
    assert target.read_text() == '{\n  "a": [\n    1.5,\n    null\n  ],\n  "b": 2\n}\n'
    assert io.read_json(target) == {"a": [1.5, None], "b": 2}
    assert os.listdir(tmp_path / "sub") == ["m.json"]


def test_failed_write_keeps_old_file_and_removes_temporary(tmp_path, monkeypatch):
    target = tmp_path / "manifest.json"
    target.write_text("old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(io.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        io.atomic_write_bytes(target, b"new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["manifest.json"]


def test_a_writer_that_raises_leaves_nothing(tmp_path):
    def half(p):
        p.write_text("half")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        io.atomic_write(tmp_path / "x.bin", half)
    assert os.listdir(tmp_path) == []


def test_read_json_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope.json: missing \(run the stage\)"):
        io.read_json(tmp_path / "nope.json", "run the stage")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match=r"bad.json: not valid JSON"):
        io.read_json(tmp_path / "bad.json")


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "plots"
    io.atomic_write_dir(target, lambda d: (d / "a.csv").write_text("1"))
    io.atomic_write_dir(target, lambda d: (d / "b.csv").write_text("2"))
    assert sorted(os.listdir(target)) == ["b.csv"]  # no file of the old folder survives

    def half(d):
        (d / "c.csv").write_text("half")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        io.atomic_write_dir(target, half)
    assert sorted(os.listdir(tmp_path)) == ["plots"] and os.listdir(target) == ["b.csv"]


def test_a_killed_writer_leaves_a_temporary_that_remove_temporaries_clears(tmp_path):
    """SIGKILL runs no ``finally``: the temporary of a write cut short stays until the run's
    owner clears it; the finished files beside it stay."""
    import signal
    import subprocess
    import sys

    (tmp_path / "train.json").write_text("{}")
    script = ("import os, signal, sys\nfrom pathlib import Path\nfrom vaebench import io\n"
              "def half(p):\n    p.write_bytes(b'half')\n    os.kill(os.getpid(), signal.SIGKILL)\n"
              "io.atomic_write(Path(sys.argv[1]) / 'checkpoint.pt', half)\n")
    killed = subprocess.run([sys.executable, "-c", script, str(tmp_path)])
    assert killed.returncode == -signal.SIGKILL
    left = [p for p in tmp_path.iterdir() if p.name != "train.json"]
    assert len(left) == 1 and left[0].name.startswith(".checkpoint.pt.")
    (tmp_path / ".plots.x1.old").mkdir()  # a folder swap cut between its two renames
    assert io.remove_temporaries(tmp_path) == sorted([left[0], tmp_path / ".plots.x1.old"])
    assert os.listdir(tmp_path) == ["train.json"]

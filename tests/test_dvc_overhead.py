"""``benchmarks/dvc_overhead.py``: its lock round trip leaves the lock as it was, its export is
the commit's tree and its ratio pairs the repeats (its committed pages are checked with the other
benchmarks' in ``test_benchmark_pages.py``)."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest

from benchmarks import dvc_overhead

ROOT = Path(__file__).resolve().parents[1]


def test_the_lock_round_trip_leaves_the_lock_byte_for_byte(tmp_path):
    lock = tmp_path / "dvc.lock"
    lock.write_bytes((ROOT / "dvc.lock").read_bytes())
    assert dvc_overhead.lock_rewrite_s(lock) > 0
    assert lock.read_bytes() == (ROOT / "dvc.lock").read_bytes()
    stats = dvc_overhead.lock_stats(lock)
    assert stats["bytes"] == lock.stat().st_size and stats["stages"] > 100


def test_an_export_is_the_commits_tree(tmp_path):
    rev = dvc_overhead.export("HEAD~1", tmp_path / "tree")
    for path in ("dvc.yaml", "pipelines/train.py"):
        shown = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True,
                               capture_output=True).stdout
        assert (tmp_path / "tree" / path).read_bytes() == shown
    with pytest.raises(SystemExit, match="is not a commit"):
        dvc_overhead.export("no-such-rev", tmp_path / "other")


def test_the_ratio_pairs_each_repeat():
    """Per file 4, 8 s against per stage 2, 4 s: twice as long in each repeat, so the paired
    interval is the single point 2 (unpaired, 8/2 and 4/4 would spread it from 1 to 4)."""
    seconds = {"lock rewrite, per file": [4.0, 8.0], "lock rewrite, per stage": [2.0, 4.0],
               "one-stage repro, per file": [3.0, 6.0],
               "one-stage repro, per stage": [1.0, 1.0]}
    ratio = dvc_overhead.summary(seconds)
    assert math.isclose(ratio["lock rewrite"]["low"], 2.0)
    assert math.isclose(ratio["lock rewrite"]["high"], 2.0)
    assert math.isclose(ratio["one-stage repro"]["ratio"], math.sqrt(18.0))
    assert ratio["one-stage repro"]["low"] < 3.0 and ratio["one-stage repro"]["high"] > 6.0


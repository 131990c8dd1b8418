"""``benchmarks/scaling.py``'s page: the committed scaling.md is what its code makes of the
committed scaling.json, and a queue measurement cut short says so instead of a ratio."""

from __future__ import annotations

import copy
from pathlib import Path

from benchmarks import scaling
from vaebench.io import read_json

ROOT = Path(__file__).resolve().parents[1]


def test_the_committed_page_is_rendered_from_the_committed_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(scaling, "OUT", tmp_path)
    scaling.write_report(read_json(ROOT / "reports" / "benchmarks" / "scaling.json"))
    assert (tmp_path / "scaling.md").read_text() == \
        (ROOT / "reports" / "benchmarks" / "scaling.md").read_text()


def _part(repro: list[float], queue: list[float], probes: bool) -> dict:
    part = copy.deepcopy(read_json(ROOT / "reports" / "benchmarks" / "scaling.json")["queue"])
    part["seconds"] = {"dvc repro": repro, "queue, 2 workers": queue}
    part["median_seconds"] = {k: sorted(v)[len(v) // 2] for k, v in part["seconds"].items()
                              if v}
    if probes:
        part["gemm_probe_us"] = {"dvc repro": [250.0] * len(repro),
                                 "queue, 2 workers": [260.0] * len(queue)}
    return part


def test_a_pair_cut_short_shows_its_half_and_no_ratio():
    text = "\n".join(scaling._queue_section(_part([600.0], [], probes=True)))
    assert "| dvc repro | 600.0 | 600.0 | 250 |" in text
    assert "| queue, 2 workers | not measured |  |  |" in text
    assert "No ratio: the pair is incomplete" in text and "Ratio dvc repro / queue" not in text


def test_the_ratio_pairs_the_repeats_that_have_both_halves():
    text = "\n".join(scaling._queue_section(_part([600.0, 700.0], [500.0], probes=True)))
    assert "Ratio dvc repro / queue, repeat by repeat: 1.20." in text  # 600 / 500 only
    assert "GEMM probe" in text

"""``benchmarks/scaling.py``'s page: the committed scaling.md is what its code makes of the
committed scaling.json, a queue measurement cut short says so instead of a ratio, and a pair
measured in two sittings is paired only on the same CPU model with the same code."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import scaling, scaling_report
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
    text = "\n".join(scaling_report.queue_section(_part([600.0], [], probes=True)))
    assert "| dvc repro | 600.0 | 600.0 | 250 |" in text
    assert "| queue, 2 workers | not measured |  |  |" in text
    assert "No ratio: the pair is incomplete" in text and "Ratio dvc repro / queue" not in text


def test_the_ratio_pairs_the_repeats_that_have_both_halves():
    text = "\n".join(scaling_report.queue_section(_part([600.0, 700.0], [500.0], probes=True)))
    assert "Ratio dvc repro / queue, repeat by repeat: 1.20." in text  # 600 / 500 only
    assert "GEMM probe" in text


# -- a pair measured in two sittings ------------------------------------------------------------
def _stamp(cpu: str = "Intel(R) Xeon(R) Processor", date: str = "2026-12-03",
           digest: str | None = "ab" * 32, commit: str = "c" * 40) -> dict:
    return {"date": date, "cpu": cpu, "cores": 2, "load_average_1_5_15": [1.0, 1.0, 1.0],
            "commit": commit, "code_digest": digest}


def _half(mode: str, seconds: float, stamp: dict) -> dict:
    part = _part([], [], probes=False)
    part.update(seconds={mode: [seconds]}, gemm_probe_us={mode: [250.0]},
                half_stamps={mode: stamp}, repeats=1, median_seconds={mode: seconds})
    return part


def test_a_half_is_merged_with_the_saved_other_half_and_keeps_its_own_stamp():
    saved = _half("dvc repro", 6000.0, _stamp(date="2026-12-03"))
    new = _half("queue, 2 workers", 5000.0, _stamp(date="2026-12-04", commit="d" * 40))
    merged = scaling.merge_half(saved, new, ("queue, 2 workers",))
    assert merged["seconds"] == {"queue, 2 workers": [5000.0], "dvc repro": [6000.0]}
    assert merged["half_stamps"]["dvc repro"]["date"] == "2026-12-03"
    assert merged["half_stamps"]["queue, 2 workers"]["date"] == "2026-12-04"
    assert merged["repeats"] == 1 and merged["gemm_probe_us"]["dvc repro"] == [250.0]
    text = "\n".join(scaling_report.queue_section(merged))
    assert "Ratio dvc repro / queue, repeat by repeat: 1.20." in text
    assert "two sittings, `dvc repro` on 2026-12-03" in text and "the queue on 2026-12-04" in text


def test_a_half_saved_before_halves_had_stamps_takes_the_parts_stamp():
    saved = _part([6000.0], [], probes=True)  # as the code before half stamps saved it
    new = _half("queue, 2 workers", 5000.0, _stamp(cpu=saved["cpu"]))
    merged = scaling.merge_half(saved, new, ("queue, 2 workers",))
    assert merged["half_stamps"]["dvc repro"]["date"] == saved["date"]
    assert "code_digest" not in merged["half_stamps"]["dvc repro"]
    text = "\n".join(scaling_report.queue_section(merged))  # no digest: not known to be the same code
    assert "**No ratio: the halves ran different code or parameters" in text


def test_a_half_of_another_setup_is_refused():
    saved = _half("dvc repro", 6000.0, _stamp())
    new = _half("queue, 2 workers", 5000.0, _stamp())
    new["seeds"] = [7]
    with pytest.raises(ValueError, match="seeds differ"):
        scaling.merge_half(saved, new, ("queue, 2 workers",))


@pytest.mark.parametrize("other, why", [
    (_stamp(cpu="AMD EPYC 9B14"), "the halves ran on different CPUs"),
    (_stamp(digest="cd" * 32), "the halves ran different code or parameters"),
])
def test_halves_on_another_cpu_or_other_code_are_never_paired(other, why):
    merged = scaling.merge_half(_half("dvc repro", 6000.0, _stamp()),
                                _half("queue, 2 workers", 5000.0, other), ("queue, 2 workers",))
    text = "\n".join(scaling_report.queue_section(merged))
    assert f"**No ratio: {why}" in text and "Ratio dvc repro / queue" not in text


def test_a_bad_half_is_a_one_line_error():
    out = subprocess.run([sys.executable, "-m", "benchmarks.scaling", "queue", "--half", "first"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert out.stderr.strip().splitlines() == [
        "error: --half 'first' is not one of: both, repro, queue"]


def test_the_scratch_digest_follows_the_code_and_params_not_the_notes(tmp_path):
    from benchmarks.services import SCRATCH_FILES, SCRATCH_TREES, scratch_code_digest

    for tree in SCRATCH_TREES:
        (tmp_path / tree).mkdir()
        (tmp_path / tree / "a.py").write_text("x = 1\n")
    for name in SCRATCH_FILES:
        (tmp_path / name).write_text("stages: {}\n")
    (tmp_path / "kernels" / "bench").mkdir()
    base = scratch_code_digest("study: {}\n", tmp_path)
    (tmp_path / "kernels" / "README.md").write_text("notes\n")
    (tmp_path / "kernels" / "bench" / "b.py").write_text("y = 2\n")
    (tmp_path / "vaebench" / "__pycache__").mkdir()  # not copied, so not hashed
    (tmp_path / "vaebench" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    assert scratch_code_digest("study: {}\n", tmp_path) == base
    assert scratch_code_digest("study: {seeds: [0]}\n", tmp_path) != base
    (tmp_path / "pipelines" / "a.py").write_text("x = 2\n")
    assert scratch_code_digest("study: {}\n", tmp_path) != base


def test_a_half_of_another_setup_is_refused_before_it_runs():
    """queue_slice holds params.yaml's digits slice; the tiny preset's is another setup."""
    cmd = [sys.executable, "-m", "benchmarks.scaling", "queue", "--params", "presets/tiny.yaml",
           "--no-reduce", "--datasets", "digits", "--half", "queue"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: --half queue into queue_slice: the saved part measured another setup (params"), lines


def test_a_ratio_gets_a_verdict_only_from_an_interval():
    """One repeat per half: a ratio, no verdict, and the probes' drift named; two and more:
    the paired interval decides, and a straddling one is undecided."""
    one = "\n".join(scaling_report.queue_section(_part([5095.0], [5010.0], probes=True)))
    assert "repeat by repeat: 1.02. One repeat per half: a single ratio without an interval, " \
           "so no verdict is drawn; the halves' GEMM probes lie 4% apart (250 and 260 us). " in one
    faster = "\n".join(scaling_report.queue_section(_part([600.0, 620.0, 610.0], [500.0, 505.0, 498.0],
                                                     probes=False)))
    assert "Paired over 3 repeats: 1.22 [1.18, 1.26]" in faster and ": the queue is faster." in faster
    straddle = "\n".join(scaling_report.queue_section(_part([600.0, 400.0], [500.0, 500.0], probes=False)))
    assert ": undecided." in straddle

"""The benchmark's byte model, target verdicts and report files (no timing here)."""

from __future__ import annotations

import csv
import importlib.util
import math
import statistics
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "kernels" / "bench" / "test_bench_latent.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_latent_under_test", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_minimal_bytes_formula(bench):
    # float32, N=4, D=8, S=3: fwd = mu+logvar 256 + z 384 + kl 16; bwd = g_z 384 + g_kl 16
    # + mu, logvar 256 + grad_mu, grad_logvar 256
    assert bench.minimal_bytes(4, 8, 3, "fwd") == 656
    assert bench.minimal_bytes(4, 8, 3, "fwd+bwd") == 656 + 912


def _row(backend, n, d, s, mode, median, factors=(1.0,) * 8):
    """A result row whose rounds took ``median * f`` for each f of ``factors``."""
    return {"backend": backend, "N": n, "D": d, "S": s, "mode": mode, "median_s": median,
            "min_s": median, "rounds": len(factors), "times_s": [median * f for f in factors],
            "bytes": 10**9}


def test_targets_cpu_and_cuda(bench):
    results = [_row("torch", 4096, 64, 1, "fwd+bwd", 1.0), _row("compile", 4096, 64, 1, "fwd+bwd", 0.4),
               _row("eager", 4096, 64, 1, "fwd+bwd", 2.0),
               _row("torch", 4096, 64, 5, "fwd", 1.0), _row("compile", 4096, 64, 5, "fwd", 1.1),
               _row("compile", 256, 32, 1, "fwd+bwd", 0.9), _row("torch", 256, 32, 1, "fwd+bwd", 1.0),
               _row("torch", 65536, 128, 1, "fwd", 1.0), _row("compile", 65536, 128, 1, "fwd", 0.6),
               _row("torch", 65536, 256, 1, "fwd", 1.0), _row("compile", 65536, 256, 1, "fwd", 0.9),
               _row("compile", 65536, 256, 5, "fwd+bwd", 0.5)]
    rows = {(r["backend"], r["N"], r["D"], r["S"], r["mode"]): r
            for r in bench.evaluate_targets(results, 2.0, False)}
    ok = rows[("compile", 4096, 64, 1, "fwd+bwd")]
    assert ok["met"] == "met" and ok["target"] == "compile >= 1x torch"
    assert ok["vs_torch"] == pytest.approx(2.5) and ok["vs_eager"] == pytest.approx(5.0)
    assert ok["torch_paired"]["ratio"] == pytest.approx(2.5)
    assert rows[("compile", 4096, 64, 5, "fwd")]["met"] == "missed"  # slower than torch
    assert rows[("compile", 256, 32, 1, "fwd+bwd")]["target"] == ""  # below the size threshold
    big = rows[("compile", 65536, 128, 1, "fwd")]                    # 1.67x < 2x
    assert big["target"] == "compile >= 2x torch" and big["met"] == "missed"
    wide = rows[("compile", 65536, 256, 1, "fwd")]                   # the 2x is for 65536x128
    assert wide["target"] == "compile >= 1x torch" and wide["met"] == "met"
    assert rows[("compile", 65536, 256, 5, "fwd+bwd")]["met"] == "n/a (torch skipped)"
    assert rows[("torch", 4096, 64, 1, "fwd+bwd")]["target"] == ""
    assert rows[("eager", 4096, 64, 1, "fwd+bwd")]["GB/s"] == pytest.approx(0.5)
    assert rows[("eager", 4096, 64, 1, "fwd+bwd")]["copy_fraction"] == pytest.approx(0.25)

    # CUDA: 1 GB/s of 1.15 GB/s copy (87%), 3.5x eager, but only 1.2x compile -> missed
    gpu = [_row("triton", 65536, 128, 1, "fwd+bwd", 1.0), _row("eager", 65536, 128, 1, "fwd+bwd", 3.5),
           _row("compile", 65536, 128, 1, "fwd+bwd", 1.2)]
    assert bench.evaluate_targets(gpu, 1.15, True)[0]["met"] == "missed"
    gpu[2] = _row("compile", 65536, 128, 1, "fwd+bwd", 1.4)
    assert bench.evaluate_targets(gpu, 1.15, True)[0]["met"] == "met"
    assert bench.evaluate_targets(gpu, 1.2, True)[0]["met"] == "missed"   # 83% < 85% of copy


def test_a_target_is_judged_from_the_paired_interval_not_the_medians(bench):
    """Rounds are paired by index over those both backends ran; a speed-up whose interval
    straddles the target is undecided, even when its median ratio clears it."""
    torch_row = _row("torch", 4096, 64, 1, "fwd", 1.0, (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 9.0))
    noisy = _row("compile", 4096, 64, 1, "fwd", 0.95, (0.8, 1.2, 0.9, 1.15, 0.85, 1.1))
    rows = {r["backend"]: r for r in bench.evaluate_targets([torch_row, noisy], 2.0, False)}
    got = rows["compile"]
    assert got["vs_torch"] == pytest.approx(1 / 0.95)  # medians: compile looks faster
    assert got["torch_paired"]["n"] == 6  # torch's seventh round has no partner
    ratios = [1.0 / (0.95 * f) for f in (0.8, 1.2, 0.9, 1.15, 0.85, 1.1)]
    assert got["torch_paired"]["ratio"] == pytest.approx(math.exp(statistics.fmean(
        math.log(x) for x in ratios)))
    assert got["torch_paired"]["low"] < 1.0 < got["torch_paired"]["high"]
    assert got["met"] == "undecided"
    md = bench.render_markdown(list(rows.values()), {"kind": "cpu"}, [])
    assert "1 undecided" in md and "Targets met: 0 of 1" in md


def test_report_files_are_written_atomically(bench, tmp_path):
    rows = bench.evaluate_targets([_row("compile", 4096, 64, 1, "fwd", 0.5)], 4.0, False)
    meta = {"kind": "cpu", "date": "today", "device": "test"}
    md = bench.render_markdown(rows, meta, ["eager 65536x256 S=50 fwd: skipped"])
    bench.atomic_write_text(tmp_path / "t.md", md)
    bench.atomic_write_text(tmp_path / "t.csv", bench.render_csv(rows, meta))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.md"]
    text = (tmp_path / "t.md").read_text()
    assert "| compile | 4096 | 64 | 1 | fwd | 500.000 |" in text and "skipped" in text
    assert "x torch" in text
    lines = [x for x in (tmp_path / "t.csv").read_text().splitlines() if not x.startswith("#")]
    (row,) = csv.DictReader(lines)
    assert float(row["GB/s"]) == pytest.approx(2.0) and row["backend"] == "compile"


def test_interleaved_rounds_rotate_and_stop(bench, monkeypatch):
    monkeypatch.setattr(bench, "_rounds", lambda step, least: {"a": 2, "b": 4}[step.__name__])
    calls = []

    def a():
        calls.append("a")

    def b():
        calls.append("b")

    times = bench.interleaved({"a": a, "b": b})
    assert {k: len(v) for k, v in times.items()} == {"a": 2, "b": 4}
    assert calls == ["a", "b", "b", "a", "b", "b"]  # rotating order, a drops out after 2


def test_the_compile_draw_is_the_stream_its_backend_draws(bench):
    """The draw timed alone is the eps the backends use: with mu = 0 and logvar = 0, z is eps
    (eager backend: the same Philox-4x32-10 stream bit for bit)."""
    import torch

    import kernels
    from kernels import compiled

    n, d, s = 3, 5, 4
    zeros = torch.zeros(n, d)
    eps = bench.compile_draw(zeros, compiled._key(1, 0, zeros.device), s + 2, n * d)
    z = kernels.reparameterize(zeros, zeros, s, seed=1, backend="eager")
    assert eps.shape == (s, n, d) and torch.equal(eps, z)
    assert bench.minimal_bytes(n, d, s, bench.draw_mode("fwd")) == 4 * s * n * d


def test_where_the_time_goes_names_a_draw_that_rules_a_target_out(bench):
    """Torch's whole op over the backend's draw alone, paired: below the speed-up asked,
    the draw rules the target out; above it, the draw leaves room; met targets, draw rows and
    cases without draws get no line."""
    big, small = (65536, 128, 5), (4096, 64, 1)
    noise = (1.0, 1.02, 0.98, 1.01, 0.99, 1.0, 1.03, 0.97)
    results = [_row("torch", *big, "fwd", 0.8, noise), _row("compile", *big, "fwd", 0.54),
               _row("torch", *big, "draw (fwd)", 0.44), _row("compile", *big, "draw (fwd)", 0.47),
               _row("torch", *big, "fwd+bwd", 0.9, noise), _row("compile", *big, "fwd+bwd", 0.6),
               _row("torch", *small, "fwd", 1.0, noise), _row("compile", *small, "fwd", 1.1),
               _row("torch", *small, "draw (fwd)", 0.4), _row("compile", *small, "draw (fwd)", 0.3),
               _row("torch", 4096, 64, 5, "fwd", 1.0), _row("compile", 4096, 64, 5, "fwd", 0.5),
               _row("torch", 4096, 64, 5, "draw (fwd)", 0.4),
               _row("compile", 4096, 64, 5, "draw (fwd)", 0.3)]
    rows = bench.evaluate_targets(results, 2.0, False)
    assert all(r["target"] == "" for r in rows if r["mode"].startswith("draw"))
    items = {b["case"]: b for b in bench.time_breakdown(rows)}
    # 65536x128 S=5 fwd: 0.8 / 0.47 = 1.7x < 2x asked; fwd+bwd has no draws; 4096x64 S=5 met
    assert set(items) == {"compile 65536x128 S=5 fwd", "compile 4096x64 S=1 fwd"}
    out = items["compile 65536x128 S=5 fwd"]
    assert out["draw"] == "rules the target out"
    assert out["target_s"] == pytest.approx(0.4) and out["reach"]["ratio"] == pytest.approx(
        0.8 / 0.47, rel=0.02)
    assert out["memory_s"] == pytest.approx(1e9 / 2e9)  # bytes at copy bandwidth
    room = items["compile 4096x64 S=1 fwd"]  # 1.0 / 0.3 = 3.3x >= 1x: the rest misses
    assert room["draw"] == "leaves room"
    md = bench.render_markdown(rows, {"kind": "cpu"}, [])
    assert ("| compile 65536x128 S=5 fwd | >= 2x torch | 540.0 | 400.0 | 470.0 (87%) | "
            "440.0 (55%) | 500.0 |") in md
    assert "rules the target out |" in md and "leaves room |" in md

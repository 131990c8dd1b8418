"""The report stage on a synthetic runs/ tree: every number in the outputs is the one written,
every check is judged with the Bonferroni constants recomputed here, the page references
exactly the figures on disk, a failing check fails the stage after the outputs are written, and
a declared run without a folder is a one-line error."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from report_fixtures import BETAS, DATASET, ENTROPY, MODELS, PICTURES, SWEEP_DATASET, run_of, write_study
from scipy.stats import norm

from pipelines.report import read_runs, report_stage, write_report
from vaebench import report
from vaebench.config import Cell, load_params

ALPHA = 0.05  # not the default 0.01, so the test sees that params.theory.alpha is used
STATISTICAL = ("equal", "le", "ge")


def build(root: Path):
    params = load_params(root / "params.yaml")
    runs = read_runs(root / "runs", report.declared_runs(params))
    theory = write_report(params, runs, root / "reports")
    return params, runs, theory


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    written = write_study(root, alpha=ALPHA)
    params, runs, theory = build(root)
    return root, written, theory


def run_stage(root: Path, capsys) -> tuple[int, str]:
    """The stage's entry point on ``root``: (exit status, stderr)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        report_stage(root / "params.yaml", root / "runs", root / "reports")
    return exc.value.code, capsys.readouterr().err


def test_declared_runs_are_the_params_cells(study):
    root, written, _ = study
    cells = report.declared_runs(load_params(root / "params.yaml"))
    expected = [run_of(m, DATASET) for m in MODELS] + [run_of("linear", SWEEP_DATASET)]
    expected += [run_of("linear", SWEEP_DATASET, b) for b in BETAS]
    assert [c.run for c in cells] == expected
    assert [c.group for c in cells] == ["grid"] * len(MODELS) + ["linear"] + ["sweep"] * 2
    assert [c.beta for c in cells] == [None] * (len(MODELS) + 1) + list(BETAS)
    assert set(written) == set(expected)


def test_summary_csv_holds_the_written_numbers(study):
    root, written, _ = study
    summary = pd.read_csv(root / "reports" / "summary.csv")
    for col in ("run", "model", "dataset", "beta", "elbo", "elbo_se", "recon", "kl", "nll",
                "nll_k", "nll_points", "active_units", "train_seconds", "likelihood",
                "preprocessing", "bits_per_dim", "latent_dim", "mi", "epochs",
                "L_1", "L_5", "L_50", "L_500"):
        assert col in summary.columns, col
    assert sorted(summary["run"]) == sorted(written)
    for run, w in written.items():
        row = summary.set_index("run").loc[run]
        m = w["metrics"]
        assert row["model"] == m["model"] and row["dataset"] == m["dataset"]
        for key in ("elbo", "elbo_se", "recon", "kl", "nll", "nll_se", "train_seconds", "mi",
                    "L_1", "L_5", "L_50", "L_500"):
            assert row[key] == m[key], (run, key)
        for key in ("nll_k", "nll_points", "active_units", "latent_dim", "epochs"):
            assert row[key] == m[key] and float(row[key]).is_integer(), (run, key)
        if "bits_per_dim" in m:
            assert row["bits_per_dim"] == m["bits_per_dim"]
        else:
            assert math.isnan(row["bits_per_dim"])
        if w["beta"] is None:
            assert math.isnan(row["beta"])
        else:
            assert row["beta"] == w["beta"]


def test_theory_json_judges_every_record(study):
    root, written, _ = study
    doc = json.loads((root / "reports" / "theory.json").read_text())
    checks = doc["checks"]
    raw = [r for w in written.values() for r in w["records"]]
    raw_keys = {(r["name"], r["run"]) for r in raw}
    sweep = [c for c in checks if (c["name"], c["run"]) not in raw_keys]
    # every raw record, plus the beta-sweep records (rate order per adjacent pair, 2 per run)
    assert len(checks) == len(raw) + (len(BETAS) - 1) + 2 * len(BETAS)
    assert raw_keys <= {(c["name"], c["run"]) for c in checks}
    for c in checks:
        for key in ("name", "run", "kind", "empirical", "theoretical", "stderr", "tolerance",
                    "z", "passed", "detail"):
            assert key in c, key
        assert isinstance(c["passed"], bool) and c["tolerance"] is not None
    m = sum(c["kind"] in STATISTICAL and c["stderr"] is not None for c in checks)
    z_star = norm.isf(ALPHA / (2 * m))
    assert doc["alpha"] == ALPHA and doc["m"] == m
    assert doc["z_star"] == pytest.approx(z_star, rel=1e-12)
    for c in checks:
        if c["kind"] in STATISTICAL and c["stderr"] is not None:
            assert c["z"] == pytest.approx((c["empirical"] - c["theoretical"]) / c["stderr"])
            assert c["tolerance"] == pytest.approx(z_star * c["stderr"], rel=1e-6)
    assert all(c["passed"] for c in checks) and doc["checks_failed"] == 0
    # the sweep records come from the written metrics: R(beta_small) - R(beta_large) >= 0
    rates = [written[run_of("linear", SWEEP_DATASET, b)]["metrics"]["kl"] for b in BETAS]
    order = [c for c in sweep if c["name"].startswith("rate_nonincreasing")]
    assert [c["empirical"] for c in order] == pytest.approx([rates[0] - rates[1]])
    h_minus_d = [c["empirical"] for c in sweep if c["name"] == "entropy_minus_distortion_le_mi"]
    recon = [written[run_of("linear", SWEEP_DATASET, b)]["metrics"]["recon"] for b in BETAS]
    assert h_minus_d == pytest.approx([ENTROPY + r for r in recon])


def test_headline_metrics(study):
    root, written, theory = study
    doc = json.loads((root / "reports" / "metrics.json").read_text())
    assert doc["checks_total"] == len(theory.checks) == doc["checks_passed"]
    assert doc["checks_failed"] == 0
    for run, w in written.items():  # one seed per cell in the fixture: the mean is the run's
        assert doc["cells"][run.split("/")[0]] == {"elbo": w["metrics"]["elbo"],
                                                   "nll": w["metrics"]["nll"]}


def test_figures_exist_small_and_pictures_copied(study):
    root, written, _ = study
    figs = root / "reports" / "figures"
    for name in ("training_curves", "kl_per_dim", "rate_distortion", "beta_sweep"):
        png = figs / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert png.stat().st_size < 300_000, name
    copied = 0
    for run in written:
        src = root / "runs" / run / "figures"
        for pic in src.glob("*.png") if src.exists() else []:
            small = figs / run / pic.name
            assert small.stat().st_size < pic.stat().st_size, pic
            original = plt.imread(pic)[..., :3]  # RGBA grey from plt.imsave
            assert np.array_equal(plt.imread(small), original[..., 0]), pic  # same pixels
            copied += 1
    assert copied == len(MODELS) * len(PICTURES)
    assert not list((root / "reports").glob(".figures*")), "temporary folders left behind"
    md = (figs / "disentanglement.md").read_text()
    assert "dSprites-like" in md
    for run in (run_of(m, DATASET) for m in MODELS):
        mig = written[run]["metrics"]["mig"]
        assert re.search(rf"\| {re.escape(run)} \|.*\| {mig:.3f} \|", md), run


def test_index_html_has_the_tables_and_every_figure(study):
    root, written, theory = study
    page = (root / "reports" / "index.html").read_text()
    on_disk = {p.relative_to(root / "reports").as_posix()
               for p in (root / "reports" / "figures").rglob("*.png")}
    referenced = set(re.findall(r'<img[^>]*src="([^"]+)"', page))
    assert referenced == on_disk
    for run, w in written.items():
        assert f"<td>{run}</td>" in page
        m = w["metrics"]
        assert f"{m['nll']:.2f} ± {m['nll_se']:.2f}" in page, run
    for c in theory.checks:
        assert f"<td>{c['name']}</td>" in page
    assert f"<strong>{theory.z_star:.3f}</strong>" in page
    assert re.search(rf"m =\s*<strong>{theory.m}</strong>", page)
    for text in ("228.70 ± 0.15", "86.76", "86.47", "86.35", "85.54", "84.78",
                 "MNIST, not Fashion-MNIST", "dSprites-LIKE", "disentanglement_lib",
                 "log N ceiling", "Bonferroni", "binarized once, fixed seed",
                 f"{written[run_of('vae', DATASET)]['metrics']['mi_max']:.2f}"):
        assert text in page, text
    linear = written[run_of("linear", SWEEP_DATASET)]["metrics"]
    for key in ("linear_log_px_exact", "ppca_ml_loglik_per_point"):
        assert f"<td>{linear[key]:.3f}</td>" in page, key
    assert f"<td>{linear['subspace_similarity']:.4f}</td>" in page
    assert "http://" not in page and "https://" not in page  # renders offline


def test_published_row_names_our_protocol():
    cell = Cell("vae", "fashion-mnist", 0)
    metrics = {"nll": 241.234, "nll_se": 0.5, "nll_k": 500, "nll_points": 1000, "n_test": 10000,
               "epochs": 10, "latent_dim": 20, "likelihood": "bernoulli",
               "preprocessing": "dynamic binarization",
               "test_preprocessing": "binarized once, fixed seed"}
    train = {"train_config": {"arch": "mlp", "hidden": [400], "latent_dim": 20}}
    row = report.published_nll_table([report.RunData(cell, metrics, [], train)]).rows[0]
    assert row[1] == "228.70 ± 0.15" and "5000" in row[2]
    assert row[3].startswith("241.23 ± 0.50")
    for part in ("k = 500", "1000 of 10000", "mlp 400, z = 20", "10 epochs"):
        assert part in row[4], part


def test_failing_check_fails_the_stage_after_writing(tmp_path, capsys):
    bad = {"name": "planted_identity", "run": run_of("iwae", DATASET), "kind": "exact",
           "empirical": 1.0, "theoretical": 2.0, "stderr": None, "tolerance": 1e-9,
           "z": None, "passed": None, "detail": "planted to fail"}
    write_study(tmp_path, alpha=ALPHA, extra_records={bad["run"]: [bad]})
    code, err = run_stage(tmp_path, capsys)
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "planted_identity" in lines[0] and bad["run"] in lines[0]
    for name in ("summary.csv", "theory.json", "metrics.json", "index.html"):
        assert (tmp_path / "reports" / name).exists(), name
    doc = json.loads((tmp_path / "reports" / "theory.json").read_text())
    verdicts = {(c["name"], c["run"]): c["passed"] for c in doc["checks"]}
    assert verdicts.pop(("planted_identity", bad["run"])) is False
    assert all(verdicts.values())
    assert doc["failed"] == [f"planted_identity [{bad['run']}]"]
    page = (tmp_path / "reports" / "index.html").read_text()
    assert re.search(r'<tr class="fail">\s*<td>planted_identity</td>', page)


def test_missing_runs_are_a_one_line_error(tmp_path, capsys):
    write_study(tmp_path)
    gone = [run_of("vae", DATASET), run_of("linear", SWEEP_DATASET, BETAS[1])]
    for run in gone:
        shutil.rmtree(tmp_path / "runs" / run)
    params = load_params(tmp_path / "params.yaml")
    with pytest.raises(FileNotFoundError) as err:
        read_runs(tmp_path / "runs", report.declared_runs(params))
    assert "\n" not in str(err.value) and all(run in str(err.value) for run in gone)
    code, err_text = run_stage(tmp_path, capsys)
    assert code == 2
    lines = err_text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert all(run in lines[0] for run in gone), lines[0]
    assert not (tmp_path / "reports").exists()


def test_sweep_without_entropy_is_not_checked_and_says_so(tmp_path):
    write_study(tmp_path)
    params = load_params(tmp_path / "params.yaml")
    runs = read_runs(tmp_path / "runs", report.declared_runs(params))
    for r in runs:
        r.metrics.pop("data_entropy", None)
    records, note = report.sweep_records(runs)
    assert records == [] and "data_entropy" in note


def test_malformed_check_record_is_a_one_line_error():
    good = {"name": "ok", "run": "r1", "kind": "exact", "empirical": 1.0, "theoretical": 1.0,
            "tolerance": 1e-9}
    bad = {**good, "name": "odd", "run": "r2", "kind": "roughly"}
    with pytest.raises(ValueError) as err:
        report.finalize_checks([good, bad], alpha=0.01)
    text = str(err.value)
    assert "\n" not in text and "'odd'" in text and "'r2'" in text and "roughly" in text

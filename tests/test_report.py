"""The report stage on a synthetic runs/ tree written through the typed contract: every number in
the outputs is recomputed here from what was written (means and Student-t intervals over seeds,
paired differences, Holm), model checks and self-tests are judged apart, the page references
exactly the figures on disk, a failing check fails the stage after the outputs are written, and
bad input is a one-line error."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from report_fixtures import (
    BETAS,
    DATASET,
    IWAE_GAIN,
    MODELS,
    SEEDS,
    SWEEP_DATASET,
    run_of,
    write_study,
)
from scipy import stats

from pipelines.report import report_stage, write_report
from vaebench.cells import cells
from vaebench.config import load_params
from vaebench.report import read_runs
from vaebench.report.page import interval_verdict
from vaebench.theory.records import record

ALPHA = 0.05  # not the default 0.01, so the test sees that params.theory.alpha is used


def build(root: Path):
    params = load_params(root / "params.yaml")
    runs = read_runs(root / "runs", cells(params))
    return write_report(params, runs, root / "reports")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    written = write_study(root, alpha=ALPHA)
    return root, written, build(root)


def run_stage(root: Path, capsys) -> tuple[int | None, str]:
    capsys.readouterr()
    try:
        report_stage(root / "params.yaml", root / "runs", root / "reports")
    except SystemExit as exc:
        return exc.code, capsys.readouterr().err
    return 0, capsys.readouterr().err


def test_runs_are_read_through_the_contract(study):
    root, written, report = study
    assert [r.cell.run for r in report.runs] == list(written)
    for r in report.runs:
        assert r.metrics == written[r.cell.run]["metrics"]
        assert np.array_equal(r.points["nll"], written[r.cell.run]["points"]["nll"])


def test_cells_are_means_with_student_t_intervals_over_seeds(study):
    root, written, _ = study
    summary = pd.read_csv(root / "reports" / "summary.csv")
    assert len(summary) == len(written) // len(SEEDS)
    for _, row in summary.iterrows():
        mine = [w["metrics"] for w in written.values() if w["cell"].name == row["cell"]]
        assert row["n_seeds"] == len(SEEDS) == len(mine)
        for metric, get in (("elbo", lambda m: m.elbo.mean), ("nll", lambda m: m.nll.mean),
                            ("active_units", lambda m: m.active_units)):
            values = np.array([get(m) for m in mine], dtype=float)
            assert row[metric] == pytest.approx(values.mean())
            half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
            assert row[f"{metric}_ci95"] == pytest.approx(half)
        assert row["elbo_se_run"] == pytest.approx(np.mean([m.elbo.se for m in mine]))
    long = pd.read_csv(root / "reports" / "runs.csv")
    nll = long[long["metric"] == "nll"].set_index("run")["value"]
    assert {r: nll[r] for r in written} == {r: w["metrics"].nll.mean for r, w in written.items()}


def test_paired_comparison_recomputed_and_verdicts_need_an_interval(study):
    root, written, report = study
    comp = pd.read_csv(root / "reports" / "comparisons.csv")
    nll = comp[(comp["a"] == "iwae") & (comp["metric"] == "nll")].iloc[0]
    d = [written[run_of("iwae", DATASET, seed=s)]["points"]["nll"]
         - written[run_of("vae", DATASET, seed=s)]["points"]["nll"] for s in SEEDS]
    assert nll["diff"] == pytest.approx(np.mean(d))
    assert nll["diff"] == pytest.approx(-IWAE_GAIN, abs=0.05)
    se = math.sqrt(np.var([x.mean() for x in d], ddof=1) / len(SEEDS)
                   + np.mean(d, axis=0).var(ddof=1) / len(d[0]))
    assert nll["se"] == pytest.approx(se)
    assert nll["verdict"] == "iwae better" and nll["claim_holds"] == "yes"
    valid = comp.dropna(subset=["p"])
    assert (valid["p_holm"] >= valid["p"] - 1e-12).all()
    for _, c in comp.iterrows():  # a verdict only where the interval excludes 0
        if c["verdict"].endswith("better"):
            assert c["lo"] > 0 or c["hi"] < 0
        else:
            assert c["verdict"].startswith("no")


def test_model_checks_and_self_tests_are_judged_apart(study):
    root, written, _ = study
    theory = json.loads((root / "reports" / "theory.json").read_text())
    assert theory["model_checks"]["total"] == len(written)  # one per run in the fixture
    sweep = len(SEEDS) * ((len(BETAS) - 1) + 2 * len(BETAS))  # Alemi's bounds per seed
    assert theory["self_tests"]["total"] == len(written) + sweep
    assert all(c["category"] == "model" for c in theory["model_checks"]["checks"])
    assert all(c["p"] is not None for c in theory["self_tests"]["checks"])
    headline = json.loads((root / "reports" / "metrics.json").read_text())
    assert headline["model_checks_total"] == len(written) == headline["model_checks_passed"]
    vae = [w["metrics"].nll.mean for w in written.values() if w["cell"].name == f"vae-{DATASET}"]
    assert headline["cells"][f"vae-{DATASET}"]["nll"] == pytest.approx(np.mean(vae))


def test_page_has_every_figure_and_table(study):
    root, written, report = study
    page = (root / "reports" / "index.html").read_text()
    figures = sorted(p.name for p in (root / "reports" / "figures").glob("*.png"))
    assert set(figures) >= {"training_curves.png", "kl_per_dim.png", "rate_distortion.png",
                            "beta_sweep.png"}
    srcs = re.findall(r'<img[^>]* src="([^"]+)"', page)
    for src in srcs:
        assert (root / "reports" / src).is_file(), src
    assert {f"figures/{f}" for f in figures} <= set(srcs)
    for heading in ("Paired comparisons", "Model checks", "Estimator self-tests",
                    "Linear VAE against probabilistic PCA", "Published numbers"):
        assert heading in page
    assert "iwae better" in page
    assert "http://" not in page and "https://" not in page  # renders offline


def test_published_verdict_comes_from_the_interval():
    assert interval_verdict(228.9, 0.2, 228.70, 0.15) == "within"
    assert interval_verdict(240.0, 0.5, 228.70, 0.15) == "above"
    assert interval_verdict(227.0, 0.2, 228.70, 0.15) == "below"


def test_failing_model_check_fails_the_stage_after_writing(tmp_path, capsys):
    bad = record(name="planted_model_check", run=run_of("iwae", DATASET), kind="exact",
                 empirical=1.0, theoretical=0.0, tolerance=1e-6, category="model",
                 catches=["kl_formula"])
    write_study(tmp_path, alpha=ALPHA, extra_records={run_of("iwae", DATASET): [bad]})
    code, err = run_stage(tmp_path, capsys)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "planted_model_check" in lines[0] and "(model)" in lines[0]
    theory = json.loads((tmp_path / "reports" / "theory.json").read_text())
    assert theory["model_checks"]["failed"] == [f"planted_model_check [{run_of('iwae', DATASET)}]"]
    assert (tmp_path / "reports" / "index.html").exists()


def test_missing_and_malformed_runs_are_one_line_errors(tmp_path, capsys):
    write_study(tmp_path)
    gone = [run_of("vae", DATASET), run_of("linear", SWEEP_DATASET, BETAS[1], seed=1)]
    for run in gone:
        shutil.rmtree(tmp_path / "runs" / run)
    code, err = run_stage(tmp_path, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "2 declared run(s)" in err and all(r in err for r in gone)
    write_study(tmp_path)
    path = tmp_path / "runs" / run_of("iwae", DATASET) / "eval" / "metrics.json"
    doc = json.loads(path.read_text())
    doc["elbo"] = {"mean": -1.0}  # a field missing: the contract refuses it
    path.write_text(json.dumps(doc))
    code, err = run_stage(tmp_path, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert str(path) in err and "elbo.se" in err
    assert not (tmp_path / "reports").exists()


def test_models_listed_are_the_fixture(study):
    root, _, report = study
    assert {r.cell.model for r in report.runs} == {*MODELS, "linear"}


def test_paper_runs_sit_beside_their_published_number(tmp_path, capsys):
    """A result in reports/paper/, written through its contract, appears in the published table
    with the verdict and interval it holds, and the study's VAE row keeps the one source of the
    number; a renamed field fails the stage in one line naming the file and the field."""
    from test_paper_result import paper_config, seed_result

    from vaebench.paper.published import published
    from vaebench.paper.report import VariantRuns, result

    write_study(tmp_path, alpha=ALPHA)
    pub = published("exemplar-vae-fashion-mnist-vae")
    seeds = [seed_result(s, nll) for s, nll in zip((2, 0, 1), (230.9, 231.0, 231.4), strict=True)]
    doc = result(paper_config(differences=["forty epochs, not early stopping"]),
                 [VariantRuns("vae", {}, pub, seeds)], {"cpu": "Test CPU"}, "2026-12-02", "")
    cmp_ = doc.variants[0].comparison
    assert cmp_.verdict == "above"  # 231.1 +- 0.66 against 228.70 +- 0.29, tolerance 1
    path = tmp_path / "reports" / "paper" / "paper-fmnist.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(doc.model_dump(mode="json")))
    build(tmp_path)
    page = (tmp_path / "reports" / "index.html").read_text()
    published_part = page[page.index('id="published"'):page.index('id="gradients"')]
    row = next(r for r in published_part.split("<tr>") if "paper-fmnist" in r)
    nll = stats.t.interval(0.95, 2, loc=231.1, scale=stats.sem([230.9, 231.0, 231.4]))
    assert f"231.10 ± {(nll[1] - nll[0]) / 2:.2f} (3 seeds: 0, 1, 2)" in row
    assert "228.70 ± 0.15" in row and "above" in row
    lo, hi = cmp_.interval
    assert f"[{lo:.2f}, {hi:.2f}]" in row and "forty epochs" in row and "Test CPU" in row
    raw = doc.model_dump(mode="json")
    raw["variants"][0]["nll"]["halfwidth"] = raw["variants"][0]["nll"].pop("half_width")
    path.write_text(json.dumps(raw))
    code, err = run_stage(tmp_path, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert str(path) in err and "variants.0.nll.half_width: Field required" in err


def test_the_gradient_section_reads_the_gradient_study_through_its_contract(tmp_path):
    """reports/gradients/gradients.json is read as a GradientStudyResult: its verdict, whether
    it holds (styled), and one row per (beta, step) with the intervals it holds."""
    from test_gradient_results import result, study

    write_study(tmp_path, alpha=ALPHA)
    doc = result(study([3.0, 0.8])).model_dump(mode="json")
    (tmp_path / "reports" / "gradients").mkdir(parents=True)
    (tmp_path / "reports" / "gradients" / "gradients.json").write_text(json.dumps(doc))
    build(tmp_path)
    page = (tmp_path / "reports" / "index.html").read_text()
    part = page[page.index('id="gradients"'):page.index('id="runs"')]
    assert '<p class="verdict-bad">Score function over reparameterization' in part
    assert "0.8, not above 1" in part
    rows = [r for r in part.split("<tr>") if "10 [" in r]
    assert [re.sub(r"<[^>]+>", "|", r).count("10 [0.8, 20]") for r in rows] == [0, 1]
    doc["runs"][0]["beta_value"] = doc["runs"][0].pop("beta")  # a renamed field
    (tmp_path / "reports" / "gradients" / "gradients.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="beta"):
        build(tmp_path)

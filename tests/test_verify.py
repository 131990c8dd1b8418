"""`vaebench verify`'s comparison: identical reruns pass, differences inside the combined
errors (within-run SEs and the spread over seeds) pass, differences beyond them fail."""

from __future__ import annotations

import pytest
from report_fixtures import DATASET, run_of, write_study

from vaebench.cells import cells
from vaebench.config import load_params
from vaebench.report import read_runs
from vaebench.report.aggregate import runs_frame
from vaebench.verify import chosen_cells, compare, long_of, pooled_seed_variance


@pytest.fixture(scope="module")
def committed(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    write_study(root)
    params = load_params(root / "params.yaml")
    runs = read_runs(root / "runs", cells(params))
    return params, runs, runs_frame(runs)


def test_an_identical_rerun_passes(committed):
    _, runs, long = committed
    rows = compare(long, {r.cell.run: r.metrics for r in runs[:2]})
    assert rows and all(r.passed and r.rerun == r.committed for r in rows)


def test_a_shift_beyond_the_errors_fails_and_within_passes(committed):
    _, runs, long = committed
    run = next(r for r in runs if r.cell.run == run_of("vae", DATASET))
    m = run.metrics
    cell = long[(long["cell"] == m.cell) & (long["metric"] == "nll")]["value"]
    scale = (2 * m.nll.se ** 2 + 2 * cell.std(ddof=1) ** 2) ** 0.5  # one rerun: no seed dof
    near = m.model_copy(update={"nll": m.nll.model_copy(update={"mean": m.nll.mean + scale})})
    far = m.model_copy(update={"nll": m.nll.model_copy(update={"mean": m.nll.mean + 10 * scale})})
    by = {r.metric: r for r in compare(long, {m.run: near})}
    assert by["nll"].passed and by["nll"].z == pytest.approx(1.0)
    by = {r.metric: r for r in compare(long, {m.run: far})}
    assert not by["nll"].passed and by["elbo"].passed
    au = m.model_copy(update={"active_units": m.active_units + 5})
    assert not {r.metric: r for r in compare(long, {m.run: au})}["active_units"].passed


def test_unknown_cells_are_one_line(committed):
    params, _, _ = committed
    with pytest.raises(ValueError, match="unknown cell.*valid choices: .*vae-dsprites"):
        chosen_cells(params, ["vae-digitz"], None)
    assert {c.run for c in chosen_cells(params, [f"vae-{DATASET}"], [1])} == {
        run_of("vae", DATASET, seed=1)}


def test_against_compares_a_whole_finished_study_with_another_runs_csv(tmp_path):
    """``--against``: this machine's runs/ against another machine's runs.csv, every run, no
    rerun. The same study passes (all identical); one metric moved far beyond its errors in
    the other file fails, named; the page says so."""
    from vaebench.verify import against, markdown

    root = tmp_path / "study"
    write_study(root)
    params = load_params(root / "params.yaml")
    long = runs_frame(read_runs(root / "runs", cells(params)))
    other = tmp_path / "runs.csv"
    long.to_csv(other, index=False)
    rows = against(root, root / "params.yaml", other)
    assert len({r.run for r in rows}) == len(cells(params))
    assert all(r.passed and r.rerun == r.committed for r in rows)
    # the other machine's NLL of one cell shifted alike on every seed (the spread over seeds
    # stays as it was): a systematic difference, beyond the errors on every run of the cell
    at = (long["cell"] == f"vae-{DATASET}") & (long["metric"] == "nll")
    long.loc[at, "value"] += 50 * float(long.loc[at, "se"].max())
    long.to_csv(other, index=False)
    rows = against(root, root / "params.yaml", other)
    failed = sorted((r.run, r.metric) for r in rows if not r.passed)
    mine = tmp_path / "mine.csv"  # two runs.csv, neither study at hand: the same rows
    runs_frame(read_runs(root / "runs", cells(params))).to_csv(mine, index=False)
    assert against(root, root / "params.yaml", other, this=mine) == rows
    expected = sorted((run, "nll") for run in long.loc[at, "run"])
    assert len(expected) == 2 and failed == expected
    page = markdown(rows, {"this": "a", "other": "b", "other_file": str(other),
                           "command_extra": ""})
    assert f"2 of {len(rows)} metrics differ beyond their errors" in page
    assert all(f"nll [{run}]" in page for run, _ in expected)
    with pytest.raises(FileNotFoundError, match="no such runs.csv"):
        against(root, root / "params.yaml", tmp_path / "missing.csv")


def test_bits_per_dim_carries_the_nll_error_scaled(committed):
    """bits/dim is the NLL divided by D ln 2, so its standard error is the NLL's, scaled
    alike: a bits/dim difference worth one NLL standard error is inside the errors, as the NLL
    difference it comes from is (before, bits/dim had no error and failed on float noise)."""
    import math

    from vaebench.report.aggregate import METRICS

    _, runs, long = committed
    m = next(r.metrics for r in runs if r.metrics.bits_per_dim is not None)
    value, se = METRICS["bits_per_dim"](m)
    assert se == pytest.approx(m.nll.se / (m.dim * math.log(2)), rel=1e-12)
    shifted = m.model_copy(update={"bits_per_dim": value + se})
    alone = long[~((long["cell"] == m.cell) & (long["metric"] == "bits_per_dim")
                   & (long["run"] != m.run))]  # no spread over seeds to hide behind
    row = {r.metric: r for r in compare(alone, {m.run: shifted})}["bits_per_dim"]
    assert row.passed and abs(row.z) == pytest.approx(1 / math.sqrt(2), rel=1e-6)


def test_the_spread_over_seeds_is_pooled_over_both_studies():
    """s_seeds^2 = (SS_a + SS_b) / (df_a + df_b), each study about its own mean: for seeds
    (1, 2, 3) and (2, 4, 6), (2 + 8) / 4 = 2.5; a lone run adds no degree of freedom."""
    import pandas as pd

    a = pd.DataFrame({"run": ["c/s0", "c/s1", "c/s2"], "cell": "c", "metric": "nll",
                      "value": [1.0, 2.0, 3.0], "se": 0.0})
    b = a.assign(value=[2.0, 4.0, 6.0])
    assert pooled_seed_variance(a, b)[("c", "nll")] == pytest.approx(2.5, rel=1e-15)
    assert pooled_seed_variance(a, b.iloc[:1])[("c", "nll")] == pytest.approx(1.0, rel=1e-15)
    assert pooled_seed_variance(a.iloc[:1])[("c", "nll")] == 0.0


def test_the_rule_is_symmetric_and_counts_two_seeds_spread(committed):
    """A against B gives -z of B against A (the spread is pooled, not the other study's
    alone), and a difference of one seed's worth, sqrt(2) s_seeds, is z = 1 when the
    within-run errors vanish: at worst a change of hardware is a change of seed."""
    import numpy as np

    _, _, long = committed
    rng = np.random.default_rng(0)
    other = long.assign(value=long["value"] + rng.normal(0, 1e-3, len(long))
                        * long["value"].abs().clip(lower=1))
    ab = {(r.run, r.metric): r.z for r in compare(long, other)}
    ba = {(r.run, r.metric): r.z for r in compare(other, long)}
    assert ab.keys() == ba.keys() and any(z != 0 for z in ab.values())
    assert all(ab[k] == pytest.approx(-ba[k], rel=1e-12, abs=1e-12) for k in ab)
    nll = long[long["metric"] == "nll"].assign(se=0.0)
    cell = nll["cell"].iloc[0]
    runs = nll[nll["cell"] == cell]
    s = float(runs["value"].std(ddof=1))
    moved = runs.assign(value=runs["value"] + (2 ** 0.5) * s)  # every seed moved alike
    rows = compare(runs, moved)
    assert all(r.z == pytest.approx(1.0, rel=1e-9) for r in rows)
    assert len(long_of({})) == 0


def _made_by(page) -> list[str]:
    """The `vaebench verify ...` arguments a cross_machine page says made it."""
    import re
    import shlex

    command = re.search(r"Made by `vaebench verify (.+?)` \(", page.read_text()).group(1)
    return shlex.split(command)


def test_every_cross_machine_page_is_what_its_command_makes_of_the_kept_files(tmp_path,
                                                                               monkeypatch):
    """Each page of reports/cross_machine/ that compares two committed files is what its own
    'Made by' command writes today: a page cannot outlive the runs.csv it was made from (a
    page made from `--this reports/runs.csv` must be remade, or pointed at a kept copy, when
    the study's numbers move). Pages made from a machine's runs/ folder name no file to
    recompute from and are left out."""
    from pathlib import Path

    from typer.testing import CliRunner

    from vaebench.cli import app

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)  # the commands name files relative to the project
    pages = sorted((root / "reports" / "cross_machine").glob("*.md"))
    checked = 0
    for page in pages:
        args = _made_by(page)
        if "--this" not in args:
            continue
        out = tmp_path / page.name
        result = CliRunner().invoke(app, ["verify", *args, "--out", str(out)],
                                    catch_exceptions=False)
        assert out.is_file(), (page.name, result.output[-500:])
        assert out.read_text() == page.read_text(), f"{page.name} is stale: rerun its command"
        checked += 1
    assert checked >= 4

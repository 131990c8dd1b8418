"""DVC plots: the training curves and rate-distortion points of every run, as `dvc plots show`,
`dvc plots diff` and `dvc exp show` read them from the project's dvc.yaml and templates."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vaebench.cells import Cell, cells
from vaebench.config import load_params
from vaebench.plots import QUANTITIES, RatePoint, RunCurves, curve_frames, write_plots

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("dvc")


def history(seed: int, epochs: int, rng: np.random.Generator) -> list[dict[str, float]]:
    """Random per-epoch terms with ELBO = recon - KL exactly, as the trainer logs them."""
    rows = []
    for epoch in range(1, epochs + 1):
        row: dict[str, float] = {"epoch": epoch, "seconds": 0.1 * epoch}
        for split in ("train", "val"):
            recon, kl = -float(rng.uniform(5, 30)), float(rng.uniform(0.5, 8))
            row |= {f"{split}_recon": recon, f"{split}_kl": kl, f"{split}_elbo": recon - kl}
        rows.append(row)
    return rows


def test_curves_carry_every_epoch_split_and_seed():
    rng = np.random.default_rng(0)
    runs = [RunCurves(Cell("vae", "digits", s), history(s, 3, rng)) for s in (0, 2)]
    frames = curve_frames(runs)
    assert sorted(frames) == sorted((q, "vae-digits") for q in QUANTITIES)
    elbo = frames["elbo", "vae-digits"]
    assert len(elbo) == 2 * 3 * 2  # seeds x epochs x splits
    for run in runs:
        for row in run.history:
            for split in ("train", "val"):
                got = elbo[(elbo.seed == run.cell.seed) & (elbo.epoch == row["epoch"])
                           & (elbo.split == split)]
                assert got["elbo"].tolist() == [row[f"{split}_elbo"]]
                assert got["series"].tolist() == [f"seed{run.cell.seed} {split}"]


def test_rate_distortion_point_is_kl_and_minus_recon():
    p = RatePoint.of(Cell("vae", "digits", 1), kl=3.25, recon=-20.5)
    assert (p.rate, p.distortion) == (3.25, 20.5)
    with pytest.raises(ValueError, match=r"run 'vae-digits/seed1': history row 0 has no "
                                         r"'val_kl' \(has epoch, train_elbo"):
        curve_frames([RunCurves(p.cell, [{"epoch": 1, "train_elbo": -1.0, "train_recon": -1.0,
                                           "train_kl": 0.0, "val_elbo": -1.0,
                                           "val_recon": -1.0}])])


def dvc(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    out = subprocess.run(["dvc", *args], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, f"dvc {' '.join(args)}: {out.stdout[-2000:]}{out.stderr[-2000:]}"
    return out


def git(args: list[str], cwd: Path) -> None:
    subprocess.run(["git", "-c", "user.email=t@vaebench", "-c", "user.name=t", *args], cwd=cwd,
                   check=True, capture_output=True)


def fake_study(root: Path, seed: int) -> tuple[list[RunCurves], list[RatePoint]]:
    rng = np.random.default_rng(seed)
    runs = cells(load_params(root / "params.yaml"))
    curves = [RunCurves(c, history(c.seed, 3, rng)) for c in runs]
    points = [RatePoint.of(c, kl=float(rng.uniform(1, 9)), recon=-float(rng.uniform(5, 40)))
              for c in runs]
    write_plots(root / "reports" / "plots", curves, points)
    return curves, points


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A git + DVC project with the repository's dvc.yaml, templates and a fake tiny study."""
    root = tmp_path_factory.mktemp("plots")
    git(["init", "-q"], root)
    dvc(["init", "-q"], root)
    shutil.copy(ROOT / "dvc.yaml", root / "dvc.yaml")
    shutil.copy(ROOT / "presets" / "tiny.yaml", root / "params.yaml")
    shutil.copytree(ROOT / ".dvc" / "plots", root / ".dvc" / "plots", dirs_exist_ok=True)
    (root / "reports").mkdir()
    shutil.copy(ROOT / "reports" / "metrics.json", root / "reports" / "metrics.json")
    committed = fake_study(root, 0)
    git(["add", "-A"], root)
    git(["commit", "-qm", "study"], root)
    return root, committed


def charts(out: subprocess.CompletedProcess) -> dict[str, dict]:
    """{plot file: its filled Vega-Lite spec} from `dvc plots show/diff --json`."""
    data = json.loads(out.stdout)["data"]
    return {path: entry[0]["content"] for path, entry in data.items()}


def values(spec: dict, rev: str, field: str) -> dict[tuple, float]:
    return {(r["series"], int(r["epoch"])): float(r[field])
            for r in spec["data"]["values"] if r["rev"] == rev}


def test_plots_show_draws_every_run(project, tmp_path):
    root, (curves, points) = project
    specs = charts(dvc(["plots", "show", "--json"], root))
    names = {c.cell.name for c in curves}
    datasets = {c.cell.dataset for c in curves}
    assert set(specs) == ({f"reports/plots/{q}/{n}.csv" for q in QUANTITIES for n in names}
                          | {f"reports/plots/rate_distortion/{d}.csv" for d in datasets})
    for q in QUANTITIES:
        for name in names:
            spec = specs[f"reports/plots/{q}/{name}.csv"]
            assert spec["encoding"]["x"]["field"] == "epoch"
            assert spec["encoding"]["y"]["field"] == q
            assert spec["encoding"]["color"]["field"] == "series"
            expected = {(f"seed{r.cell.seed} {split}", int(row["epoch"])): row[f"{split}_{q}"]
                        for r in curves if r.cell.name == name for row in r.history
                        for split in ("train", "val")}
            assert values(spec, "workspace", q) == expected
    for dataset in datasets:
        spec = specs[f"reports/plots/rate_distortion/{dataset}.csv"]
        got = {r["run"]: (float(r["rate"]), float(r["distortion"]))
               for r in spec["data"]["values"]}
        assert got == {p.cell.run: (p.rate, p.distortion) for p in points
                       if p.cell.dataset == dataset}
    dvc(["plots", "show", "-o", str(tmp_path / "html")], root)
    page = (tmp_path / "html" / "index.html").read_text()
    assert page.count("vegaEmbed(") == len(specs)
    for r in curves:
        assert f"reports/plots/elbo/{r.cell.name}.csv" in page


def test_plots_diff_compares_revisions(project):
    root, (curves, _) = project
    shutil.copytree(root / "reports" / "plots", root / "committed")
    try:
        new_curves, _ = fake_study(root, 1)  # a rerun with other numbers
        specs = charts(dvc(["plots", "diff", "HEAD", "--json"], root))
    finally:
        shutil.rmtree(root / "reports" / "plots")
        shutil.move(root / "committed", root / "reports" / "plots")
    name = curves[0].cell.name
    spec = specs[f"reports/plots/kl/{name}.csv"]
    assert spec["encoding"]["strokeDash"]["field"] == "rev"

    def expected(runs):
        return {(f"seed{r.cell.seed} {s}", int(row["epoch"])): row[f"{s}_kl"]
                for r in runs if r.cell.name == name for row in r.history for s in ("train", "val")}

    assert values(spec, "HEAD", "kl") == expected(curves)
    assert values(spec, "workspace", "kl") == expected(new_curves)
    assert expected(curves) != expected(new_curves)


def test_exp_show_lists_the_headline_metrics(project):
    root, _ = project
    out = dvc(["exp", "show", "--json"], root)
    shown = json.loads(out.stdout)[0]["data"]["metrics"]["reports/metrics.json"]["data"]
    assert shown == json.loads((ROOT / "reports" / "metrics.json").read_text())
    assert set(shown["cells"]["vae-digits"]) == {"elbo", "nll"}  # mean over seeds
    theory = json.loads((ROOT / "reports" / "theory.json").read_text())["model_checks"]
    assert (shown["model_checks_total"], shown["model_checks_passed"]) == (theory["total"],
                                                                            theory["passed"])

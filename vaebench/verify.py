"""``vaebench verify``: rerun chosen runs of the committed study and compare every metric;
or (``--against``) compare this machine's whole finished study with another machine's.

On the machine that made the study a rerun is bitwise identical. On another machine the GEMM
libraries round differently (MKL's AVX2 path on AMD, AVX-512 on Intel, oneDNN), the training
trajectory drifts, and the claim is agreement within errors: for each metric of ``runs.csv``,

    z = (this - other) / sqrt(se_this^2 + se_other^2 + 2 s_seeds^2)

with the within-run standard errors and s_seeds^2, the variance of that cell over its seeds,
pooled over both studies (each seed about its own study's mean; a rerun of one seed adds no
degree of freedom). A rerun on other hardware is, at worst, like another seed: the two runs
are then two independent draws from the cell's spread over seeds, whose difference has the
variance 2 s_seeds^2. Pooling makes the rule symmetric: A against B gives the |z| of B against
A. Every |z| must stay below the two-sided Bonferroni critical value over all compared metrics
at ``alpha``; integer counts (active units) may move by one unit or 3 s_seeds. Timings are not
compared. A caveat the bound does not cover: s_seeds rests on few seeds (4 degrees of freedom
for two studies of 3), so where it dominates the error, z has heavier tails than the normal.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

from vaebench.cells import Cell, cells
from vaebench.config import load_params
from vaebench.report.aggregate import METRICS
from vaebench.results import TIMING_FIELDS, RunMetrics

DEFAULT_CELLS = ("vae-digits", "linear-linear-gaussian-z4")  # offline data, about a minute
INTEGER_METRICS = ("active_units",)


@dataclass(frozen=True)
class Row:
    run: str
    metric: str
    committed: float
    rerun: float
    scale: float      # the combined error the difference is measured in
    z: float
    passed: bool


def z_bound(alpha: float, n: int) -> float:
    """The two-sided Bonferroni critical value of |z| over ``n`` compared metrics at ``alpha``."""
    return float(norm.isf(alpha / (2 * max(1, n))))


def long_of(runs: dict[str, RunMetrics]) -> pd.DataFrame:
    """``runs`` as the long table's columns ``compare`` reads: run, cell, metric, value, se."""
    rows = [{"run": run, "cell": m.cell, "metric": name, "value": float(got[0]),
             "se": math.nan if got[1] is None else float(got[1])}
            for run, m in runs.items() for name, get in METRICS.items()
            if (got := get(m)) is not None]
    return pd.DataFrame(rows, columns=["run", "cell", "metric", "value", "se"])


def pooled_seed_variance(*studies: pd.DataFrame) -> dict[tuple[str, str], float]:
    """s_seeds^2 per (cell, metric): squared deviations of each study's seeds about that
    study's own mean, summed over ``studies`` and divided by their summed degrees of freedom
    (n - 1 each); 0 where no study has two seeds of the cell."""
    ss: dict[tuple[str, str], float] = {}
    dof: dict[tuple[str, str], int] = {}
    for study in studies:
        for key, values in study.groupby(["cell", "metric"], sort=False)["value"]:
            x = values.to_numpy(dtype=float)
            ss[key] = ss.get(key, 0.0) + float(np.sum((x - x.mean()) ** 2))
            dof[key] = dof.get(key, 0) + len(x) - 1
    return {k: ss[k] / dof[k] if dof[k] > 0 else 0.0 for k in ss}


def compare(other: pd.DataFrame, this: dict[str, RunMetrics] | pd.DataFrame,
            alpha: float = 0.01) -> list[Row]:
    """Every metric of every run of ``this`` (runs, or their long table) against ``other``'s
    long table (``runs.csv``). ``Row.committed`` is the other's value, ``Row.rerun`` this."""
    mine = long_of(this) if isinstance(this, dict) else this
    mine = mine[~mine["metric"].isin(TIMING_FIELDS)]
    var_seeds = pooled_seed_variance(other, mine)
    theirs = other.set_index(["run", "metric"])
    pairs = []
    for r in mine.itertuples(index=False):
        if (r.run, r.metric) not in theirs.index:
            raise ValueError(f"runs.csv has no {r.metric!r} for run {r.run!r}; rerun the report")
        row = theirs.loc[(r.run, r.metric)]
        se_old = 0.0 if pd.isna(row["se"]) else float(row["se"])
        se_new = 0.0 if pd.isna(r.se) else float(r.se)
        pairs.append((r.run, r.metric, float(row["value"]), float(r.value), se_old, se_new,
                      var_seeds.get((r.cell, r.metric), 0.0)))
    z_star = z_bound(alpha, len(pairs))
    out = []
    for run, name, old, new, se_old, se_new, var in pairs:
        diff = new - old
        if name in INTEGER_METRICS:
            scale = max(1.0, 3.0 * math.sqrt(var))
            out.append(Row(run, name, old, new, scale, diff / scale, abs(diff) <= scale))
            continue
        scale = math.sqrt(se_old ** 2 + se_new ** 2 + 2.0 * var)
        z = 0.0 if diff == 0 else (diff / scale if scale > 0 else math.copysign(math.inf, diff))
        out.append(Row(run, name, old, new, scale, z, abs(z) <= z_star))
    return out


def chosen_cells(params, names: Sequence[str], seeds: Sequence[int] | None) -> list[Cell]:
    declared = cells(params)
    known = sorted({c.name for c in declared})
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown cell(s) {', '.join(unknown)}; valid choices: "
                         + ", ".join(known))
    keep = set(seeds) if seeds else {min(params.study.seeds)}
    return [c for c in declared if c.name in names and c.seed in keep]


def rerun(root: Path, params_file: Path, chosen: Sequence[Cell], work: Path) -> dict[str, RunMetrics]:
    """Train and evaluate ``chosen`` from scratch in ``work``, with the project's code and
    params, through the stage entry points (no DVC, no tracking)."""
    for name in ("vaebench", "kernels", "pipelines"):
        shutil.copytree(root / name, work / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "bench"))
    shutil.copy(params_file, work / "params.yaml")
    env = {**os.environ, "PYTHONPATH": str(work), "VAEBENCH_ROOT": str(work),
           "VAEBENCH_NO_TRACK": "1"}

    def stage(*args: str) -> None:
        out = subprocess.run([sys.executable, "-m", *args], cwd=work, env=env,
                             capture_output=True, text=True)
        if out.returncode != 0:
            tail = (out.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise RuntimeError(f"{' '.join(args)} failed: {tail}")

    for dataset in dict.fromkeys(c.dataset for c in chosen):
        stage("pipelines.data", dataset)
    found = {}
    for c in chosen:
        extra = [*(["--beta", str(c.beta)] if c.beta is not None else []),
                 *(["--latent-dim", str(c.latent_dim)] if c.latent_dim is not None else [])]
        for name in ("pipelines.train", "pipelines.evaluate"):
            stage(name, c.model, c.dataset, "--seed", str(c.seed), *extra)
        found[c.run] = RunMetrics.model_validate_json(
            (work / "runs" / c.run / "eval" / "metrics.json").read_text())
    return found


def verify(root: Path, params_file: Path, reports: Path, names: Sequence[str],
           seeds: Sequence[int] | None = None, alpha: float = 0.01) -> list[Row]:
    params = load_params(params_file)
    committed_path = reports / "runs.csv"
    if not committed_path.is_file():
        raise FileNotFoundError(f"{committed_path}: missing; run the study (`dvc repro`) first")
    committed = pd.read_csv(committed_path)
    chosen = chosen_cells(params, names, seeds)
    with tempfile.TemporaryDirectory(prefix="vaebench-verify-") as tmp:
        return compare(committed, rerun(root, params_file, chosen, Path(tmp)), alpha)


def against(root: Path, params_file: Path, other: Path, alpha: float = 0.01,
            this: Path | None = None) -> list[Row]:
    """This machine's finished study (``runs/``, as ``dvc repro`` left it; or ``this``, a
    ``runs.csv`` of it) against another machine's ``runs.csv`` of the same parameters: no
    rerun, every run and every metric."""
    from vaebench.report import read_runs

    for path in (other, this):
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"{path}: no such runs.csv")
    if this is not None:
        return compare(pd.read_csv(other), pd.read_csv(this), alpha)
    params = load_params(params_file)
    mine = {r.cell.run: r.metrics for r in read_runs(root / "runs", cells(params))}
    return compare(pd.read_csv(other), mine, alpha)


def markdown(rows: Sequence[Row], header: dict[str, str], alpha: float = 0.01,
             worst: int = 15) -> str:
    """The comparison as a page: ``header`` (what was compared with what), the verdict, and
    the ``worst`` metrics by |z| (``vaebench/templates/verify.md.j2``)."""
    from vaebench.markdown import render

    ranked = sorted(rows, key=lambda r: -abs(r.z))
    return render(
        "verify.md.j2", header=header, rows=ranked[:worst], n=len(rows), runs=len({r.run for r in rows}),
        failed=[r for r in rows if not r.passed],
        identical=sum(r.rerun == r.committed for r in rows),
        alpha=alpha, z_star=z_bound(alpha, len(rows)))


def table(rows: Sequence[Row]) -> str:
    lines = [f"{'run':38s} {'metric':20s} {'committed':>12s} {'rerun':>12s} {'error':>9s} "
             f"{'z':>7s}  verdict"]
    for r in rows:
        same = "identical" if r.rerun == r.committed else ("ok" if r.passed else "MISMATCH")
        lines.append(f"{r.run:38s} {r.metric:20s} {r.committed:12.5f} {r.rerun:12.5f} "
                     f"{r.scale:9.4f} {r.z:7.2f}  {same}")
    return "\n".join(lines)

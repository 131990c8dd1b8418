"""Each cell's metrics over its seeds: the mean, a 95% interval, and the within-run error.

A cell is trained once per seed. Its number is the mean over the S seeds with a Student-t
95% confidence interval over seeds (mean +- t_{0.975, S-1} s / sqrt(S)): training
variability, the spread that decides whether two cells differ. Beside it stands the typical
within-run standard error (test-point sampling or Monte Carlo), the error a single run quotes.
With one seed the interval is undefined and shown as such.

``METRICS`` is the one list of what is aggregated, each read from the typed ``RunMetrics``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pandas as pd

from vaebench.report.runs import RunData
from vaebench.results import RunMetrics
from vaebench.stats import finite, t_interval

Value = tuple[float, float | None] | None  # (value, within-run SE) or absent


def _opt(est) -> Value:
    return None if est is None else (est.mean, est.se)


def _dis(name: str) -> Callable[[RunMetrics], Value]:
    return lambda m: None if m.disentanglement is None else (
        getattr(m.disentanglement, name), None)


METRICS: dict[str, Callable[[RunMetrics], Value]] = {
    "elbo": lambda m: (m.elbo.mean, m.elbo.se),
    "recon": lambda m: (m.recon.mean, m.recon.se),
    "kl": lambda m: (m.kl.mean, m.kl.se),
    "nll": lambda m: (m.nll.mean, m.nll.se),
    "nll_conditional": lambda m: _opt(m.nll_conditional),
    # NLL (discretized) / (D ln 2): the NLL's standard error, scaled alike
    "bits_per_dim": lambda m: None if m.bits_per_dim is None else (
        m.bits_per_dim, m.nll.se / (m.dim * math.log(2))),
    "active_units": lambda m: (float(m.active_units), None),
    "mi_lower": lambda m: (m.mi.lower.mean, m.mi.lower.se),
    "mi_upper": lambda m: (m.mi.upper.mean, m.mi.upper.se),
    "tc": lambda m: (m.tc.tc.mean, m.tc.tc.se),
    "dwkl": lambda m: (m.tc.dwkl.mean, m.tc.dwkl.se),
    "mig": _dis("mig"),
    "factor_vae": _dis("factor_vae"),
    "beta_vae_score": _dis("beta_vae"),
    "dci_disentanglement": _dis("dci_disentanglement"),
    "dci_completeness": _dis("dci_completeness"),
    "dci_informativeness": _dis("dci_informativeness"),
    "train_seconds": lambda m: (m.train_seconds, None),
}


def runs_frame(runs: Sequence[RunData]) -> pd.DataFrame:
    """The long table: one row per (run, metric) with the run's value and its within-run SE."""
    rows = []
    for r in runs:
        c = r.cell
        for name, get in METRICS.items():
            got = get(r.metrics)
            if got is None:
                continue
            value, se = got
            rows.append({"run": c.run, "cell": c.name, "model": c.model, "dataset": c.dataset,
                         "group": c.group, "beta": math.nan if c.beta is None else c.beta,
                         "seed": c.seed, "metric": name, "value": float(value),
                         "se": math.nan if se is None else float(se)})
    return pd.DataFrame(rows, columns=["run", "cell", "model", "dataset", "group", "beta",
                                       "seed", "metric", "value", "se"])


def cells_frame(long: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: for each metric the mean over seeds, the 95% half-width over seeds
    (``_ci95``) and the mean within-run SE (``_se_run``), and the number of seeds."""
    rows = []
    for cell, sub in long.groupby("cell", sort=False):
        first = sub.iloc[0]
        row = {"cell": cell, "model": first["model"], "dataset": first["dataset"],
               "group": first["group"], "beta": first["beta"],
               "n_seeds": int(sub["seed"].nunique())}
        for metric, m in sub.groupby("metric", sort=False):
            mean, _, half, _ = t_interval(finite(m["value"].tolist()))
            row[metric] = mean
            row[f"{metric}_ci95"] = half
            row[f"{metric}_se_run"] = float(m["se"].mean()) if m["se"].notna().any() else math.nan
        rows.append(row)
    return pd.DataFrame(rows)

"""The report's tables as formatted rows: pure functions of the aggregated study.

Every table is a ``Table`` of strings (the template lays it out); every number carries its
error: a cell's mean over seeds with its 95% interval over seeds (``±``), the within-run
standard error beside it where a single run quotes one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from vaebench.gradient_results import GradientStudyResult, interval_text
from vaebench.report.compare import Comparison
from vaebench.report.runs import RunData, cell_label
from vaebench.theory.records import BUG_CLASSES, CheckRecord


@dataclass
class Table:
    """An HTML table: header cells, body rows of already formatted strings, row classes."""

    columns: list[str]
    rows: list[list[str]]
    classes: list[str] = field(default_factory=list)


def fmt(v: Any, digits: int = 2) -> str:
    """A number for a table cell: ``digits`` decimals, '—' for missing, ints as ints."""
    if v is None or isinstance(v, str):
        return "—" if v in (None, "") else v
    if isinstance(v, bool):
        return "yes" if v else "no"
    x = float(v)
    if math.isnan(x):
        return "—"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if isinstance(v, int | np.integer):
        return str(int(x))
    if x != 0 and (abs(x) < 10 ** -digits or abs(x) >= 1e6):
        return f"{x:.{digits}e}"
    return f"{x:.{digits}f}"


def pm(v: Any, err: Any, digits: int = 2) -> str:
    """``v ± err``, or ``v`` alone when the error is missing."""
    e = float("nan") if err is None else float(err)
    return fmt(v, digits) if math.isnan(e) else f"{fmt(v, digits)} ± {fmt(e, digits)}"


def _cell(row: pd.Series, metric: str, digits: int = 2) -> str:
    """Mean over seeds ± 95% interval over seeds, for one metric of an aggregated cell."""
    if metric not in row or pd.isna(row[metric]):
        return "—"
    return pm(row[metric], row.get(f"{metric}_ci95"), digits)


def _se_run(row: pd.Series, metric: str, digits: int = 2) -> str:
    return fmt(row.get(f"{metric}_se_run", math.nan), digits)


def summary_table(cells: pd.DataFrame, nll_protocol: dict[str, str]) -> Table:
    cols = ["cell", "seeds", "ELBO", "(s.e. in a run)", "recon E log p(x|z)", "KL", "NLL",
            "(s.e. in a run)", "NLL protocol", "−log p(x|c) (conditional)", "bits/dim",
            "active units", "I_q(x;z) lower", "I_q(x;z) upper", "train s"]
    rows = []
    for _, r in cells.iterrows():
        rows.append([r["cell"], str(int(r["n_seeds"])), _cell(r, "elbo"), _se_run(r, "elbo"),
                     _cell(r, "recon"), _cell(r, "kl"), _cell(r, "nll"), _se_run(r, "nll"),
                     nll_protocol.get(r["cell"], ""), _cell(r, "nll_conditional"),
                     _cell(r, "bits_per_dim", 3), _cell(r, "active_units", 1),
                     _cell(r, "mi_lower"), _cell(r, "mi_upper"), _cell(r, "train_seconds", 1)])
    return Table(cols, rows)


def comparisons_table(comparisons: Sequence[Comparison]) -> Table:
    cols = ["dataset", "A vs B", "metric", "per seed: mean A − B (paired s.e.)", "A − B",
            "95% interval", "points", "Holm p", "verdict", "claim from the literature",
            "holds here?"]
    rows, classes = [], []
    for c in comparisons:
        seeds = "; ".join(f"s{s}: {pm(m, e)}" for s, m, e in c.per_seed)
        rows.append([c.dataset, f"{c.a} vs {c.b}", c.metric, seeds, fmt(c.diff),
                     f"[{fmt(c.lo)}, {fmt(c.hi)}]", str(c.n_points or "—"), fmt(c.p_holm, 3),
                     c.verdict, c.claim, c.claim_holds])
        classes.append("sig" if c.verdict.endswith("better") else "")
    return Table(cols, rows, classes)


def check_summary(checks: Sequence[CheckRecord]) -> Table:
    """One row per check name: runs passing, largest |z|, the bug classes it can catch."""
    names = list(dict.fromkeys(c.name for c in checks))
    rows, classes = [], []
    for name in names:
        group = [c for c in checks if c.name == name]
        zs = [abs(c.z) for c in group if c.z is not None and math.isfinite(c.z)]
        failed = [c.run for c in group if not c.passed]
        catches = sorted({b for c in group for b in c.catches})
        rows.append([name, ", ".join(sorted({c.kind for c in group})),
                     f"{len(group) - len(failed)} / {len(group)}", fmt(max(zs)) if zs else "—",
                     ", ".join(BUG_CLASSES[b] for b in catches) or "—", ", ".join(failed)])
        classes.append("fail" if failed else "pass")
    return Table(["check", "kind", "runs passing", "largest |z|", "catches", "failing runs"],
                 rows, classes)


def check_details(checks: Sequence[CheckRecord]) -> Table:
    cols = ["check", "run", "kind", "empirical", "theoretical", "std. error", "tolerance", "z",
            "p", "verdict", "detail"]
    order = sorted(range(len(checks)), key=lambda i: bool(checks[i].passed))
    rows, classes = [], []
    for i in order:
        c = checks[i]
        rows.append([c.name, c.run, c.kind, fmt(c.empirical, 4), fmt(c.theoretical, 4),
                     fmt(c.stderr, 4), fmt(c.tolerance, 4), fmt(c.z, 2), fmt(c.p, 3),
                     "pass" if c.passed else "FAIL", c.detail.split(" [Holm")[0]])
        classes.append("pass" if c.passed else "fail")
    return Table(cols, rows, classes)


def planted_bugs_table(doc: dict | None) -> Table:
    """Bug class -> the check (or test) that caught it, from reports/planted_bugs.json."""
    cols = ["bug class", "planted as", "caught by", "caught?"]
    rows, classes = [], []
    for item in (doc or {}).get("bugs", []):
        rows.append([BUG_CLASSES.get(item["class"], item["class"]), item["patch"],
                     ", ".join(item.get("caught_by", [])) or "—",
                     "yes" if item.get("caught") else "NO"])
        classes.append("pass" if item.get("caught") else "fail")
    return Table(cols, rows, classes)


def gradients_table(doc: GradientStudyResult | None) -> Table:
    """Variance of the encoder's minibatch gradient, score function against reparameterization,
    per beta and Adam step, from reports/gradients/gradients.json."""
    cols = ["β", "Adam step", "train ELBO", "Var reparam", "score fn / reparam [95% CI]",
            "score fn + LOO / reparam [95% CI]"]
    rows = []
    for run, ck in (doc.cells() if doc else []):
        g = ck.group()
        rows.append([f"{run.beta:g}", str(ck.step), fmt(ck.elbo),
                     f"{g.variance['reparameterization'][0]:.3g}",
                     interval_text(g.ratio["score_function"]),
                     interval_text(g.ratio["score_function_loo"])])
    return Table(cols, rows)


def collapse_table(cells: pd.DataFrame, runs: Sequence[RunData]) -> Table:
    """Active units, KL and I_q(x; z) bracketed beside its log N ceiling, per cell."""
    cols = ["cell", "active units", "KL total", "I_q lower (≤ log N)", "I_q upper", "log N",
            "saturated runs"]
    rows = []
    for _, r in cells.iterrows():
        mine = [x for x in runs if x.cell.name == r["cell"]]
        cap = mine[0].metrics.mi.cap if mine else math.nan
        sat = sum(x.metrics.mi.saturated for x in mine)
        latent = mine[0].metrics.latent_dim if mine else "?"
        rows.append([r["cell"], f"{_cell(r, 'active_units', 1)} / {latent}", _cell(r, "kl"),
                     _cell(r, "mi_lower"), _cell(r, "mi_upper"), fmt(cap),
                     f"{sat} / {len(mine)}" + (" (a floor, not an estimate)" if sat else "")])
    return Table(cols, rows)


DISENTANGLEMENT = ("mig", "factor_vae", "beta_vae_score", "dci_disentanglement",
                   "dci_completeness", "dci_informativeness")


def disentanglement_table(cells: pd.DataFrame, runs: Sequence[RunData]) -> Table:
    cols = ["cell", "MIG", "FactorVAE score", "β-VAE score", "DCI disentanglement",
            "DCI completeness", "DCI informativeness", "note"]
    rows = []
    for _, r in cells.iterrows():
        if pd.isna(r.get("mig", math.nan)):
            continue
        mine = [x for x in runs if x.cell.name == r["cell"] and x.metrics.disentanglement]
        cond = mine[0].metrics.disentanglement.conditioned_on if mine else None
        note = (f"conditioned on {cond} (its label): scores for {cond} are not learned"
                if cond else "")
        rows.append([r["cell"], *(_cell(r, m, 3) for m in DISENTANGLEMENT), note])
    return Table(cols, rows)


def linear_table(runs: Sequence[RunData]) -> Table:
    """Each linear run against its closed forms (Tipping & Bishop 1999; Lucas et al. 2019)."""
    cols = ["run", "β", "ELBO (MC)", "ELBO (closed form)", "log p(x) exact", "KL(q ‖ p(z|x))",
            "train ELBO", "L*/N (pPCA)", "σ² / σ²*", "rate: ours / closed form",
            "distortion: ours / closed form", "active: ours / closed form", "subspace sim."]
    rows = []
    for r in runs:
        m, lin = r.metrics, r.metrics.linear
        if lin is None:
            continue
        rows.append([r.cell.run, fmt(m.beta if m.beta is not None else 1.0),
                     pm(m.elbo.mean, m.elbo.se, 3), fmt(lin.elbo_analytic, 3),
                     fmt(lin.log_px_exact, 3), fmt(lin.kl_to_posterior, 4),
                     fmt(lin.elbo_train, 3), fmt(lin.ppca_max_loglik, 3),
                     f"{fmt(lin.sigma2, 4)} / {fmt(lin.optimum_sigma2, 4)}",
                     f"{pm(m.kl.mean, m.kl.se, 3)} / {fmt(lin.optimum_rate, 3)}",
                     f"{pm(-m.recon.mean, m.recon.se, 3)} / {fmt(lin.optimum_distortion, 3)}",
                     f"{m.active_units} / {lin.optimum_active}",
                     fmt(lin.subspace_similarity, 4)])
    return Table(cols, rows)


def runs_table(runs: Sequence[RunData]) -> Table:
    """Every run, seed by seed: the long table behind the cell means."""
    cols = ["run", "label", "ELBO", "KL", "NLL (k, points)", "active units", "epochs",
            "train s", "evaluate s"]
    rows = []
    for r in runs:
        m = r.metrics
        rows.append([r.cell.run, cell_label(r.cell), pm(m.elbo.mean, m.elbo.se),
                     pm(m.kl.mean, m.kl.se), f"{pm(m.nll.mean, m.nll.se)} ({m.nll_k}, "
                     f"{m.nll_points})", f"{m.active_units} / {m.latent_dim}", str(m.epochs),
                     fmt(m.train_seconds, 1), fmt(r.eval_seconds, 1)])
    return Table(cols, rows)

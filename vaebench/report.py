"""The report stage's logic: the summary table, the theory verdicts, the figures and one HTML page.

Inputs are what the evaluate and train stages wrote for every declared run
(``eval/metrics.json``, ``eval/checks.json``, ``train/train.json``); ``pipelines/report.py``
reads them into ``RunData`` and writes what these functions return. ``make_figures`` is the one
function that writes, into the folder it is given.

Conventions, stated on the page: nats per data point (per image); every NLL names its k and its
number of test points; published numbers stand beside ours with their source and protocol.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vaebench.config import Cell, Params, cells

PICTURES = ("samples", "reconstructions", "traversals", "factor_traversals")
DPI = 90

SUMMARY_COLUMNS = (
    "run", "model", "dataset", "group", "beta", "likelihood", "preprocessing",
    "test_preprocessing", "latent_dim", "epochs", "train_seconds", "elbo", "elbo_se", "recon",
    "recon_se", "kl", "kl_se", "nll", "nll_se", "nll_k", "nll_points", "bits_per_dim",
    "active_units", "mi", "mi_se", "mi_max", "true_model_log_px", "data_entropy",
)
INT_COLUMNS = ("latent_dim", "epochs", "nll_k", "nll_points", "active_units")
DISENTANGLEMENT_COLUMNS = (
    "mig", "factor_vae_score", "beta_vae_score", "dci_disentanglement", "dci_completeness",
    "dci_informativeness",
)

# Exemplar VAE (S. Norouzi, D. J. Fleet, M. Norouzi, NeurIPS 2020), Table 1.
EXEMPLAR_VAE_FASHION = {
    "nll": 228.70, "se": 0.15,
    "source": "Exemplar VAE (Norouzi, Fleet & Norouzi, NeurIPS 2020), Table 1",
    "protocol": "dynamic binarization in training, the 10,000-image test set binarized once; "
                "VAE with a Gaussian prior, 2×300 gated MLP, z = 40; NLL with 5000 importance "
                "samples",
}
# Burda, Grosse & Salakhutdinov (ICLR 2016), Table 1: one stochastic layer, dynamically binarized
# MNIST. k is the number of samples in the *training* objective; every NLL is -L_5000 on the test
# set. (model, training k, test NLL in nats, active units where the table gives them.)
BURDA_TABLE1: tuple[tuple[str, int, float, int | None], ...] = (
    ("VAE", 1, 86.76, 19), ("VAE", 5, 86.47, None), ("VAE", 50, 86.35, None),
    ("IWAE", 1, 86.76, 19), ("IWAE", 5, 85.54, None), ("IWAE", 50, 84.78, 25),
)
BURDA_SOURCE = "Burda, Grosse & Salakhutdinov, Importance Weighted Autoencoders (ICLR 2016), Table 1"


def cell_label(cell: Cell) -> str:
    """A run's label in tables and legends: the model, with beta for the sweep's runs."""
    return cell.model if cell.beta is None else f"{cell.model} β={cell.beta:g}"


@dataclass
class RunData:
    """What the train and evaluate stages wrote for one run."""

    cell: Cell
    metrics: dict[str, Any]
    records: list[dict[str, Any]]
    train: dict[str, Any]
    pictures: dict[str, Path] = field(default_factory=dict)  # name -> PNG written by evaluate


@dataclass
class Theory:
    """Finalized agreement checks with the Bonferroni constants they were judged by."""

    checks: list[dict[str, Any]]
    alpha: float
    m: int        # number of statistical checks the correction runs over
    z_star: float  # two-sided Bonferroni critical value z_{1 - alpha / (2 m)}

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [c for c in self.checks if not c["passed"]]

    @property
    def n_passed(self) -> int:
        return len(self.checks) - len(self.failed)


def declared_runs(params: Params) -> list[Cell]:
    """Every run the study declares (``config.cells``)."""
    return cells(params)


# ----------------------------------------------------------------------------- tables (pure)

def _num(value: Any) -> float:
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def iw_ks(metrics: dict[str, Any]) -> list[int]:
    """The k of every importance-weighted bound L_k in a metrics dict, ascending."""
    return sorted(int(key[2:]) for key in metrics if key.startswith("L_") and key[2:].isdigit())


def summary_frame(runs: Sequence[RunData]) -> pd.DataFrame:
    """One row per run: SUMMARY_COLUMNS, then L_k and L_k_se for every k any run reports."""
    ks = sorted({k for r in runs for k in iw_ks(r.metrics)})
    rows = []
    for r in runs:
        m, c = r.metrics, r.cell
        row: dict[str, Any] = {"run": c.run, "model": c.model, "dataset": c.dataset,
                               "group": c.group,
                               "beta": math.nan if c.beta is None else c.beta}
        for col in SUMMARY_COLUMNS[5:]:
            v = m.get(col)
            row[col] = v if isinstance(v, str) else _num(v)
        for k in ks:
            row[f"L_{k}"] = _num(m.get(f"L_{k}"))
            row[f"L_{k}_se"] = _num(m.get(f"L_{k}_se"))
        rows.append(row)
    columns = [*SUMMARY_COLUMNS, *[f"L_{k}{s}" for k in ks for s in ("", "_se")]]
    df = pd.DataFrame(rows, columns=columns)
    return df.astype({c: "Int64" for c in INT_COLUMNS})


def history_frame(runs: Sequence[RunData]) -> pd.DataFrame:
    """Validation ELBO per epoch, long format: run, label, model, dataset, epoch, val_elbo."""
    rows = []
    for r in runs:
        for h in r.train.get("history", []):
            if "val_elbo" in h and "epoch" in h:
                rows.append({"run": r.cell.run, "label": cell_label(r.cell), "model": r.cell.model,
                             "dataset": r.cell.dataset, "epoch": int(h["epoch"]),
                             "val_elbo": _num(h["val_elbo"])})
    return pd.DataFrame(rows, columns=["run", "label", "model", "dataset", "epoch", "val_elbo"])


def kl_dims_frame(runs: Sequence[RunData]) -> pd.DataFrame:
    """KL(q(z_j|x) || p(z_j)) averaged over the test set, sorted descending within each run."""
    rows = []
    for r in runs:
        kl = sorted((_num(v) for v in r.metrics.get("kl_per_dim", [])), reverse=True)
        for rank, v in enumerate(kl, start=1):
            rows.append({"run": r.cell.run, "label": cell_label(r.cell), "model": r.cell.model,
                         "dataset": r.cell.dataset, "rank": rank, "kl": v})
    return pd.DataFrame(rows, columns=["run", "label", "model", "dataset", "rank", "kl"])


def disentanglement_frame(runs: Sequence[RunData]) -> pd.DataFrame:
    """Runs with ground-truth factors: MIG, FactorVAE, beta-VAE score, DCI, factor -> latent."""
    rows = []
    for r in runs:
        m = r.metrics
        if "mig" not in m:
            continue
        dims = m.get("factor_dims") or {}
        rows.append({"run": r.cell.run, "model": r.cell.model, "dataset": r.cell.dataset,
                     **{c: _num(m.get(c)) for c in DISENTANGLEMENT_COLUMNS},
                     "active_units": _num(m.get("active_units")),
                     "latent_dim": _num(m.get("latent_dim")),
                     "factor_dims": ", ".join(f"{f}→z{j}" for f, j in dims.items()),
                     "mig_variant": m.get("mig_variant", "")})
    return pd.DataFrame(rows, columns=["run", "model", "dataset", *DISENTANGLEMENT_COLUMNS,
                                       "active_units", "latent_dim", "factor_dims",
                                       "mig_variant"])


def markdown_table(df: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub-flavoured markdown table of a DataFrame, floats to ``digits`` decimals."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "—" if math.isnan(v) else f"{v:.{digits}f}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(map(str, df.columns)) + " |",
             "|" + "|".join("---" for _ in df.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |"
              for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def sweep_records(runs: Sequence[RunData]) -> tuple[list[dict[str, Any]], str]:
    """Cross-run checks of the beta sweep (Alemi et al. 2018) and a sentence on what was run.

    Rate non-increasing in beta, I_q(x; z) <= R and H - D <= I per run, from each run's test
    metrics (R = kl, D = -recon, I = mi, all with their standard errors). H is the exact data
    entropy, ``data_entropy`` in the metrics of some run on the sweep's data set; without it
    the sweep is not checked and the sentence says so.
    """
    from vaebench.theory.checks import beta_sweep_checks

    sweep = [r for r in runs if r.cell.group == "sweep"]
    if len(sweep) < 2:
        return [], "The β sweep has fewer than two runs: no sweep checks."
    dataset = sweep[0].cell.dataset
    entropies = [_num(r.metrics.get("data_entropy")) for r in runs if r.cell.dataset == dataset]
    entropy = next((h for h in entropies if math.isfinite(h)), None)
    if entropy is None:
        return [], (f"No run on {dataset} reports data_entropy (the exact H), so the β-sweep "
                    "checks (rate non-increasing in β, I ≤ R, H − D ≤ I) were not run.")

    records: list[dict[str, Any]] = []
    for seed in sorted({r.cell.seed for r in sweep}):  # the sweep's runs of one seed
        runs_s = [r for r in sweep if r.cell.seed == seed]
        if len(runs_s) < 2:
            continue

        def pairs(key: str, sign: float = 1.0, rs=runs_s) -> list[tuple[float, float]]:
            return [(sign * _num(r.metrics.get(key)), _num(r.metrics.get(f"{key}_se")))
                    for r in rs]

        records += beta_sweep_checks([r.cell.run for r in runs_s],
                                     [float(r.cell.beta) for r in runs_s], pairs("kl"),
                                     pairs("recon", -1.0), pairs("mi"), entropy,
                                     mi_source="mixture lower bound", mi_upper=pairs("mi_upper"))
    return list(records), (
        f"β-sweep checks (Alemi et al. 2018) over {len(sweep)} runs on {dataset}, H = "
        f"{entropy:.4f} nats; I_q(x; z) is bracketed by the test-set mixture lower bound (≤ log N, "
        "for I ≤ R) and the leave-one-out upper bound (for H − D ≤ I).")


def finalize_checks(records: Iterable[dict[str, Any]], alpha: float) -> Theory:
    """Judge raw check records (dicts) with ``theory.checks.finalize``: Bonferroni over the m
    statistical records, z* = Phi^-1(1 - alpha / (2 m)) (reference sheet, agreement tests)."""
    from vaebench.theory.checks import CheckRecord, bonferroni_z, finalize

    raw = []
    for i, rec in enumerate(records):
        try:
            raw.append(CheckRecord.from_any(rec))
        except (TypeError, ValueError) as err:
            where = (f"{rec.get('name', '?')!r} of run {rec.get('run', '?')!r}"
                     if isinstance(rec, dict) else type(rec).__name__)
            raise ValueError(f"check record {i} ({where}): {err}") from None
    m = sum(r.statistical for r in raw)
    done = finalize(raw, alpha=alpha)
    return Theory([r.to_dict() for r in done], alpha, m,
                  bonferroni_z(alpha, m) if m else math.nan)


HEADLINE = ("elbo", "nll")  # per cell in reports/metrics.json, the file `dvc exp show` reads


def headline_metrics(summary: pd.DataFrame, theory: Theory) -> dict[str, Any]:
    """What ``dvc metrics show`` and ``dvc exp show`` print: the check counts and each cell's
    ELBO and NLL, averaged over its seeds (every run's numbers are in reports/summary.csv)."""
    cells: dict[str, dict[str, Any]] = {}
    for run, row in summary.groupby(summary["run"].str.split("/").str[0], sort=False):
        cells[run] = {k: _json_number(float(row[k].mean())) for k in HEADLINE}
    return {"checks_total": len(theory.checks), "checks_passed": theory.n_passed,
            "checks_failed": len(theory.failed), "cells": cells}


TOLERANCE_RULE = (
    "statistical checks (kind equal/le/ge with a stderr): tolerance = z_star * stderr, z_star = "
    "Phi^-1(1 - alpha / (2 m)) Bonferroni over the m statistical checks; deterministic checks "
    "(exact, gap, or le/ge without a stderr) use their own stated tolerance"
)


def theory_document(theory: Theory) -> dict[str, Any]:
    """The content of reports/theory.json (non-finite numbers written as null)."""
    return {"alpha": theory.alpha, "m": theory.m, "z_star": _json_number(theory.z_star),
            "rule": TOLERANCE_RULE,
            "checks_total": len(theory.checks), "checks_passed": theory.n_passed,
            "checks_failed": len(theory.failed),
            "failed": check_names(theory.failed),
            "checks": [_json_clean(c) for c in theory.checks]}


def check_names(checks: Iterable[dict[str, Any]]) -> list[str]:
    return [f"{c['name']} [{c['run']}]" for c in checks]


def failure_line(theory: Theory) -> str | None:
    """One line naming every failed check, or None when all pass."""
    failed = theory.failed
    if not failed:
        return None
    return (f"{len(failed)} of {len(theory.checks)} theory checks failed: "
            + ", ".join(check_names(failed)))


def _json_number(v: Any) -> Any:
    if v is pd.NA:
        return None
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int | np.integer):
        return int(v)
    if isinstance(v, float | np.floating):
        return float(v) if math.isfinite(v) else None
    return v


def _json_clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _json_clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_clean(v) for v in obj]
    return _json_number(obj)


# ----------------------------------------------------------------------------- figures

def _palette(labels: Sequence[str]) -> dict[str, Any]:
    import seaborn as sns

    colours = sns.color_palette("tab10" if len(labels) <= 10 else "husl", len(labels))
    return dict(zip(labels, colours, strict=True))


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    from vaebench.io import atomic_write

    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=DPI,
                                                   bbox_inches="tight"))
    plt.close(fig)


def make_figures(summary: pd.DataFrame, history: pd.DataFrame, kl_dims: pd.DataFrame,
                 out: Path) -> dict[str, str]:
    """Draw the study's figures into ``out``; return {figure key: file name} for those drawn.

    training_curves: validation ELBO per epoch, one line per run, one facet per dataset.
    kl_per_dim: sorted KL per latent dimension, one line per run, one facet per dataset.
    rate_distortion: R = KL, D = -E log p(x|z) per run (Alemi et al. 2018), ELBO = -(D + R).
    beta_sweep: the sweep's (R, D) curve with standard errors, each point labelled with beta.
    """
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    out.mkdir(parents=True, exist_ok=True)
    labels = list(dict.fromkeys([*history.get("label", []), *kl_dims.get("label", [])]))
    palette = _palette(labels) if labels else {}
    drawn: dict[str, str] = {}
    if not history.empty:
        drawn["training_curves"] = _faceted_lines(
            history, "epoch", "val_elbo", "epoch", "validation ELBO (nats)", palette,
            out / "training_curves.png")
    if not kl_dims.empty:
        drawn["kl_per_dim"] = _faceted_lines(
            kl_dims, "rank", "kl", "latent dimension, sorted by KL",
            "KL(q(z_j|x) ‖ p(z_j)) (nats)", palette, out / "kl_per_dim.png")
    plane = summary[summary["group"] != "sweep"].dropna(subset=["kl", "recon"])
    if not plane.empty:
        drawn["rate_distortion"] = _rate_distortion(plane, out / "rate_distortion.png")
    sweep = summary[summary["group"] == "sweep"].dropna(subset=["kl", "recon"])
    if not sweep.empty:
        entropy = summary.loc[summary["dataset"].isin(sweep["dataset"]), "data_entropy"]
        h = float(entropy.dropna().iloc[0]) if entropy.notna().any() else None
        drawn["beta_sweep"] = _beta_sweep(sweep, h, out / "beta_sweep.png")
    return drawn


def _faceted_lines(df: pd.DataFrame, x: str, y: str, xlabel: str, ylabel: str,
                   palette: dict[str, Any], path: Path) -> str:
    import seaborn as sns
    from matplotlib.ticker import MaxNLocator

    datasets = list(dict.fromkeys(df["dataset"]))
    g = sns.relplot(data=df, x=x, y=y, hue="label", col="dataset", col_order=datasets,
                    col_wrap=min(3, len(datasets)), kind="line", marker="o", markersize=3,
                    palette={k: v for k, v in palette.items() if k in set(df["label"])},
                    height=2.6, aspect=1.2, facet_kws={"sharex": False, "sharey": False})
    g.set_axis_labels(xlabel, ylabel)
    g.set_titles("{col_name}")
    for ax in g.axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if g.legend is not None:
        g.legend.set_title("run")
    _save(g.figure, path)
    return path.name


def _iso_elbo_lines(ax, d_plus_r: np.ndarray) -> None:
    """Dashed lines D + R = c: every point on one line has the same ELBO = -c."""
    from matplotlib.ticker import MaxNLocator

    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    lo, hi = float(np.min(d_plus_r)), float(np.max(d_plus_r))
    levels = MaxNLocator(4).tick_values(lo, hi) if hi > lo else np.array([lo])
    xs = np.array([x0, x1])
    for c in levels:
        ax.plot(xs, c - xs, ls="--", lw=0.6, color="0.6", zorder=0)
        ax.annotate(f"−ELBO={c:g}", (x1, c - x1), fontsize=6, color="0.45",
                    xytext=(-2, 2), textcoords="offset points", ha="right",
                    annotation_clip=True)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)


def _rate_distortion(plane: pd.DataFrame, path: Path) -> str:
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    datasets = list(dict.fromkeys(plane["dataset"]))
    models = list(dict.fromkeys(plane["model"]))
    colours = _palette(models)
    shapes = {d: "osD^vP*X"[i % 8] for i, d in enumerate(datasets)}
    ncol = min(3, len(datasets))
    nrow = math.ceil(len(datasets) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 3.0 * nrow), squeeze=False)
    for ax in axes.flat[len(datasets):]:
        ax.set_visible(False)
    for ax, ds in zip(axes.flat, datasets, strict=False):
        sub = plane[plane["dataset"] == ds]
        rate, dist = sub["kl"].to_numpy(float), -sub["recon"].to_numpy(float)
        ax.errorbar(rate, dist, xerr=sub["kl_se"].fillna(0).to_numpy(float),
                    yerr=sub["recon_se"].fillna(0).to_numpy(float), fmt="none", ecolor="0.55",
                    lw=0.7, zorder=1)
        for r, d, model in zip(rate, dist, sub["model"], strict=True):
            ax.scatter([r], [d], color=colours[model], marker=shapes[ds], s=28, zorder=2,
                       edgecolor="black", linewidth=0.3)
        ax.margins(0.15)
        _iso_elbo_lines(ax, rate + dist)
        ax.set_title(ds)
        ax.set_xlabel("rate R = KL (nats)")
        ax.set_ylabel("distortion D = −E log p(x|z) (nats)")
    handles = [Line2D([], [], ls="", marker="o", color=colours[m], label=m) for m in models]
    handles += [Line2D([], [], ls="", marker=shapes[d], color="0.3", label=d) for d in datasets]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
               fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    return path.name


def _beta_sweep(sweep: pd.DataFrame, entropy: float | None, path: Path) -> str:
    import matplotlib.pyplot as plt

    sweep = sweep.sort_values("beta")
    rate, dist = sweep["kl"].to_numpy(float), -sweep["recon"].to_numpy(float)
    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    ax.errorbar(rate, dist, xerr=sweep["kl_se"].fillna(0).to_numpy(float),
                yerr=sweep["recon_se"].fillna(0).to_numpy(float), fmt="-o", ms=4, capsize=2,
                lw=1, label=f"{sweep['model'].iloc[0]} on {sweep['dataset'].iloc[0]}")
    for r, d, b in zip(rate, dist, sweep["beta"], strict=True):
        ax.annotate(f"β={b:g}", (r, d), xytext=(4, 4), textcoords="offset points", fontsize=7)
    ax.margins(0.15)
    x0, x1 = ax.get_xlim()
    xs = np.array([x0, x1])
    if entropy is not None:
        ax.plot(xs, entropy - xs, color="firebrick", lw=0.9, ls="-",
                label="D + R = H  (H: exact data entropy)")
    ones = sweep[sweep["beta"] == 1.0]
    if not ones.empty:
        c = float(ones["kl"].iloc[0] - ones["recon"].iloc[0])
        ax.plot(xs, c - xs, color="0.5", lw=0.7, ls="--", label="ELBO of β = 1 (D + R const)")
    ax.set_xlim(x0, x1)
    ax.set_xlabel("rate R = KL (nats)")
    ax.set_ylabel("distortion D = −E log p(x|z) (nats)")
    ax.set_title("β sweep: rate–distortion (±1 s.e.)")
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    _save(fig, path)
    return path.name


# ----------------------------------------------------------------------------- HTML

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
    if float(x).is_integer() and abs(x) < 1e6 and isinstance(v, int | np.integer):
        return str(int(x))
    if x != 0 and (abs(x) < 10 ** -digits or abs(x) >= 1e6):
        return f"{x:.{digits}e}"
    return f"{x:.{digits}f}"


def pm(v: Any, se: Any, digits: int = 2) -> str:
    return fmt(v, digits) if _num(se) != _num(se) else f"{fmt(v, digits)} ± {fmt(se, digits)}"


@dataclass
class Table:
    """An HTML table: header cells, body rows of already formatted strings, row classes."""

    columns: list[str]
    rows: list[list[str]]
    classes: list[str] = field(default_factory=list)


def summary_table(summary: pd.DataFrame) -> Table:
    cols = ["run", "model", "dataset", "β", "likelihood", "test set", "z dim", "epochs",
            "train s", "ELBO", "recon E log p(x|z)", "KL", "NLL = −L_k", "k", "points",
            "bits/dim", "active units", "I_q(x;z)"]
    rows = []
    for r in summary.itertuples(index=False):
        rows.append([r.run, r.model, r.dataset, fmt(r.beta, 2) if r.beta == r.beta else "",
                     fmt(r.likelihood), fmt(r.test_preprocessing), fmt(_int(r.latent_dim)),
                     fmt(_int(r.epochs)), fmt(r.train_seconds, 1), pm(r.elbo, r.elbo_se),
                     pm(r.recon, r.recon_se), pm(r.kl, r.kl_se), pm(r.nll, r.nll_se),
                     fmt(_int(r.nll_k)), fmt(_int(r.nll_points)), fmt(r.bits_per_dim, 3),
                     f"{fmt(_int(r.active_units))} / {fmt(_int(r.latent_dim))}",
                     pm(r.mi, r.mi_se)])
    return Table(cols, rows)


def _int(v: Any) -> int | float:
    x = _num(v)
    return int(x) if x == x else math.nan


def theory_table(theory: Theory) -> Table:
    cols = ["check", "run", "kind", "empirical", "theoretical", "std. error", "tolerance", "z",
            "verdict", "detail"]
    order = sorted(range(len(theory.checks)), key=lambda i: bool(theory.checks[i]["passed"]))
    rows, classes = [], []
    for i in order:
        c = theory.checks[i]
        rows.append([str(c.get("name")), str(c.get("run")), str(c.get("kind", "")),
                     fmt(c.get("empirical"), 4), fmt(c.get("theoretical"), 4),
                     fmt(c.get("stderr"), 4), fmt(c.get("tolerance"), 4), fmt(c.get("z"), 2),
                     "pass" if c["passed"] else "FAIL",
                     str(c.get("detail") or "").split(" [z* = ")[0]])
        classes.append("pass" if c["passed"] else "fail")
    return Table(cols, rows, classes)


def theory_by_check(theory: Theory) -> Table:
    """One row per check name: how many runs pass, the largest |z|, the runs that fail."""
    names = list(dict.fromkeys(c["name"] for c in theory.checks))
    rows, classes = [], []
    for name in names:
        group = [c for c in theory.checks if c["name"] == name]
        zs = [abs(c["z"]) for c in group if c.get("z") is not None and not math.isnan(c["z"])]
        failed = [c["run"] for c in group if not c["passed"]]
        rows.append([name, ", ".join(sorted({str(c.get("kind", "")) for c in group})),
                     f"{len(group) - len(failed)} / {len(group)}",
                     fmt(max(zs)) if zs else "—", ", ".join(failed)])
        classes.append("fail" if failed else "pass")
    return Table(["check", "kind", "runs passing", "largest |z|", "failing runs"], rows,
                 classes)


def collapse_table(runs: Sequence[RunData]) -> Table:
    """Active units, KL per dimension and I_q(x; z) beside its log N ceiling, per run."""
    cols = ["run", "active units", "KL total", "KL_j max / median / min", "I_q(x;z)",
            "log N ceiling", "I_q / log N"]
    rows = []
    for r in runs:
        m = r.metrics
        kl = np.array([_num(v) for v in m.get("kl_per_dim", [])], dtype=float)
        spread = (f"{fmt(kl.max())} / {fmt(float(np.median(kl)))} / {fmt(kl.min(), 3)}"
                  if kl.size else "—")
        mi, ceiling = _num(m.get("mi")), _num(m.get("mi_max"))
        rows.append([r.cell.run,
                     f"{fmt(_int(m.get('active_units')))} / {fmt(_int(m.get('latent_dim')))}",
                     pm(m.get("kl"), m.get("kl_se")), spread, pm(mi, m.get("mi_se")),
                     fmt(ceiling), fmt(mi / ceiling if ceiling else math.nan, 2)])
    return Table(cols, rows)


def disentanglement_table(df: pd.DataFrame) -> Table:
    cols = ["run", "MIG", "FactorVAE score", "β-VAE score", "DCI disentanglement",
            "DCI completeness", "DCI informativeness", "active units", "factor → latent"]
    rows = [[r.run, *(fmt(getattr(r, c), 3) for c in DISENTANGLEMENT_COLUMNS),
             f"{fmt(_int(r.active_units))} / {fmt(_int(r.latent_dim))}", r.factor_dims]
            for r in df.itertuples(index=False)]
    return Table(cols, rows)


def linear_table(runs: Sequence[RunData]) -> Table:
    """The linear VAE against closed-form pPCA (Tipping & Bishop 1999; Lucas et al. 2019)."""
    cols = ["run", "ELBO (MC)", "ELBO (closed form)", "log p(x) exact", "KL(q ‖ p(z|x))",
            "train ELBO", "pPCA max log-lik L*/N", "σ² / σ²_ML", "subspace similarity",
            "true model log p(x)"]
    rows = []
    for r in runs:
        m = r.metrics
        if "linear_log_px_exact" not in m:
            continue
        rows.append([r.cell.run, pm(m.get("elbo"), m.get("elbo_se"), 3),
                     fmt(m.get("linear_elbo_analytic"), 3), fmt(m.get("linear_log_px_exact"), 3),
                     fmt(m.get("linear_kl_to_posterior"), 4), fmt(m.get("linear_elbo_train"), 3),
                     fmt(m.get("ppca_ml_loglik_per_point"), 3),
                     f"{fmt(m.get('linear_sigma2'), 4)} / {fmt(m.get('ppca_ml_sigma2'), 4)}",
                     fmt(m.get("subspace_similarity"), 4), fmt(m.get("true_model_log_px"), 3)])
    return Table(cols, rows)


def _architecture(r: RunData) -> str:
    cfg = r.train.get("train_config") or {}
    hidden = cfg.get("hidden")
    arch = cfg.get("arch", "mlp")
    size = "×".join(str(h) for h in hidden) if hidden else "?"
    return f"{arch} {size}, z = {r.metrics.get('latent_dim', cfg.get('latent_dim', '?'))}"


def _protocol(r: RunData) -> str:
    m = r.metrics
    return (f"{m.get('preprocessing', '?')} in training, test set "
            f"{m.get('test_preprocessing', '?')}; {_architecture(r)}, {m.get('epochs', '?')} "
            f"epochs; NLL with k = {m.get('nll_k', '?')} on {m.get('nll_points', '?')} of "
            f"{m.get('n_test', '?')} test points")


def published_nll_table(runs: Sequence[RunData]) -> Table:
    """Our VAE test NLL on Fashion-MNIST beside Exemplar VAE's, with both protocols."""
    cols = ["quantity", "published", "source and protocol", "ours", "our protocol"]
    pub = EXEMPLAR_VAE_FASHION
    ours = next((r for r in runs if r.cell.model == "vae" and r.cell.dataset == "fashion-mnist"
                 and r.cell.beta is None), None)
    if ours is None:
        mine, proto = "not in this study", "—"
    else:
        m = ours.metrics
        mine = f"{pm(m.get('nll'), m.get('nll_se'))} nats ({ours.cell.run})"
        proto = _protocol(ours)
        if m.get("likelihood") != "bernoulli":
            proto += "; a Gaussian decoder, so not comparable to a Bernoulli NLL"
    return Table(cols, [["VAE test NLL, Fashion-MNIST (nats)",
                         f"{pub['nll']:.2f} ± {pub['se']:.2f}",
                         f"{pub['source']}: {pub['protocol']}", mine, proto]])


def _vae_iwae_pairs(runs: Sequence[RunData]) -> list[tuple[str, RunData, RunData]]:
    by = {(r.cell.model, r.cell.dataset): r for r in runs if r.cell.beta is None}
    datasets = list(dict.fromkeys(r.cell.dataset for r in runs))
    return [(d, by[("vae", d)], by[("iwae", d)]) for d in datasets
            if ("vae", d) in by and ("iwae", d) in by]


def _train_k(r: RunData) -> int:
    return int((r.train.get("train_config") or {}).get("k", 1))


def burda_table(runs: Sequence[RunData]) -> Table:
    """Burda et al. Table 1 (MNIST), with our VAE and IWAE where the training k matches."""
    pairs = _vae_iwae_pairs(runs)
    cols = ["model", "training k", "published NLL (−L_5000), MNIST", "published active units"]
    cols += [f"ours on {d}: NLL (−L_k), active units" for d, _, _ in pairs]
    rows = []
    for model, k, nll, au in BURDA_TABLE1:
        row = [model, str(k), f"{nll:.2f}", "—" if au is None else str(au)]
        for _, vae, iwae in pairs:
            ours = vae if model == "VAE" else iwae
            if _train_k(ours) == k:
                m = ours.metrics
                row.append(f"{pm(m.get('nll'), m.get('nll_se'))} (k = {m.get('nll_k')}), "
                           f"{m.get('active_units')} / {m.get('latent_dim')}")
            else:
                row.append("")
        rows.append(row)
    return Table(cols, rows)


def burda_patterns(runs: Sequence[RunData]) -> Table:
    """The qualitative pattern of Burda et al. beside ours: holds or not, with our numbers."""
    cols = ["pattern", "Burda et al. (MNIST)", "dataset", "ours", "holds here?"]
    rows = []
    for d, vae, iwae in _vae_iwae_pairs(runs):
        for r in (vae, iwae):
            ks = iw_ks(r.metrics)
            bounds = [_num(r.metrics[f"L_{k}"]) for k in ks]
            ladder = " ≤ ".join(f"L_{k} = {fmt(b)}" for k, b in zip(ks, bounds, strict=True))
            ok = all(a <= b for a, b in zip(bounds, bounds[1:], strict=False))
            rows.append([f"L_k rises with k ({r.cell.model}, evaluation k)",
                         "Theorem 1: L_1 ≤ L_k ≤ L_{k+1} ≤ log p(x)", d, ladder,
                         "yes" if ok else "no"])
        nv, ni = _num(vae.metrics.get("nll")), _num(iwae.metrics.get("nll"))
        se = math.hypot(_num(vae.metrics.get("nll_se")), _num(iwae.metrics.get("nll_se")))
        rows.append(["IWAE reaches a lower test NLL than the VAE",
                     "85.54 (k = 5), 84.78 (k = 50) vs 86.76", d,
                     f"IWAE (k = {_train_k(iwae)}) {fmt(ni)} vs VAE {fmt(nv)} "
                     f"(difference {fmt(nv - ni)} ± {fmt(se)})", "yes" if ni < nv else "no"])
        av, ai = _int(vae.metrics.get("active_units")), _int(iwae.metrics.get("active_units"))
        rows.append(["IWAE trains more active units", "25 (IWAE, k = 50) vs 19 (VAE)", d,
                     f"{fmt(ai)} (IWAE) vs {fmt(av)} (VAE), of {vae.metrics.get('latent_dim')}",
                     "yes" if ai > av else "no"])
    return Table(cols, rows)


def conventions(params: Params, runs: Sequence[RunData]) -> list[str]:
    """The likelihood conventions of this study, one sentence each, from the runs' metrics."""
    lines = ["All log-likelihoods, ELBOs, KLs and rates are in nats per data point (per image "
             "for image data sets), averaged over the test set; ± is one standard error over "
             "test points."]
    nll = sorted({(r.metrics.get("nll_k"), r.metrics.get("nll_points")) for r in runs},
                 key=str)
    lines.append("NLL = −L_k, the importance-weighted bound (Burda et al. 2016) with " + "; ".join(
        f"k = {k} importance samples on {p} test points" for k, p in nll) + ".")
    decoders: dict[tuple[str, str, str], list[str]] = {}
    for r in runs:
        key = (str(r.metrics.get("likelihood")), str(r.metrics.get("preprocessing")),
               str(r.metrics.get("test_preprocessing")))
        decoders.setdefault(key, [])
        if r.cell.dataset not in decoders[key]:
            decoders[key].append(r.cell.dataset)
    for (lik, train_pre, test_pre), datasets in sorted(decoders.items()):
        where = ", ".join(datasets)
        if train_pre == "none" and test_pre == "none":
            lines.append(f"{lik.capitalize()} decoder on {where}: continuous data, used as "
                         "stored in training and test.")
        else:
            lines.append(f"{lik.capitalize()} decoder on {where}: {train_pre} in training; "
                         f"the test set {test_pre}, the same for every model.")
    lines.append("bits/dim = NLL / (D · ln 2) on image data; Gaussian decoders on 8-bit images "
                 "add D · log 256 to the NLL first (the dequantization correction).")
    lines.append(f"Seeds: study.seeds = {params.study.seeds} for training; the test set is "
                 "binarized/dequantized once with the dataset's own seed, the same for every "
                 "model; each run's Monte Carlo estimates use a seed derived from the run, so a "
                 "rerun gives the same numbers.")
    lines.append("Active unit: Cov_x(E_q[z_u]) > 0.01 (Burda et al. 2016). I_q(x; z) is the "
                 "minibatch-mixture estimate; it cannot exceed log N for N test points.")
    return lines


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>vaebench report: {{ study }}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1250px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: 12.5px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; vertical-align: top; }
th { background: #f2f2f2; text-align: left; }
td { font-variant-numeric: tabular-nums; }
tr.fail td { background: #fbd5d5; font-weight: 600; }
tr.pass td:nth-child(9) { color: #17692c; font-weight: 600; }
td:last-child { font-size: 11.5px; } summary { cursor: pointer; margin: .4em 0; }
.verdict-ok { color: #17692c; font-weight: 600; } .verdict-bad { color: #b00020; font-weight: 600; }
.scroll { overflow-x: auto; }
figure { display: inline-block; margin: .5em 1em .5em 0; vertical-align: top; }
figcaption { font-size: 12px; color: #555; max-width: 520px; }
img { max-width: 100%; border: 1px solid #eee; }
img.pic { width: 260px; image-rendering: pixelated; }
nav a { margin-right: 1em; } .note { color: #555; font-size: 13px; }
</style></head><body>
{% macro table(t) -%}
<div class="scroll"><table>
<thead><tr>{% for c in t.columns %}<th>{{ c }}</th>{% endfor %}</tr></thead>
<tbody>{% for row in t.rows %}<tr{% if t.classes %} class="{{ t.classes[loop.index0] }}"{% endif %}>
{% for v in row %}<td>{{ v }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table></div>
{%- endmacro %}
<h1>vaebench report: study “{{ study }}”</h1>
<p>{{ n_runs }} runs: {{ n_study }} from study.models × study.datasets, {{ n_linear }} linear VAE
runs against closed-form pPCA, {{ n_sweep }} in the β sweep. Theory checks:
<span class="{{ 'verdict-ok' if n_failed == 0 else 'verdict-bad' }}">{{ n_passed }} of
{{ n_checks }} pass</span>.</p>
<nav><a href="#conventions">conventions</a><a href="#summary">summary</a>
<a href="#theory">theory checks</a><a href="#figures">figures</a>
<a href="#collapse">collapse diagnostics</a><a href="#disentanglement">disentanglement</a>
<a href="#linear">linear VAE</a><a href="#published">published numbers</a>
<a href="#pictures">samples</a></nav>

<h2 id="conventions">Conventions</h2>
<ul>{% for line in conventions %}<li>{{ line }}</li>{% endfor %}</ul>

<h2 id="summary">Summary</h2>
<p class="note">Also in <code>summary.csv</code>. recon = E_q log p(x|z) and ELBO = recon − KL on
the whole test set; NLL = −L_k with the k and number of test points shown.</p>
{{ table(summary) }}

<h2 id="theory">Theory checks</h2>
<p>Tolerance rule. A <em>statistical</em> check (kind equal, le or ge, with a standard error se)
computes z = (empirical − theoretical) / se and is judged at z* = Φ⁻¹(1 − α / (2m)) =
<strong>{{ z_star }}</strong>, the Bonferroni-corrected critical value over the m =
<strong>{{ m }}</strong> statistical checks of this report at family-wise α = <strong>{{ alpha
}}</strong>: its tolerance is z* · se (plus a 10⁻⁹ relative floating-point slack); “equal” passes
when |empirical − theoretical| ≤ tolerance, “le” when empirical ≤ theoretical + tolerance, “ge”
when empirical ≥ theoretical − tolerance. A <em>deterministic</em> check uses its own stated
tolerance instead: le/ge the same inequalities, “exact” |empirical − theoretical| ≤ tolerance
(floating point), “gap” 0 ≤ theoretical − empirical ≤ tolerance (an optimization tolerance from
params.yaml). Failed checks are listed first. Also in <code>theory.json</code>.</p>
<p class="note">{{ sweep_note }}</p>
{% if failed_names %}<p class="verdict-bad">Failed: {{ failed_names }}</p>{% endif %}
{{ table(theory_by_check) }}
<details{% if n_failed %} open{% endif %}><summary>All {{ n_checks }} checks, one row per check
and run (the detail column says what each compares and where its standard error comes
from)</summary>
{{ table(theory) }}
</details>

<h2 id="figures">Figures</h2>
{% for f in figures %}<figure><img src="{{ f.src }}" alt="{{ f.alt }}">
<figcaption>{{ f.caption }}</figcaption></figure>
{% else %}<p>No figures: no run has a training history or test metrics.</p>{% endfor %}

<h2 id="collapse">Collapse diagnostics</h2>
<p class="note">A unit is active when Cov_x(E_q[z_u]) &gt; 0.01. KL_j is the test-set mean of
KL(q(z_j|x) ‖ p(z_j)); a collapsed dimension has KL_j ≈ 0 (see the KL-per-dimension figure).
I_q(x; z) ≤ log N, so an estimate near the ceiling means the estimator, not the code, is
saturated.</p>
{{ table(collapse) }}

<h2 id="disentanglement">Disentanglement</h2>
{% if disentanglement.rows %}
<p>The data set is dSprites-LIKE: rendered procedurally on the dSprites factor grid (shape,
scale, orientation, posX, posY), not the original dSprites file; orientation scores are capped
because squares and ellipses are rotation-symmetric. MIG variant: {{ mig_variant }}. Scores are on
the encoder means; “factor → latent” names the latent with the largest correlation ratio to each
factor. Also in <code>figures/disentanglement.md</code>.</p>
{{ table(disentanglement) }}
{% else %}<p>No run in this study has a data set with ground-truth factors.</p>{% endif %}

<h2 id="linear">Linear VAE against probabilistic PCA</h2>
{% if linear.rows %}
<p class="note">Closed forms (Tipping &amp; Bishop 1999; Lucas et al. 2019): the linear VAE's ELBO
equals log p(x) − KL(q ‖ p(z|x)); at the optimum it reaches the pPCA maximum L*/N and its decoder
spans the top principal subspace (similarity 1).</p>
{{ table(linear) }}
{% else %}<p>No linear VAE run in this study.</p>{% endif %}

<h2 id="published">Published numbers</h2>
<p>Our numbers beside published ones. They are not expected to match: the protocols differ as
stated in each row.</p>
{{ table(published_nll) }}
<h3>Burda et al. 2016, Table 1 — on MNIST, not Fashion-MNIST</h3>
<p class="note">{{ burda_source }}. One stochastic layer, dynamically binarized MNIST. The table's
k is the number of samples in the training objective (k = 1 makes IWAE a VAE); every published
NLL is −L_5000 on the test set. Our runs use a different architecture, data set and far fewer
epochs, and evaluate with the k shown; only the qualitative pattern is comparable.</p>
{% if burda.columns|length > 4 %}{{ table(burda) }}{{ table(patterns) }}
{% else %}{{ table(burda) }}<p>This study has no VAE and IWAE pair on one data set.</p>{% endif %}

<h2 id="pictures">Samples, reconstructions and traversals</h2>
{% for run, pics in pictures %}<h3>{{ run }}</h3>
{% for p in pics %}<figure><img class="pic" src="{{ p.src }}" alt="{{ p.alt }}" loading="lazy">
<figcaption>{{ p.caption }}</figcaption></figure>{% endfor %}
{% else %}<p>No run in this study is on images.</p>{% endfor %}
</body></html>
"""

FIGURE_CAPTIONS = {
    "training_curves": "Validation ELBO (nats) per epoch, one line per run, one panel per data "
                       "set.",
    "rate_distortion": "Rate R = KL against distortion D = −E log p(x|z) on the test set "
                       "(Alemi et al. 2018), ±1 s.e.; colour = model, marker = data set. Dashed "
                       "lines are ELBO iso-lines D + R = const.",
    "beta_sweep": "The β sweep in the rate–distortion plane, ±1 s.e., each point labelled with "
                  "its β. A red line D + R = H, the entropy bound, is drawn when the exact data "
                  "entropy is known.",
    "kl_per_dim": "KL per latent dimension, sorted, one line per run: flat zeros are collapsed "
                  "dimensions.",
}
PICTURE_CAPTIONS = {
    "samples": "decoder means of 64 draws from the prior",
    "reconstructions": "test images (odd columns) and the decoder mean at their encoder mean",
    "traversals": "one latent at a time from −3 to 3, by decreasing KL",
    "factor_traversals": "one row per ground-truth factor, along its most related latent",
}


def render_html(params: Params, runs: Sequence[RunData], summary: pd.DataFrame,
                theory: Theory, figures: dict[str, str],
                pictures: dict[str, list[str]], sweep_note: str = "") -> str:
    """The report page. ``figures`` maps figure key -> path and ``pictures`` maps run -> paths,
    both relative to the page; only these are referenced."""
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    dis = disentanglement_frame(runs)
    variants = sorted({v for v in dis["mig_variant"] if v}) if not dis.empty else []
    groups = [r.cell.group for r in runs]
    order = ["training_curves", "rate_distortion", "beta_sweep", "kl_per_dim"]
    figs = [{"src": figures[k], "alt": k.replace("_", " "), "caption": FIGURE_CAPTIONS[k]}
            for k in order if k in figures]
    pics = [(run, [{"src": p, "alt": f"{run} {Path(p).stem}",
                    "caption": PICTURE_CAPTIONS.get(Path(p).stem, Path(p).stem)}
                   for p in paths]) for run, paths in pictures.items() if paths]
    return env.from_string(PAGE).render(
        study=params.study.name, n_runs=len(runs), n_study=groups.count("grid"),
        n_linear=groups.count("linear"), n_sweep=groups.count("sweep"),
        n_checks=len(theory.checks), n_passed=theory.n_passed, n_failed=len(theory.failed),
        failed_names=", ".join(check_names(theory.failed)),
        conventions=conventions(params, runs), summary=summary_table(summary),
        theory=theory_table(theory), theory_by_check=theory_by_check(theory),
        z_star=fmt(theory.z_star, 3), m=theory.m, alpha=f"{theory.alpha:g}", sweep_note=sweep_note,
        figures=figs, collapse=collapse_table(runs),
        disentanglement=disentanglement_table(dis),
        mig_variant="; ".join(variants) or "not stated", linear=linear_table(runs),
        published_nll=published_nll_table(runs), burda_source=BURDA_SOURCE,
        burda=burda_table(runs), patterns=burda_patterns(runs), pictures=pics)

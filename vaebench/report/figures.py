"""The report's figures: training curves, KL per dimension, the rate-distortion plane, the beta
sweep against its closed form. ``make_figures`` is the one function that writes, into the folder
it is given; the data frames come from the typed runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vaebench.report.runs import RunData, cell_label

DPI = 90
CAPTIONS = {
    "training_curves": "Validation ELBO (nats) per epoch, one line per run (seeds of a cell "
                       "share a colour), one panel per data set.",
    "rate_distortion": "Rate R = KL against distortion D = −E log p(x|z) on the test set "
                       "(Alemi et al. 2018), one point per run, ±1 s.e.; colour = model. Dashed "
                       "lines are ELBO iso-lines D + R = const.",
    "beta_sweep": "The linear β-VAE sweep in the rate–distortion plane: each run (dots), and "
                  "the closed-form optimum at each β (line, docs/linear_beta_vae.md).",
    "kl_per_dim": "KL per latent dimension, sorted, one line per run: flat zeros are collapsed "
                  "dimensions.",
}


def history_frame(runs: Sequence[RunData]) -> pd.DataFrame:
    rows = [{"run": r.cell.run, "label": cell_label(r.cell), "dataset": r.cell.dataset,
             "seed": r.cell.seed, "epoch": int(h["epoch"]), "val_elbo": float(h["val_elbo"])}
            for r in runs for h in r.train.get("history", []) if "val_elbo" in h]
    return pd.DataFrame(rows, columns=["run", "label", "dataset", "seed", "epoch", "val_elbo"])


def kl_dims_frame(runs: Sequence[RunData]) -> pd.DataFrame:
    rows = [{"run": r.cell.run, "label": cell_label(r.cell), "dataset": r.cell.dataset,
             "seed": r.cell.seed, "rank": rank, "kl": v}
            for r in runs
            for rank, v in enumerate(sorted(r.metrics.kl_per_dim, reverse=True), start=1)]
    return pd.DataFrame(rows, columns=["run", "label", "dataset", "seed", "rank", "kl"])


def _palette(labels: Sequence[str]) -> dict[str, Any]:
    import seaborn as sns

    colours = sns.color_palette("tab10" if len(labels) <= 10 else "husl", len(labels))
    return dict(zip(labels, colours, strict=True))


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    from vaebench.io import atomic_write

    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=DPI, bbox_inches="tight"))
    plt.close(fig)


def _faceted_lines(df: pd.DataFrame, x: str, y: str, xlabel: str, ylabel: str,
                   palette: dict[str, Any], path: Path) -> str:
    import seaborn as sns
    from matplotlib.ticker import MaxNLocator

    datasets = list(dict.fromkeys(df["dataset"]))
    g = sns.relplot(data=df, x=x, y=y, hue="label", units="seed", estimator=None,
                    col="dataset", col_order=datasets, col_wrap=min(3, len(datasets)),
                    kind="line", marker="o", markersize=2, linewidth=0.8,
                    palette={k: v for k, v in palette.items() if k in set(df["label"])},
                    height=2.6, aspect=1.2, facet_kws={"sharex": False, "sharey": False})
    g.set_axis_labels(xlabel, ylabel)
    g.set_titles("{col_name}")
    for ax in g.axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if g.legend is not None:
        g.legend.set_title("cell")
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
        ax.annotate(f"−ELBO={c:g}", (x1, c - x1), fontsize=6, color="0.45", xytext=(-2, 2),
                    textcoords="offset points", ha="right", annotation_clip=True)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)


def _rate_distortion(runs: Sequence[RunData], path: Path) -> str:
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    datasets = list(dict.fromkeys(r.cell.dataset for r in runs))
    models = list(dict.fromkeys(r.cell.model for r in runs))
    colours = _palette(models)
    ncol = min(3, len(datasets))
    nrow = math.ceil(len(datasets) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 3.0 * nrow), squeeze=False)
    for ax in axes.flat[len(datasets):]:
        ax.set_visible(False)
    for ax, ds in zip(axes.flat, datasets, strict=False):
        sub = [r for r in runs if r.cell.dataset == ds]
        rate = np.array([r.metrics.kl.mean for r in sub])
        dist = np.array([-r.metrics.recon.mean for r in sub])
        ax.errorbar(rate, dist, xerr=[r.metrics.kl.se for r in sub],
                    yerr=[r.metrics.recon.se for r in sub], fmt="none", ecolor="0.55", lw=0.7)
        ax.scatter(rate, dist, c=[colours[r.cell.model] for r in sub], s=22, zorder=2,
                   edgecolor="black", linewidth=0.3)
        ax.margins(0.15)
        _iso_elbo_lines(ax, rate + dist)
        ax.set_title(ds)
        ax.set_xlabel("rate R = KL (nats)")
        ax.set_ylabel("distortion D (nats)")
    handles = [Line2D([], [], ls="", marker="o", color=colours[m], label=m) for m in models]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
               fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    return path.name


def _beta_sweep(sweep: Sequence[RunData], path: Path) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    rate = [r.metrics.kl.mean for r in sweep]
    dist = [-r.metrics.recon.mean for r in sweep]
    ax.scatter(rate, dist, s=14, color="C0", zorder=3, label="runs (every seed)")
    closed = sorted({(float(r.cell.beta), r.metrics.linear.optimum_rate,
                      r.metrics.linear.optimum_distortion) for r in sweep
                     if r.metrics.linear is not None})
    if closed:
        ax.plot([c[1] for c in closed], [c[2] for c in closed], "-", color="firebrick", lw=1,
                label="closed-form optimum")
        for b, x, y in closed:
            ax.annotate(f"β={b:g}", (x, y), xytext=(4, 4), textcoords="offset points",
                        fontsize=7)
    ax.margins(0.15)
    ax.set_xlabel("rate R = KL (nats)")
    ax.set_ylabel("distortion D = −E log p(x|z) (nats)")
    ax.set_title(f"β sweep: {sweep[0].cell.model} on {sweep[0].cell.dataset}")
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    _save(fig, path)
    return path.name


def make_figures(runs: Sequence[RunData], out: Path) -> dict[str, str]:
    """Draw the study's figures into ``out``; return {figure key: file name} for those drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    out.mkdir(parents=True, exist_ok=True)
    history, kl_dims = history_frame(runs), kl_dims_frame(runs)
    labels = list(dict.fromkeys([*history["label"], *kl_dims["label"]]))
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
    plane = [r for r in runs if r.cell.group != "sweep"]
    if plane:
        drawn["rate_distortion"] = _rate_distortion(plane, out / "rate_distortion.png")
    sweep = [r for r in runs if r.cell.group == "sweep"]
    if sweep:
        drawn["beta_sweep"] = _beta_sweep(sweep, out / "beta_sweep.png")
    return drawn

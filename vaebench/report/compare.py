"""Paired comparisons of two models on the same test points, seed by seed, with Holm's correction.

For models A and B on one dataset, every seed s gives per-point differences
d_si = v_A(x_i) - v_B(x_i) on the same test points with the same fixed binarization (NLL:
the first ``nll_points`` test points; ELBO: all of them). The estimate is the grand mean of
d over seeds and points. Its standard error adds the two sources of error:

    SE^2 = s_seeds^2 / S + s_points^2 / n

with s_seeds the spread of the per-seed means (which seeds were drawn: training randomness)
and s_points the spread over points of the seed-averaged differences (which test points were
drawn). The cross term is counted in both, so the SE errs on the large side. The 95% interval
is Student-t with S - 1 degrees of freedom (the seeds; n - 1 with one seed), which errs on the
wide side too (Welch-Satterthwaite's larger df under-covered in simulation). A verdict
("A better", "B better") is given only when Holm's step-down correction over every comparison
of the report keeps the difference significant at alpha = 0.05 (Holm 1979), that is when the
interval at the adjusted level excludes 0; otherwise "no detectable difference". No verdict
comes from point estimates. Comparisons without per-point values (active units) use the
per-seed differences alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

from vaebench.report.runs import RunData

ALPHA = 0.05
BASELINE = "vae"
# Claims the report takes from the literature: (model, metric, direction expected of the
# model against the VAE, the claim and its source).
CLAIMS = {
    ("iwae", "nll"): ("lower", "IWAE reaches a lower test NLL than the VAE (Burda et al. 2016, "
                               "Table 1: 85.54 at k = 5 vs 86.76)"),
    ("iwae", "active_units"): ("higher", "IWAE trains more active units (Burda et al. 2016, "
                                         "Table 1: 25 at k = 50 vs 19)"),
    ("beta_vae", "nll"): ("higher", "β-VAE with β > 1 gives up likelihood (Higgins et al. 2017; "
                                    "Alemi et al. 2018, a higher rate-distortion point)"),
    ("beta_vae", "elbo"): ("lower", "β-VAE with β > 1 has a lower ELBO than the VAE (it "
                                    "optimizes another objective)"),
}
LOWER_IS_BETTER = {"nll": True, "elbo": False, "active_units": False}


@dataclass(frozen=True)
class Comparison:
    dataset: str
    a: str            # the model compared
    b: str            # the baseline
    metric: str
    seeds: tuple[int, ...]
    per_seed: tuple[tuple[int, float, float], ...]  # (seed, mean difference, paired SE)
    diff: float       # mean of a - b
    se: float
    df: float
    lo: float
    hi: float
    p: float
    n_points: int
    p_holm: float = math.nan
    verdict: str = ""
    claim: str = ""
    claim_holds: str = ""


def paired_difference(a: Sequence[np.ndarray], b: Sequence[np.ndarray]
                      ) -> tuple[float, float, float, list[tuple[float, float]]]:
    """(mean difference, SE, degrees of freedom, per-seed (mean, paired SE)) of a - b, with
    a[s], b[s] the per-point values of seed s on the same points."""
    n = len(a[0])
    if any(len(x) != n for x in [*a, *b]) or n < 2:
        raise ValueError("paired runs must hold the same number (>= 2) of test points; got "
                         f"{sorted({len(x) for x in [*a, *b]})}")
    d = [np.asarray(x, dtype=float) - np.asarray(y, dtype=float) for x, y in zip(a, b, strict=True)]
    per_seed = [(float(x.mean()), float(x.std(ddof=1) / math.sqrt(n))) for x in d]
    means = np.array([m for m, _ in per_seed])
    s_count = len(d)
    points = np.mean(d, axis=0)
    var_points = float(points.var(ddof=1)) / n
    var_seeds = float(means.var(ddof=1)) / s_count if s_count > 1 else 0.0
    se = math.sqrt(var_seeds + var_points)
    df = float(s_count - 1 if s_count > 1 else n - 1)  # Student t over seeds (conservative)
    return float(means.mean()), se, df, per_seed


def _interval(diff: float, se: float, df: float, level: float = 0.95) -> tuple[float, float, float]:
    if not se > 0 or not math.isfinite(df):
        return math.nan, math.nan, math.nan
    t = stats.t.ppf(0.5 + level / 2, df)
    p = 2 * stats.t.sf(abs(diff) / se, df)
    return diff - t * se, diff + t * se, float(p)


def compare_pair(dataset: str, a: list[RunData], b: list[RunData], metric: str) -> Comparison | None:
    """Model a against model b on ``metric`` over the seeds both have; None with no seed."""
    by_b = {r.cell.seed: r for r in b}
    pairs = [(r, by_b[r.cell.seed]) for r in sorted(a, key=lambda r: r.cell.seed)
             if r.cell.seed in by_b]
    if not pairs:
        return None
    seeds = tuple(ra.cell.seed for ra, _ in pairs)
    if metric == "active_units":
        d = np.array([ra.metrics.active_units - rb.metrics.active_units for ra, rb in pairs],
                     dtype=float)
        n = len(d)
        se = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
        diff, df, n_points = float(d.mean()), float(n - 1), 0
        per_seed = tuple((s, float(x), math.nan) for s, x in zip(seeds, d, strict=True))
    else:
        diff, se, df, ps = paired_difference([ra.points[metric] for ra, _ in pairs],
                                             [rb.points[metric] for _, rb in pairs])
        n_points = len(pairs[0][0].points[metric])
        per_seed = tuple((s, m, e) for s, (m, e) in zip(seeds, ps, strict=True))
    lo, hi, p = _interval(diff, se, df)
    return Comparison(dataset, a[0].cell.model, b[0].cell.model, metric, seeds, per_seed, diff,
                      se, df, lo, hi, p, n_points)


def holm(comparisons: Sequence[Comparison], alpha: float = ALPHA) -> list[Comparison]:
    """Holm-adjusted p-values and verdicts for all comparisons together (Holm 1979)."""
    from statsmodels.stats.multitest import multipletests

    valid = [i for i, c in enumerate(comparisons) if math.isfinite(c.p)]
    adjusted = [math.nan] * len(comparisons)
    if valid:
        reject, p_adj, _, _ = multipletests([comparisons[i].p for i in valid], alpha=alpha,
                                            method="holm")
        for i, p in zip(valid, p_adj, strict=True):
            adjusted[i] = float(p)
    out = []
    for c, p_adj in zip(comparisons, adjusted, strict=True):
        lower_better = LOWER_IS_BETTER[c.metric]
        if not math.isfinite(p_adj):
            # counts have no within-run error: with one seed, or the same count difference in
            # every seed, there is no spread to judge by
            verdict = ("no verdict (no spread over seeds)" if c.metric == "active_units"
                       else "no verdict")
        elif p_adj < alpha:
            a_better = (c.diff < 0) == lower_better
            verdict = f"{c.a} better" if a_better else f"{c.b} better"
        else:
            verdict = "no detectable difference"
        claim, holds = "", ""
        if (c.a, c.metric) in CLAIMS and c.b == BASELINE:
            direction, claim = CLAIMS[(c.a, c.metric)]
            expected_sign = -1 if direction == "lower" else 1
            if verdict.endswith("better"):
                holds = "yes" if np.sign(c.diff) == expected_sign else "no: the opposite"
            else:
                holds = "not shown (interval includes 0)"
        out.append(replace(c, p_holm=p_adj, verdict=verdict, claim=claim, claim_holds=holds))
    return out


def study_comparisons(runs: Sequence[RunData], alpha: float = ALPHA) -> list[Comparison]:
    """Every model against the VAE on each dataset of the grid: NLL (a conditional model by its
    unconditional bound), ELBO (unconditional models only) and the claims' active units."""
    grid = [r for r in runs if r.cell.group == "grid"]
    found: list[Comparison] = []
    for dataset in dict.fromkeys(r.cell.dataset for r in grid):
        on = [r for r in grid if r.cell.dataset == dataset]
        base = [r for r in on if r.cell.model == BASELINE]
        if not base:
            continue
        for model in dict.fromkeys(r.cell.model for r in on if r.cell.model != BASELINE):
            mine = [r for r in on if r.cell.model == model]
            conditional = mine[0].metrics.nll_conditional is not None
            metrics = ["nll"] + ([] if conditional else ["elbo"])
            metrics += [m for (name, m) in CLAIMS if name == model and m == "active_units"]
            for metric in metrics:
                c = compare_pair(dataset, mine, base, metric)
                if c is not None:
                    found.append(c)
    return holm(found, alpha)

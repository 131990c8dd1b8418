"""A paper preset's result beside the published number: intervals over seeds and a verdict.

Pure functions from the seeds' metrics (``SeedResult``) to one ``PaperResult`` (``result``;
the contract and its conventions: ``vaebench.paper.result``) and its markdown (``markdown``,
rendered from ``vaebench/report/templates/paper.md.j2``); ``pipelines/paper.py`` reads the runs
and writes both atomically. NLL and ELBO are in nats per image.

The verdict is taken from an interval, never from a point estimate:
- d = (our mean NLL over seeds) - (published NLL);
- its half-width combines our Student-t interval over seeds, t_{n-1} s / sqrt(n), with the
  published ± read as the standard error of the published mean (the reading that gives the
  wider interval: the table does not say how many runs its ± spans), z * pm, in quadrature;
- "within" when the whole interval [d - h, d + h] lies inside [-tolerance, +tolerance];
  "above" (our NLL worse) when it lies wholly above +tolerance; "below" when it lies wholly
  below -tolerance; "inconclusive" otherwise, or with fewer than two seeds
  (``vaebench.paper.result.VERDICTS``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

from scipy import stats

from vaebench.paper.published import Published
from vaebench.paper.result import (
    Comparison,
    PaperResult,
    Protocol,
    SeedInterval,
    SeedResult,
    TInterval,
    Variant,
)
from vaebench.stats import t_interval

INTERVAL = ("Student t over seeds (ours) combined in quadrature with the published ± read as a "
            "standard error")


class VariantRuns(NamedTuple):
    """What ``result`` aggregates for one variant: its evaluated seeds and published number."""

    name: str
    train: dict[str, Any]  # the variant's train block
    published: Published | None
    seeds: list[SeedResult]


def verdict(ours: TInterval, published_nll: float, published_pm: float | None,
            tolerance: float, level: float) -> Comparison:
    """The interval for our NLL minus the published one, and what it says (see module)."""
    z = float(stats.norm.ppf(0.5 + level / 2))
    pub_half = z * (published_pm or 0.0)
    d = ours.mean - published_nll
    half = math.hypot(ours.half_width, pub_half)
    lo, hi = d - half, d + half
    reason = ""
    if math.isnan(half):
        word, reason = "inconclusive", "fewer than two seeds: no interval over seeds"
    elif -tolerance <= lo and hi <= tolerance:
        word = "within"
    elif lo > tolerance:
        word = "above"
    elif hi < -tolerance:
        word = "below"
    else:
        word, reason = "inconclusive", f"the interval straddles ±{tolerance:g}"
    return Comparison(difference=d, interval=(lo, hi), half_width=half, tolerance=tolerance,
                      level=level, verdict=word, reason=reason)


def result(paper, variants: Sequence[VariantRuns], machine: dict[str, str], date: str,
           note: str) -> PaperResult:
    """The result: one ``Variant`` per variant with its seeds (by seed), aggregates over seeds
    and, where a published number matches, the comparison with it."""
    out = []
    for v in variants:
        seeds = sorted(v.seeds, key=lambda m: m.seed)
        nll, elbo = (SeedInterval(
            **t_interval([getattr(m, key) for m in seeds], paper.level)._asdict(),
            test_sampling_se=_rms([getattr(m, f"{key}_se") for m in seeds]),
            monte_carlo_se=_rms([getattr(m, f"{key}_mc_se") for m in seeds]))
            for key in ("nll", "elbo"))
        pub = v.published
        out.append(Variant(
            name=v.name, train=v.train, seeds=seeds, nll=nll, elbo=elbo, published=pub,
            comparison=None if pub is None else verdict(nll, pub.nll, pub.pm, paper.tolerance,
                                                        paper.level)))
    protocol = Protocol(importance_samples=paper.importance_samples,
                        test_points=paper.test_points or "all",
                        test_binarization=paper.test_binarization,
                        tolerance_nats=paper.tolerance, level=paper.level, interval=INTERVAL)
    return PaperResult(name=paper.name, date=date, machine=machine, note=note, protocol=protocol,
                       differences=list(paper.differences), variants=out)


def best_by_epoch(val_elbo: Sequence[float], every: int = 50) -> dict[str, float]:
    """The best validation ELBO reached by every ``every``-th epoch and by the last one: how
    far training still moved, and whether early stopping was near."""
    best, out = -math.inf, {}
    for epoch, value in enumerate(val_elbo, 1):
        best = max(best, value)
        if epoch % every == 0 or epoch == len(val_elbo):
            out[str(epoch)] = best
    return out


def unconverged_note(doc: PaperResult) -> str | None:
    """When our NLL is above the published one and no seed stopped early, the measured sign
    that training was cut short: how much the best validation ELBO still rose over the last
    quarter of the epochs trained (mean over seeds)."""
    gains, ends = [], []
    for v in doc.variants:
        if v.comparison is None or v.comparison.verdict != "above":
            continue
        for m in v.seeds:
            by = m.curve
            if (m.early_stopping and m.early_stopping.stopped_at) or len(by) < 2:
                continue
            last = max(by)
            earlier = [e for e in by if e <= 0.75 * last] or [min(by)]
            gains.append(by[last] - by[max(earlier)])
            ends.append((last, max(earlier)))
    if not gains:
        return None
    last, start = ends[0]
    return (f"Training was cut short: no seed reached early stopping, and the best validation "
            f"ELBO still rose by {sum(gains) / len(gains):.2f} nats (mean over {len(gains)} "
            f"seed(s)) from epoch {start} to epoch {last}, the last one trained. The published "
            "protocol trains until 50 epochs pass without a new best (at most 2000); the "
            "override of the epochs is the cause measured here; the differences below were not measured.")


def _rms(values: Sequence[float]) -> float:
    """The typical within-run error over seeds: the root mean square of the runs' errors."""
    return math.sqrt(sum(v * v for v in values) / len(values)) if values else math.nan


def _f(x: float | None, digits: int = 2) -> str:
    """``x`` to ``digits`` decimals; "n/a" for a missing or NaN value."""
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def markdown(doc: PaperResult) -> str:
    """reports/paper/<name>.md from its template (vaebench/report/templates/paper.md.j2): the
    comparison table, per-seed table, best validation ELBO by epoch, the likely cause of a gap
    and the differences that remain."""
    from vaebench.markdown import render

    return render(
        "paper.md.j2", trim=True, r=doc, cause=unconverged_note(doc), f=_f, g=lambda x: f"{x:g}",
        f2=lambda x: f"{x:.2f}", pct=lambda x: f"{x:.0%}")

"""Paired comparisons: the interval covers the truth at its level (simulation), Holm's
adjustment matches a hand computation, and no verdict stands on an interval that includes 0."""

from __future__ import annotations

import numpy as np
import pytest

from vaebench.report.compare import Comparison, _interval, holm, paired_difference


def test_paired_interval_covers_the_true_difference_at_95_percent():
    """Seeds shift a model by a random amount, points by a random difficulty shared by both
    models, plus noise: the interval must cover the true mean difference ~95% of the time."""
    rng = np.random.default_rng(0)
    true, seeds, n, reps = 0.4, 3, 200, 600
    hits = 0
    for _ in range(reps):
        difficulty = rng.normal(0, 5, n)              # shared by both models: cancels in pairs
        point_effect = rng.normal(0, 1.0, n)          # the models differ by point, too
        a, b = [], []
        for _ in range(seeds):
            b.append(difficulty + rng.normal(0, 0.3, n))
            a.append(difficulty + true + point_effect + rng.normal(0, 0.5)  # seed effect
                     + rng.normal(0, 0.3, n))
        diff, se, df, per_seed = paired_difference(a, b)
        lo, hi, _ = _interval(diff, se, df)
        hits += lo <= true <= hi
        assert len(per_seed) == seeds
    coverage = hits / reps
    # the SE counts the interaction twice, so the interval is conservative, never liberal
    assert 0.93 <= coverage <= 0.995, coverage


def _comp(p: float, diff: float = -1.0, metric: str = "nll", a: str = "iwae") -> Comparison:
    return Comparison("d", a, "vae", metric, (0, 1, 2), (), diff, 0.1, 2.0, diff - 0.2,
                      diff + 0.2, p, 100)


def test_holm_matches_a_hand_computation_and_verdicts_need_significance():
    ps = [0.01, 0.04, 0.03, 0.2]
    out = holm([_comp(p) for p in ps], alpha=0.05)
    # sorted p: 0.01*4 = 0.04; 0.03*3 = 0.09; max(0.09, 0.04*2 = 0.08) = 0.09; max(.., 0.2) = 0.2
    assert [c.p_holm for c in out] == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert [c.verdict for c in out] == ["iwae better"] + ["no detectable difference"] * 3
    assert out[0].claim.startswith("IWAE reaches a lower test NLL") and out[0].claim_holds == "yes"
    assert out[1].claim_holds == "not shown (interval includes 0)"
    worse = holm([_comp(0.001, diff=+2.0)])[0]
    assert worse.verdict == "vae better" and worse.claim_holds == "no: the opposite"
    higher_is_better = holm([_comp(0.001, diff=+2.0, metric="elbo", a="beta_vae")])[0]
    assert higher_is_better.verdict == "beta_vae better"


def test_unequal_points_are_refused():
    with pytest.raises(ValueError, match="same number"):
        paired_difference([np.zeros(5)], [np.zeros(4)])

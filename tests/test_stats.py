"""``vaebench.stats.t_interval`` against scipy's Student-t interval, and its edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from vaebench.stats import finite, t_interval


@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_the_interval_is_scipys_student_t(level):
    values = [229.1, 229.6, 228.9, 230.2]
    got = t_interval(values, level)
    lo, hi = stats.t.interval(level, 3, loc=np.mean(values), scale=stats.sem(values))
    assert got.mean == pytest.approx(np.mean(values), rel=1e-15)
    assert got.sd == pytest.approx(np.std(values, ddof=1), rel=1e-12)
    assert got.half_width == pytest.approx((hi - lo) / 2, rel=1e-12)
    assert got.n == 4


def test_below_two_values_there_is_no_interval_and_nan_shows():
    one = t_interval([5.0])
    assert (one.mean, one.n) == (5.0, 1) and math.isnan(one.sd) and math.isnan(one.half_width)
    assert t_interval([]).n == 0 and math.isnan(t_interval([]).mean)
    assert math.isnan(t_interval([1.0, math.nan, 3.0]).mean)  # a NaN seed is not dropped here
    assert finite([1.0, None, math.nan, math.inf, 3.0]) == [1.0, 3.0]

"""The Student-t interval of a mean, the one every aggregate over seeds and every benchmark's
paired ratio uses: mean +- t_{(1+level)/2, n-1} s / sqrt(n) (Student 1908), s the sample
standard deviation. Values are taken as given: a caller that may hold missing or non-finite
values drops them first (``finite``), so that a NaN seed is never dropped silently where it
should show.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from scipy import stats


class Interval(NamedTuple):
    mean: float
    sd: float  # sample standard deviation (ddof 1); NaN below two values
    half_width: float  # NaN below two values
    n: int


def t_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """The mean of ``values`` with its two-sided ``level`` Student-t half-width."""
    n = len(values)
    mean = sum(values) / n if n else math.nan
    if n < 2:
        return Interval(mean, math.nan, math.nan, n)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return Interval(mean, sd, float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n), n)


def finite(values: Iterable[float | None]) -> list[float]:
    """``values`` without None, NaN and infinities."""
    return [float(v) for v in values if v is not None and math.isfinite(v)]

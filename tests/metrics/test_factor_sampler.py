"""FactorSampler: rows drawn with one factor fixed share its value, uniformly among matches."""

from __future__ import annotations

import numpy as np
import pytest

from vaebench.metrics import FactorSampler


def test_fixed_batches_share_the_value_and_vary_the_rest(sampler):
    rng = np.random.default_rng(0)
    for factor in range(sampler.num_factors):
        rows = sampler.sample_fixed(factor, 64, rng)
        values = sampler.factors[rows]
        assert rows.shape == (64,)
        assert np.all(values[:, factor] == values[0, factor])
        # The other factors are not held (all 64 draws sharing a value has probability < 1e-29).
        others = [f for f in range(sampler.num_factors) if f != factor]
        assert all(np.unique(values[:, f]).size > 1 for f in others)


def test_matching_is_uniform_over_rows_sharing_the_value():
    # Factor 0 has value 1 on rows 1, 2, 4, 7; each must come back with probability 1/4.
    factors = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [1, 2], [2, 2], [0, 0], [1, 1]])
    sampler = FactorSampler(factors, (3, 3))
    draws = sampler.sample_matching(0, np.full(40_000, 2), np.random.default_rng(1))
    counts = np.bincount(draws, minlength=8)
    assert set(np.flatnonzero(counts)) == {1, 2, 4, 7}
    p = 0.25
    z = (counts[[1, 2, 4, 7]] / draws.size - p) / np.sqrt(p * (1 - p) / draws.size)
    assert np.all(np.abs(z) < 4)


def test_fixed_value_follows_its_empirical_frequency():
    # Value 0 of factor 0 on 1 row, value 1 on 3 rows: a batch holds value 1 with prob. 3/4.
    factors = np.array([[0, 0], [1, 1], [1, 2], [1, 0]])
    sampler = FactorSampler(factors, (2, 3))
    rows = sampler.sample_fixed_batches(np.zeros(20_000, dtype=np.int64), 5,
                                        np.random.default_rng(2))
    assert rows.shape == (20_000, 5)
    value = factors[rows[:, 0], 0]
    assert np.all(factors[rows, 0] == value[:, None])
    share = np.mean(value == 1)
    assert abs(share - 0.75) < 4 * np.sqrt(0.75 * 0.25 / value.size)
    # The lone row of value 0 is repeated: sampling is with replacement.
    assert np.all(rows[value == 0] == 0)


def test_from_factors_infers_sizes():
    sampler = FactorSampler.from_factors(np.array([[0, 4], [2, 1]]))
    assert sampler.factor_sizes == (3, 5)
    assert sampler.num_rows == 2 and sampler.num_factors == 2


@pytest.mark.parametrize(("factors", "sizes", "match"), [
    (np.zeros((0, 2), dtype=int), (1, 1), "factors must be a non-empty 2-D array"),
    (np.zeros(4, dtype=int), (1,), "factors must be a non-empty 2-D array"),
    (np.zeros((3, 2), dtype=int), (1,), "factor_sizes must have one entry per factor"),
    (np.array([[0, 3]]), (1, 3), r"factors\[:, 1\] must lie in range\(3\)"),
    (np.array([[0, -1]]), (1, 3), "factors must hold non-negative indices"),
])
def test_bad_factors_raise_value_error(factors, sizes, match):
    with pytest.raises(ValueError, match=match):
        FactorSampler(factors, sizes)


def test_float_factors_raise_type_error():
    with pytest.raises(TypeError, match="factors must hold integer factor indices"):
        FactorSampler(np.zeros((3, 2)), (1, 1))


def test_out_of_range_factor_raises(sampler):
    with pytest.raises(ValueError, match="factor must lie in range"):
        sampler.sample_fixed(sampler.num_factors, 8, np.random.default_rng(0))

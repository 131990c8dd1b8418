"""MIG (disentanglement_lib variant) against hand-computed values and known codes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vaebench.metrics import (
    discrete_entropy,
    discrete_mutual_info,
    histogram_discretize,
    mig,
    mig_from_mutual_info,
)

# Tiny discrete example: x = (0,0,1,1,1,1), y = (0,0,0,1,1,1). Joint counts (x,y):
# (0,0) = 2, (1,0) = 1, (1,1) = 3 of 6; p(x) = (1/3, 2/3), p(y) = (1/2, 1/2), so
# I(x; y) = 2/6 log[(2/6)/(1/6)] + 1/6 log[(1/6)/(2/6)] + 3/6 log[(3/6)/(2/6)]
#         = (1/6) log 2 + (1/2) log(3/2).
X = np.array([0, 0, 1, 1, 1, 1])
Y = np.array([0, 0, 0, 1, 1, 1])
MI_XY = math.log(2) / 6 + math.log(1.5) / 2


def test_mutual_info_matches_hand_computation():
    mi = discrete_mutual_info(X[:, None], Y[:, None])
    assert mi.shape == (1, 1)
    assert mi[0, 0] == pytest.approx(MI_XY, abs=1e-12)


def test_entropy_matches_hand_computation():
    h = discrete_entropy(np.stack([X, Y], axis=1))
    expected_x = -(1 / 3) * math.log(1 / 3) - (2 / 3) * math.log(2 / 3)
    assert h == pytest.approx([expected_x, math.log(2)], abs=1e-12)


def test_mig_matches_hand_computation():
    # Code 0 = x (binned to itself with 2 bins), code 1 = y: I(code1; y) = H(y) = log 2 is the
    # top MI, I(code0; y) the runner-up, so MIG = (log 2 - MI_XY) / log 2.
    codes = np.stack([X, Y], axis=1).astype(np.float64) * 3.7 - 1.0
    result = mig(codes, Y[:, None], n_bins=2)
    assert result["mig"] == pytest.approx((math.log(2) - MI_XY) / math.log(2), abs=1e-12)
    assert np.asarray(result["mutual_info"])[:, 0] == pytest.approx([MI_XY, math.log(2)],
                                                                    abs=1e-12)


def test_histogram_partition_is_numpys():
    codes = np.random.default_rng(0).standard_t(3, size=(1000, 3))
    binned = histogram_discretize(codes, 20)
    for j in range(3):
        expected = np.histogram(codes[:, j], bins=20)[0]
        assert np.array_equal(np.bincount(binned[:, j], minlength=20), expected)
    assert np.all(histogram_discretize(np.ones((5, 2)), 20) == 0)


def test_binning_cap_on_a_full_grid_matches_closed_form():
    # Full grid of sizes (3, 40, 32): factors are exactly independent, so the runner-up MI is 0
    # and each gap is H(binned factor) / H(factor). 20 bins of width 39/20 hold 2 of the 40
    # orientation values each: log 20 / log 40. Width 31/20 in (1, 2) puts 1 or 2 of the 32
    # values in each bin, i.e. 12 bins of 2 and 8 of 1: H = (3/4) log 16 + (1/4) log 32.
    grid = np.stack(np.meshgrid(np.arange(3), np.arange(40), np.arange(32), indexing="ij"),
                    axis=-1).reshape(-1, 3)
    result = mig(grid.astype(np.float64), grid)
    expected = [1.0, math.log(20) / math.log(40),
                (0.75 * math.log(16) + 0.25 * math.log(32)) / math.log(32)]
    assert result["per_factor"] == pytest.approx(expected, abs=1e-9)
    assert result["mig"] == pytest.approx(np.mean(expected), abs=1e-9)


def test_perfect_code_scores_near_one(perfect_codes, factors):
    # With at least as many bins as factor values nothing is lost to binning.
    assert mig(perfect_codes, factors, n_bins=40)["mig"] >= 0.9
    # At the default 20 bins the 40- and 32-valued factors are capped (test above): about 0.89.
    assert mig(perfect_codes, factors)["mig"] >= 0.85


def test_noise_scores_near_zero(noise_codes, factors):
    assert mig(noise_codes, factors)["mig"] < 0.05


def test_entangled_code_scores_clearly_lower(perfect_codes, entangled_codes, factors):
    perfect = mig(perfect_codes, factors)["mig"]
    entangled = mig(entangled_codes, factors)["mig"]
    assert entangled < perfect - 0.3


def test_redundant_code_has_no_gap_for_the_duplicated_factor(perfect_codes, redundant_codes,
                                                             factors):
    result = mig(redundant_codes, factors)
    mi = np.asarray(result["mutual_info"])
    top_two = np.sort(mi[:, 0])[-2:]
    assert top_two[0] == pytest.approx(top_two[1], abs=1e-12)
    assert result["per_factor"][0] == pytest.approx(0.0, abs=1e-12)
    # The other factors keep their gaps, so only factor 0's share of the mean is lost.
    perfect = mig(perfect_codes, factors)
    assert result["per_factor"][1:] == pytest.approx(perfect["per_factor"][1:], abs=0.02)
    assert result["mig"] < perfect["mig"] - 0.15


def test_constant_factor_has_no_gap_and_is_left_out():
    codes = np.stack([X, Y], axis=1).astype(np.float64)
    factors = np.stack([Y, np.zeros(6, dtype=int)], axis=1)
    result = mig(codes, factors, n_bins=2)
    assert math.isnan(result["per_factor"][1])
    assert result["mig"] == pytest.approx(result["per_factor"][0])


def test_gap_needs_two_codes():
    with pytest.raises(ValueError, match="mi must be a 2-D array"):
        mig_from_mutual_info(np.ones((1, 3)), np.ones(3))


@pytest.mark.parametrize(("codes", "factors", "match"), [
    (np.zeros((5, 3)), np.zeros((4, 2), dtype=int), "codes and factors must have the same"),
    (np.zeros((0, 3)), np.zeros((0, 2), dtype=int), "codes must be a non-empty 2-D array"),
    (np.zeros((5, 3)), np.zeros((5, 0), dtype=int), "factors must be a non-empty 2-D array"),
    (np.zeros((5, 1)), np.zeros((5, 2), dtype=int), "codes must have at least 2 columns"),
    (np.full((5, 2), np.nan), np.zeros((5, 2), dtype=int), "codes must be finite"),
])
def test_bad_input_raises_value_error(codes, factors, match):
    with pytest.raises(ValueError, match=match):
        mig(codes, factors)


def test_bad_bins_and_dtype():
    with pytest.raises(ValueError, match="n_bins must be an integer >= 2"):
        mig(np.zeros((4, 2)), np.zeros((4, 1), dtype=int), n_bins=1)
    with pytest.raises(TypeError, match="factors must hold integer factor indices"):
        mig(np.zeros((4, 2)), np.zeros((4, 1)))

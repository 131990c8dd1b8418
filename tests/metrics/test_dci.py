"""DCI (Eastwood & Williams 2018): the entropy scores from R by hand, then known codes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vaebench.metrics import (
    completeness,
    completeness_per_factor,
    dci,
    disentanglement,
    disentanglement_per_code,
)

# R (3 codes x 2 factors). Code 0 splits evenly: D_0 = 1 - H_2(1/2, 1/2) = 0; code 1 serves
# factor 0 only: D_1 = 1; code 2 is unused (weight 0). rho = (2, 2, 0) / 4, so D = 1/2.
# Factor 0: p = (1/3, 2/3, 0), H_3 = [log 3 - (2/3) log 2] / log 3, C_0 = (2/3) log 2 / log 3;
# factor 1: p = (1, 0, 0), C_1 = 1; C = (C_0 + C_1) / 2.
R = np.array([[1.0, 1.0], [2.0, 0.0], [0.0, 0.0]])
C_0 = (2 / 3) * math.log(2) / math.log(3)


def test_disentanglement_by_hand():
    assert disentanglement_per_code(R) == pytest.approx([0.0, 1.0, 0.0], abs=1e-12)
    assert disentanglement(R) == pytest.approx(0.5, abs=1e-12)


def test_completeness_by_hand():
    assert completeness_per_factor(R) == pytest.approx([C_0, 1.0], abs=1e-12)
    assert completeness(R) == pytest.approx((C_0 + 1.0) / 2, abs=1e-12)


def test_extremes_and_invariances():
    assert disentanglement(np.eye(4)) == pytest.approx(1.0)
    assert completeness(np.eye(4)) == pytest.approx(1.0)
    assert disentanglement(np.ones((4, 3))) == pytest.approx(0.0, abs=1e-12)
    assert completeness(np.ones((4, 3))) == pytest.approx(0.0, abs=1e-12)
    assert disentanglement(np.zeros((2, 2))) == 0.0
    rng = np.random.default_rng(0)
    r = rng.random((6, 4))
    perm = rng.permutation(6)
    # Scale-free, and indifferent to the order of the codes.
    assert disentanglement(7.5 * r) == pytest.approx(disentanglement(r))
    assert completeness(7.5 * r) == pytest.approx(completeness(r))
    assert disentanglement(r[perm]) == pytest.approx(disentanglement(r))
    assert completeness(r[perm]) == pytest.approx(completeness(r))


def test_importance_must_be_non_negative():
    with pytest.raises(ValueError, match="importance must be finite and non-negative"):
        disentanglement(np.array([[1.0, -0.1]]))
    with pytest.raises(ValueError, match="importance must be a non-empty 2-D array"):
        completeness(np.zeros((0, 2)))


def _split(codes, factors):
    return codes[:4000], factors[:4000], codes[4000:], factors[4000:]


def test_perfect_code_scores_near_one(perfect_codes, factors):
    result = dci(*_split(perfect_codes, factors))
    assert result["disentanglement"] >= 0.9
    assert result["completeness"] >= 0.9
    assert result["informativeness"] >= 0.99
    importance = np.asarray(result["importance"])
    assert importance.shape == (10, 5)
    assert np.all(importance[6:] == 0)  # constant codes are never split on


def test_noise_scores_near_zero(noise_codes, factors):
    result = dci(*_split(noise_codes, factors))
    assert result["disentanglement"] < 0.1
    assert result["completeness"] < 0.1
    # Test accuracy near chance, mean_k 1/size_k = 0.12, far from the perfect code's 1.
    assert result["informativeness"] < 0.2


def test_entangled_code_scores_clearly_lower(perfect_codes, entangled_codes, factors):
    perfect = dci(*_split(perfect_codes, factors))
    entangled = dci(*_split(entangled_codes, factors))
    assert entangled["disentanglement"] < perfect["disentanglement"] - 0.3
    assert entangled["completeness"] < perfect["completeness"] - 0.3


def test_redundant_code_keeps_informativeness(redundant_codes, factors):
    # Codes 0 and 1 both carry factor 0: each code still serves one factor (D stays 1), factor
    # 0 is spread over two codes (its C_0 drops towards 1 - log 2 / log 10), and nothing is
    # lost for prediction.
    result = dci(*_split(redundant_codes, factors))
    assert result["disentanglement"] >= 0.9
    assert result["informativeness"] >= 0.99
    importance = np.asarray(result["importance"])
    c = completeness_per_factor(importance)
    assert c[0] < 0.9
    assert np.all(c[1:] >= 0.9)


def test_gradient_boosting_predictor_runs_on_a_small_set():
    rng = np.random.default_rng(0)
    factors = np.stack([rng.integers(0, 3, 240), rng.integers(0, 4, 240)], axis=1)
    codes = np.concatenate([factors.astype(np.float64), np.zeros((240, 1))], axis=1)
    result = dci(*(codes[:160], factors[:160], codes[160:], factors[160:]),
                 model="gradient_boosting")
    assert result["disentanglement"] >= 0.9
    assert result["completeness"] >= 0.9
    assert result["informativeness"] == pytest.approx(1.0)


def test_constant_factor_gets_no_importance():
    factors = np.stack([np.arange(40) % 4, np.zeros(40, dtype=int)], axis=1)
    codes = np.stack([factors[:, 0], np.linspace(0, 1, 40)], axis=1).astype(np.float64)
    result = dci(codes[:30], factors[:30], codes[30:], factors[30:])
    assert np.all(np.asarray(result["importance"])[:, 1] == 0)
    assert result["informativeness_per_factor"][1] == 1.0


@pytest.mark.parametrize(("args", "match"), [
    ((np.zeros((5, 2)), np.zeros((4, 1), dtype=int), np.zeros((3, 2)),
      np.zeros((3, 1), dtype=int)), "codes_train and factors_train must have the same"),
    ((np.zeros((5, 2)), np.zeros((5, 1), dtype=int), np.zeros((3, 2)),
      np.zeros((2, 1), dtype=int)), "codes_test and factors_test must have the same"),
    ((np.zeros((5, 2)), np.zeros((5, 1), dtype=int), np.zeros((3, 3)),
      np.zeros((3, 1), dtype=int)), "codes_train and codes_test must have the same number"),
    ((np.zeros((0, 2)), np.zeros((0, 1), dtype=int), np.zeros((3, 2)),
      np.zeros((3, 1), dtype=int)), "codes_train must be a non-empty 2-D array"),
    ((np.zeros((5, 2)), np.zeros((5, 1), dtype=int), np.zeros((3, 2)),
      np.zeros((3, 2), dtype=int)), "factors_train and factors_test must have the same"),
])
def test_bad_input_raises_value_error(args, match):
    with pytest.raises(ValueError, match=match):
        dci(*args)


def test_unknown_model_is_refused():
    codes, factors = np.zeros((4, 2)), np.array([[0], [1], [0], [1]])
    with pytest.raises(ValueError, match=r"model must be one of \('random_forest', "):
        dci(codes, factors, codes, factors, model="lasso")

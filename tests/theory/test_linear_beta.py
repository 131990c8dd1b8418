"""The closed-form linear beta-VAE optimum against a direct numerical optimization of its
objective (float64 L-BFGS from random starts), and its beta = 1 case against pPCA."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize

from vaebench.theory.linear_beta import linear_beta_objective, linear_beta_optimum

EIG = np.array([4.1, 3.1, 2.1, 1.1, 0.1, 0.1])  # d = 6, four signal directions
K = 3


def numerical_optimum(eig: np.ndarray, k: int, beta: float, starts: int = 3):
    d = len(eig)
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    S = q @ np.diag(eig) @ q.T  # a rotated covariance: the optimum must find its axes

    def unpack(theta):
        W = theta[: d * k].reshape(d, k)
        V = theta[d * k: 2 * d * k].reshape(k, d)
        D = np.exp(theta[2 * d * k: 2 * d * k + k])
        return W, V, D, math.exp(theta[-1])

    def loss(theta):
        W, V, D, s2 = unpack(theta)
        return -linear_beta_objective(S, W, V, D, s2, beta)[0]

    best = None
    for _ in range(starts):
        theta0 = rng.normal(scale=0.3, size=2 * d * k + k + 1)
        res = minimize(loss, theta0, method="L-BFGS-B", options={"maxiter": 20000,
                                                                 "ftol": 1e-15, "gtol": 1e-10})
        if best is None or res.fun < best.fun:
            best = res
    W, V, D, s2 = unpack(best.x)
    obj, rate, dist = linear_beta_objective(S, W, V, D, s2, beta)
    return obj, rate, dist, s2


@pytest.mark.parametrize("beta", [0.5, 1.0, 1.5, 2.5, 5.0])
def test_closed_form_is_the_numerical_optimum(beta):
    closed = linear_beta_optimum(EIG, K, beta)
    obj, rate, dist, s2 = numerical_optimum(EIG, K, beta)
    assert obj <= closed.objective + 1e-9  # nothing beats the closed form
    assert closed.objective - obj < 1e-5
    assert closed.rate == pytest.approx(rate, abs=2e-3)
    assert closed.distortion == pytest.approx(dist, abs=2e-3)
    assert closed.sigma2 == pytest.approx(s2, rel=1e-3)


def test_collapse_count_falls_with_beta_and_beta_one_is_ppca():
    actives = [linear_beta_optimum(EIG, K, b).active for b in (0.5, 1.0, 1.5, 2.0, 3.0, 5.0)]
    assert actives == sorted(actives, reverse=True) and actives[0] == K and actives[-1] == 0
    one = linear_beta_optimum(EIG, K, 1.0)
    d = len(EIG)
    sigma2_ml = EIG[K:].mean()
    ml = -0.5 * (d * math.log(2 * math.pi) + np.log(EIG[:K]).sum() + (d - K)
                 * math.log(sigma2_ml) + d)  # Tipping & Bishop's L*/N
    assert one.sigma2 == pytest.approx(sigma2_ml)
    assert one.objective == pytest.approx(ml, abs=1e-12)


def test_bad_input_is_one_line():
    with pytest.raises(ValueError, match="k must be in 1..5"):
        linear_beta_optimum(EIG, 6, 1.0)
    with pytest.raises(ValueError, match="beta must be > 0"):
        linear_beta_optimum(EIG, 2, 0.0)

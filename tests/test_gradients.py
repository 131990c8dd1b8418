"""The gradient study's estimators and variance estimates against closed forms.

- A Gaussian toy problem, q = N(mu, diag sigma^2) with f(z) = a.z: every estimator's mean is
  the exact gradient (a for mu, 0 for logvar) and the reparameterization and score-function
  variances are known in closed form (derived in ``_toy_variances``); the measured trace
  variance must fall in its bootstrap interval's reach.
- The linear VAE (Gaussian decoder): grad E_q log p(x|z) with respect to the encoder is the
  gradient of the closed-form reconstruction term (``vaebench.theory.linear_vae``); each
  estimator's mean over replicates must match it within Z_STAR standard errors.
"""

from __future__ import annotations

import math

import pytest
import torch

from vaebench import gradients as G
from vaebench.models import DataInfo, build_model, config_class
from vaebench.theory.linear_vae import linear_vae_elbo

Z_STAR = 4.5  # two-sided, Bonferroni over the coordinates of a test, alpha ~ 1e-4 overall
CONFIDENCE = 0.999

A = torch.tensor([1.5, -0.5, 2.0], dtype=torch.float64)
MU = torch.tensor([0.7, -1.2, 0.4], dtype=torch.float64)
LOGVAR = torch.tensor([-0.5, 0.3, 0.0], dtype=torch.float64)


def _toy_problem() -> G.EncoderProblem:
    def encode(p, x):
        return p["mu"].expand(len(x), -1), p["logvar"].expand(len(x), -1)

    return G.EncoderProblem(encode, lambda x, z: z @ A, {"mu": MU, "logvar": LOGVAR},
                            {"mu": ["mu"], "logvar": ["logvar"]})


def _toy_variances(k: int) -> dict[str, dict[str, float]]:
    """Trace of the covariance of each estimator's K-draw mean for f(z) = a.z, B = 1.

    With z = mu + sigma eps, c = a.mu and s^2 = sum_i a_i^2 sigma_i^2:
    - reparameterization: d/dmu = a (no noise); d/dlogvar_j = a_j sigma_j eps_j / 2, so
      Var = a_j^2 sigma_j^2 / 4;
    - score function: d/dmu_j = (c + sum_i a_i sigma_i eps_i) eps_j / sigma_j, so
      Var = (c^2 + s^2) / sigma_j^2 + a_j^2 (E eps^4 = 3); d/dlogvar_j =
      (c + sum_i a_i sigma_i eps_i)(eps_j^2 - 1) / 2, so Var = (c^2 + s^2) / 2 + 2 a_j^2 sigma_j^2
      (E (eps^2 - 1)^2 = 2, E eps^2 (eps^2 - 1)^2 = 10).
    A mean of K independent draws divides each by K.
    """
    var = torch.exp(LOGVAR)
    c2 = float(A @ MU) ** 2
    s2 = float((A * A * var).sum())
    return {
        "reparameterization": {"mu": 0.0, "logvar": float((A * A * var / 4).sum()) / k},
        "score_function": {"mu": float(((c2 + s2) / var + A * A).sum()) / k,
                           "logvar": float((0.5 * (c2 + s2) + 2 * A * A * var).sum()) / k},
    }


def _toy_replicates(r=4000, k=4, seed=3):
    gen = torch.Generator().manual_seed(seed)
    eps = torch.randn(r, k, 1, 3, dtype=torch.float64, generator=gen)
    x = torch.zeros(1, 1, dtype=torch.float64)
    problem = _toy_problem()
    return {e: G.recon_gradients(problem, x, eps, e, chunk=None) for e in G.ESTIMATORS}


def test_toy_estimators_are_unbiased_and_their_variance_is_the_closed_form():
    k = 4
    reps = _toy_replicates(k=k)
    exact = {"mu": A, "logvar": torch.zeros(3, dtype=torch.float64)}
    for e, grads in reps.items():
        for name, g in grads.items():
            se = g.std(0) / math.sqrt(len(g))
            z = ((g.mean(0) - exact[name]) / se.clamp_min(1e-300)).abs()
            assert (z < Z_STAR).all(), (e, name, g.mean(0), exact[name], se)
    for e, by_group in _toy_variances(k).items():
        for name, truth in by_group.items():
            est, low, high = G.variance_interval(reps[e][name], 999, CONFIDENCE, seed=1)
            if truth == 0.0:
                assert est == 0.0
                continue
            assert low <= truth <= high, (e, name, est, low, high, truth)
            assert high - low < 0.4 * truth  # the interval is informative
    # The ratio of score-function to reparameterization variance for logvar, with its CI.
    truths = _toy_variances(k)
    ratio, low, high = G.variance_ratio_interval(
        reps["score_function"]["logvar"], reps["reparameterization"]["logvar"], 999,
        CONFIDENCE, seed=2)
    truth = truths["score_function"]["logvar"] / truths["reparameterization"]["logvar"]
    assert low <= truth <= high, (ratio, low, high, truth)


def test_resampled_trace_variance_equals_the_direct_one():
    gen = torch.Generator().manual_seed(0)
    for r, p, is_gram in ((50, 7, False), (5, 40, True)):  # P <= R: from g; P > R: Gram
        g = torch.randn(r, p, dtype=torch.float64, generator=gen)
        idx = torch.randint(0, r, (4, r), generator=gen).numpy()
        spread = G.Spread.of(g)
        assert spread.is_gram == is_gram
        for row, value in zip(idx, spread.trace(idx), strict=True):
            assert math.isclose(value, G.trace_variance(g[row]), rel_tol=1e-10)
        # groups concatenated: the spread of [g, h] is the sum of the spreads
        h = torch.randn(r, 3, dtype=torch.float64, generator=gen)
        both = spread + G.Spread.of(h)
        assert math.isclose(float(both.trace()), G.trace_variance(torch.cat([g, h], 1)),
                            rel_tol=1e-10)


@pytest.fixture(scope="module")
def linear_problem():
    torch.manual_seed(0)
    d, k, n = 6, 2, 16
    info = DataInfo(dim=d, image_shape=None, kind="continuous")
    cfg = config_class("linear")(latent_dim=k, epochs=1, batch_size=n, lr=1e-3)
    model = build_model("linear", cfg, info, backend="eager")
    model = model.double()
    with torch.no_grad():
        model.encoder.logvar.copy_(torch.tensor([-0.7, 0.2]))
        model.dec_logvar.fill_(math.log(0.5))
    x = torch.randn(n, d, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    return model, x


def _exact_recon_gradient(model, x) -> dict[str, torch.Tensor]:
    p = model.parameters_float64()
    v = p["V"].clone().requires_grad_(True)
    b = p["b"].clone().requires_grad_(True)
    logd = model.encoder.logvar.detach().clone().requires_grad_(True)
    recon = linear_vae_elbo(x, p["W"], p["mu"], float(p["sigma2"]), v, b, logd.exp()).recon
    gv, gb, gd = torch.autograd.grad(recon.mean(), (v, b, logd))
    return {"mean.weight": gv, "mean.bias": gb, "logvar": gd}


@pytest.mark.parametrize("estimator", G.ESTIMATORS)
def test_estimators_agree_in_mean_with_the_linear_vae_closed_form(linear_problem, estimator):
    model, x = linear_problem
    problem = G.problem_from_model(model)
    r, k = 3000, 4
    eps = torch.randn(r, k, len(x), 2, dtype=torch.float64,
                      generator=torch.Generator().manual_seed(7))
    grads = G.recon_gradients(problem, x, eps, estimator, chunk=None)
    exact = _exact_recon_gradient(model, x)
    names = list(exact)
    g = G.flatten(grads, names)
    truth = torch.cat([exact[n].flatten() for n in names])
    se = g.std(0) / math.sqrt(r)
    z = (g.mean(0) - truth) / se
    assert z.abs().max() < Z_STAR, (estimator, z)
    # Power: a 25% error in the gradient (the bias of a baseline that includes the sample
    # itself, with K = 4) would be detected on the largest coordinate.
    top = truth.abs().argmax()
    assert 0.25 * truth.abs()[top] > 2 * Z_STAR * se[top], (estimator, se[top], truth[top])

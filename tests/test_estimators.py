"""Estimators against independent references: numpy/scipy formulas, simulation, closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal, norm

from vaebench.estimators import (
    active_units,
    gaussian_entropy,
    iw_bounds_crn,
    kl_mc_variance,
    kl_per_dim,
    mc_mean_se,
    mutual_information,
    mutual_information_per_point,
    se_over_points,
    tc_decomposition,
    tc_terms,
)
from vaebench.theory.linear_vae import linear_gaussian_mi

RNG = np.random.default_rng(1234)


def _gaussian_latents(n: int, d: int, seed: int):
    """mu, logvar, z ~ q, and float64 log q(z|x), log p(z) from scipy (independent code)."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(0.0, 1.0, (n, d))
    logvar = rng.normal(-1.0, 0.5, (n, d))
    z = mu + np.exp(0.5 * logvar) * rng.standard_normal((n, d))
    log_q = norm.logpdf(z, mu, np.exp(0.5 * logvar)).sum(-1)
    log_p = norm.logpdf(z).sum(-1)
    return [torch.from_numpy(a) for a in (z, mu, logvar, log_q, log_p)]


def test_se_over_points_matches_numpy():
    v = RNG.normal(3.0, 2.0, 257)
    mean, se = se_over_points(torch.from_numpy(v))
    assert mean == pytest.approx(v.mean(), rel=1e-12)
    assert se == pytest.approx(v.std(ddof=1) / math.sqrt(v.size), rel=1e-12)


def test_mc_mean_se_is_the_fixed_x_error_not_the_spread_across_x():
    rng = np.random.default_rng(0)
    s, n = 8, 200
    point_means = rng.normal(0.0, 10.0, n)  # large spread across x
    noise_sd = rng.uniform(0.5, 1.5, n)
    _, se = mc_mean_se(torch.from_numpy(point_means + noise_sd * rng.standard_normal((s, n))))
    # the formula, written out
    draws = point_means + noise_sd * rng.standard_normal((s, n))
    mean2, se2 = mc_mean_se(torch.from_numpy(draws))
    assert se2 == pytest.approx(math.sqrt(draws.var(0, ddof=1).sum() / (n * n * s)), rel=1e-12)
    assert mean2 == pytest.approx(draws.mean(), rel=1e-12)
    # the true sampling sd of the dataset mean over fixed x: sqrt(sum sd_x^2 / S) / N
    true_sd = math.sqrt((noise_sd ** 2).sum() / s) / n
    reps = point_means.mean() + (noise_sd * rng.standard_normal((4000, s, n))).mean((1, 2))
    assert reps.std() == pytest.approx(true_sd, rel=0.05)
    assert se == pytest.approx(true_sd, rel=0.1)
    # the spread across x would be about 10x too large
    assert se_over_points(torch.from_numpy(draws.mean(0)))[1] > 5 * true_sd


def test_iw_bounds_crn_uses_first_k_draws():
    log_w = RNG.normal(-5.0, 2.0, (50, 7))
    bounds = iw_bounds_crn(torch.from_numpy(log_w), [1, 5, 50])
    for k in (1, 5, 50):
        ref = logsumexp(log_w[:k], axis=0) - math.log(k)
        np.testing.assert_allclose(bounds[k].numpy(), ref, rtol=1e-12)
    np.testing.assert_allclose(bounds[1].numpy(), log_w[0], rtol=1e-12)
    with pytest.raises(ValueError, match="exceeds"):
        iw_bounds_crn(torch.from_numpy(log_w), [51])


def test_kl_mc_variance_matches_simulation():
    rng = np.random.default_rng(7)
    mu = np.array([[0.3, -1.2, 2.0], [0.0, 0.5, -0.4]])
    logvar = np.array([[-2.0, 0.7, 0.1], [1.5, -0.3, 0.0]])
    sigma = np.exp(0.5 * logvar)
    eps = rng.standard_normal((400_000, *mu.shape))
    z = mu + sigma * eps
    k_hat = (norm.logpdf(z, mu, sigma) - norm.logpdf(z)).sum(-1)  # (S, rows)
    pred = kl_mc_variance(torch.from_numpy(mu), torch.from_numpy(logvar)).numpy()
    np.testing.assert_allclose(k_hat.var(0), pred, rtol=0.02)
    # unbiased for the analytic KL
    analytic = 0.5 * (mu ** 2 + sigma ** 2 - 1 - logvar).sum(-1)
    np.testing.assert_allclose(k_hat.mean(0), analytic, atol=5 * np.sqrt(pred.max() / eps.shape[0]))


def test_kl_per_dim_matches_torch_distributions():
    mu = torch.from_numpy(RNG.normal(size=(30, 4)))
    logvar = torch.from_numpy(RNG.normal(size=(30, 4)))
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    ref = torch.distributions.kl_divergence(q, p).mean(0)
    torch.testing.assert_close(kl_per_dim(mu, logvar), ref, rtol=1e-12, atol=1e-12)


def test_active_units_on_a_constructed_example():
    rng = np.random.default_rng(3)
    n = 20_000
    scales = np.array([1.0, math.sqrt(0.02), math.sqrt(0.005), 0.0])  # variances 1, .02, .005, 0
    mu = rng.standard_normal((n, 4)) * scales + np.array([5.0, -3.0, 1.0, 2.0])
    count, activity = active_units(torch.from_numpy(mu))
    assert count == 2
    np.testing.assert_allclose(activity.numpy(), scales ** 2, rtol=0.05, atol=1e-12)
    assert active_units(torch.from_numpy(mu), threshold=0.001)[0] == 3


def test_mutual_information_brute_force_and_chunking():
    z, mu, logvar, log_q, _ = _gaussian_latents(60, 3, seed=11)
    per_point = mutual_information_per_point(z, mu, logvar, log_q, chunk_elements=7).numpy()
    dens = np.stack([norm.logpdf(z.numpy(), mu.numpy()[n], np.exp(0.5 * logvar.numpy()[n])).sum(-1)
                     for n in range(60)], axis=1)  # [i, n] = log q(z_i | x_n)
    ref = log_q.numpy() - (logsumexp(dens, axis=1) - math.log(60))
    np.testing.assert_allclose(per_point, ref, rtol=1e-10, atol=1e-10)
    one_shot = mutual_information_per_point(z, mu, logvar, log_q, chunk_elements=10 ** 8)
    np.testing.assert_allclose(per_point, one_shot.numpy(), rtol=1e-12, atol=1e-12)


def test_mutual_information_matches_linear_gaussian_closed_form():
    rng = np.random.default_rng(5)
    n, d, k = 5000, 4, 2
    a = rng.standard_normal((d, d))
    cov_x = a @ a.T / d + 0.2 * np.eye(d)
    x = rng.multivariate_normal(np.zeros(d), cov_x, n)
    v = 0.6 * rng.standard_normal((k, d))
    b = np.array([0.3, -0.2])
    dvar = np.array([0.5, 1.0])
    mean = x @ v.T + b
    z = mean + np.sqrt(dvar) * rng.standard_normal((n, k))
    log_q = norm.logpdf(z, mean, np.sqrt(dvar)).sum(-1)
    logvar = np.broadcast_to(np.log(dvar), (n, k)).copy()
    est, se = mutual_information(*(torch.from_numpy(t) for t in (z, mean, logvar, log_q)))
    exact = linear_gaussian_mi(torch.from_numpy(v), torch.from_numpy(dvar), torch.from_numpy(cov_x))
    assert 0.3 < exact < 3.0
    assert abs(est - exact) < 4 * se + 0.01


def test_mutual_information_at_most_log_n_and_fits_at_n10000_d20():
    n, d = 10_000, 20
    rng = np.random.default_rng(9)
    mu = rng.standard_normal((n, d)) * 3.0
    logvar = np.full((n, d), -12.0)  # almost deterministic encoder: I -> log N
    z = mu + np.exp(0.5 * logvar) * rng.standard_normal((n, d))
    log_q = norm.logpdf(z, mu, np.exp(0.5 * logvar)).sum(-1)
    per_point = mutual_information_per_point(
        *(torch.from_numpy(t) for t in (z, mu, logvar, log_q)))
    assert float(per_point.max()) <= math.log(n) + 1e-12
    assert float(per_point.mean()) == pytest.approx(math.log(n), abs=1e-6)


def _mws_brute_force(z, mu, logvar, log_q, log_p, dataset_size):
    """Chen et al. 2018 minibatch-weighted sampling, written with loops over the batch."""
    m, k = z.shape
    log_nm = math.log(dataset_size * m)
    mi, tc, dwkl = [], [], []
    for i in range(m):
        dens = norm.logpdf(z[i], mu, np.exp(0.5 * logvar))  # (M, K): log q(z_ij | x_m)
        log_qz = logsumexp(dens.sum(1)) - log_nm
        log_marg = sum(logsumexp(dens[:, j]) - log_nm for j in range(k))
        mi.append(log_q[i] - log_qz)
        tc.append(log_qz - log_marg)
        dwkl.append(log_marg - log_p[i])
    return np.array(mi), np.array(tc), np.array(dwkl)


def test_tc_terms_match_brute_force_mws_and_telescope():
    z, mu, logvar, log_q, log_p = _gaussian_latents(23, 3, seed=2)
    terms = tc_terms(z, mu, logvar, log_q, log_p, dataset_size=1000, batch_size=10)
    for start in range(0, 23, 10):  # batches of 10, 10 and the remainder 3
        sl = slice(start, start + 10)
        mi, tc, dwkl = _mws_brute_force(*(t.numpy()[sl] for t in (z, mu, logvar, log_q, log_p)),
                                        dataset_size=1000)
        np.testing.assert_allclose(terms["mi"][sl].numpy(), mi, rtol=1e-10)
        np.testing.assert_allclose(terms["tc"][sl].numpy(), tc, rtol=1e-10)
        np.testing.assert_allclose(terms["dwkl"][sl].numpy(), dwkl, rtol=1e-10)
    total = terms["mi"] + terms["tc"] + terms["dwkl"]
    torch.testing.assert_close(total, log_q - log_p, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(terms["kl_mc"], log_q - log_p)
    summary = tc_decomposition(z, mu, logvar, log_q, log_p, dataset_size=1000, batch_size=10)
    assert set(summary) == {"mi", "tc", "dwkl", "kl_mc"}
    assert summary["tc"][0] == pytest.approx(float(terms["tc"].mean()), rel=1e-12)
    parts = sum(summary[key][0] for key in ("mi", "tc", "dwkl"))
    assert parts == pytest.approx(summary["kl_mc"][0], rel=1e-10)


def test_gaussian_entropy_matches_scipy():
    a = RNG.standard_normal((5, 5))
    cov = a @ a.T + 0.1 * np.eye(5)
    ref = multivariate_normal(np.zeros(5), cov).entropy()
    assert gaussian_entropy(torch.from_numpy(cov)) == pytest.approx(ref, rel=1e-12)
    with pytest.raises(ValueError, match="positive definite"):
        gaussian_entropy(torch.from_numpy(-cov))


def test_bad_inputs_raise_one_line_errors():
    with pytest.raises(ValueError, match="values must be 1-D"):
        se_over_points(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="S >= 2"):
        mc_mean_se(torch.zeros(1, 5))
    with pytest.raises(TypeError, match="mu must be a torch.Tensor"):
        kl_per_dim([1.0], torch.zeros(1))
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        z, mu, logvar, log_q, log_p = _gaussian_latents(4, 2, seed=0)
        tc_terms(z, mu, logvar, log_q, log_p, dataset_size=10, batch_size=0)


def test_aggregate_log_density_against_brute_force_and_collapse():
    from torch.distributions import Normal

    from vaebench.estimators import aggregate_log_density, tc_terms_mixture

    g = torch.Generator().manual_seed(11)
    n, d = 40, 3
    mu = torch.randn(n, d, generator=g, dtype=torch.float64)
    logvar = 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64)
    z = mu + (0.5 * logvar).exp() * torch.randn(n, d, generator=g, dtype=torch.float64)
    joint, marg = aggregate_log_density(z, mu, logvar, chunk_elements=7 * n * d)  # 7-row chunks
    comp = Normal(mu[None], (0.5 * logvar).exp()[None]).log_prob(z[:, None])  # (i, n, d)
    assert torch.allclose(joint, torch.logsumexp(comp.sum(-1), 1) - math.log(n))
    assert torch.allclose(marg, torch.logsumexp(comp, 1) - math.log(n))
    log_q = Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    log_p = Normal(0.0, 1.0).log_prob(z).sum(-1)
    t = tc_terms_mixture(z, mu, logvar, log_q, log_p)
    assert torch.allclose(t["mi"] + t["tc"] + t["dwkl"], log_q - log_p)
    # a collapsed posterior, q(z|x) = p(z) for every x: MI = TC = DWKL = 0 exactly
    zero = torch.zeros(n, d, dtype=torch.float64)
    zc = torch.randn(n, d, generator=g, dtype=torch.float64)
    lp = Normal(0.0, 1.0).log_prob(zc).sum(-1)
    tc0 = tc_terms_mixture(zc, zero, zero, lp, lp)
    for key in ("mi", "tc", "dwkl"):
        assert tc0[key].abs().max() < 1e-12, key


def test_leave_one_out_upper_bound_brackets_the_exact_mi():
    from vaebench.estimators import mutual_information_upper

    rng = np.random.default_rng(8)
    n, d, k = 400, 4, 2
    a = rng.standard_normal((d, d))
    cov_x = a @ a.T / d + 0.2 * np.eye(d)
    x = rng.multivariate_normal(np.zeros(d), cov_x, n)
    v = 1.5 * rng.standard_normal((k, d))  # an informative encoder: I close to log N
    dvar = np.array([0.05, 0.1])
    mean = x @ v.T
    z = mean + np.sqrt(dvar) * rng.standard_normal((n, k))
    log_q = norm.logpdf(z, mean, np.sqrt(dvar)).sum(-1)
    logvar = np.broadcast_to(np.log(dvar), (n, k)).copy()
    args = [torch.from_numpy(t) for t in (z, mean, logvar, log_q)]
    exact = linear_gaussian_mi(torch.from_numpy(v), torch.from_numpy(dvar), torch.from_numpy(cov_x))
    lower, _ = mutual_information(*args)
    upper, _ = mutual_information_upper(*args)
    assert lower < exact < upper
    # brute force for the leave-one-out mixture
    dens = np.stack([norm.logpdf(z, mean[m], np.sqrt(dvar)).sum(-1) for m in range(n)], 1)
    np.fill_diagonal(dens, -np.inf)
    ref = np.mean(log_q - (logsumexp(dens, axis=1) - math.log(n - 1)))
    assert upper == pytest.approx(ref, rel=1e-10)

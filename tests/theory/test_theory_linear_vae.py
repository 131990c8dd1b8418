"""Linear-VAE closed forms against Monte Carlo, torch.distributions and exact identities."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from vaebench.estimators import gaussian_entropy
from vaebench.theory.linear_vae import (
    diagonal_gap,
    kl_gaussians,
    kl_to_posterior,
    linear_gaussian_mi,
    linear_vae_elbo,
    optimal_diagonal_encoder,
    subspace_similarity,
)
from vaebench.theory.ppca import ppca_log_likelihood, ppca_ml


def _setup(d=6, k=3, n=50, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((d, k))
    mu = rng.standard_normal(d)
    s2 = 0.4
    x = rng.standard_normal((n, k)) @ w.T + mu + math.sqrt(s2) * rng.standard_normal((n, d))
    v = 0.3 * rng.standard_normal((k, d))
    b = 0.2 * rng.standard_normal(k)
    dd = rng.uniform(0.1, 1.0, k)
    return [torch.from_numpy(a) if isinstance(a, np.ndarray) else a
            for a in (x, w, mu, s2, v, b, dd)]


def test_elbo_matches_large_sample_monte_carlo():
    x, w, mu, s2, v, b, dd = _setup(n=4)
    out = linear_vae_elbo(x, w, mu, s2, v, b, dd)
    rng = np.random.default_rng(1)
    m = (x @ v.T + b).numpy()
    sd = np.sqrt(dd.numpy())
    z = m + sd * rng.standard_normal((100_000, *m.shape))  # (S, N, k)
    recon = norm.logpdf(x.numpy(), z @ w.numpy().T + mu.numpy(), math.sqrt(s2)).sum(-1)
    kl = (norm.logpdf(z, m, sd) - norm.logpdf(z)).sum(-1)
    for est, exact in ((recon, out.recon), (kl, out.kl), (recon - kl, out.elbo)):
        se = est.std(0) / math.sqrt(est.shape[0])
        assert np.all(np.abs(est.mean(0) - exact.numpy()) < 4.5 * se)
    q = torch.distributions.Normal(x @ v.T + b, dd.sqrt())
    p = torch.distributions.Normal(0.0, 1.0)
    torch.testing.assert_close(out.kl, torch.distributions.kl_divergence(q, p).sum(-1))
    torch.testing.assert_close(out.elbo, out.recon - out.kl)
    assert out["elbo"] is out.elbo and out["kl"] is out.kl


def test_elbo_plus_kl_to_posterior_is_log_px_exactly():
    for seed in range(5):
        x, w, mu, s2, v, b, dd = _setup(seed=seed)
        elbo = linear_vae_elbo(x, w, mu, s2, v, b, dd).elbo
        gap = kl_to_posterior(x, w, mu, s2, v, b, dd)
        log_px = ppca_log_likelihood(x, w, mu, s2)
        torch.testing.assert_close(elbo + gap, log_px, rtol=1e-11, atol=1e-10)
        assert bool((gap > 0).all())


def test_kl_gaussians_matches_torch_distributions_and_is_zero_on_itself():
    rng = np.random.default_rng(2)
    a1, a2 = rng.standard_normal((2, 4, 4))
    s1 = a1 @ a1.T + 0.5 * np.eye(4)
    s2 = a2 @ a2.T + 0.5 * np.eye(4)
    m1 = rng.standard_normal((7, 4))
    m2 = rng.standard_normal(4)
    ours = kl_gaussians(torch.from_numpy(m1), torch.from_numpy(s1), torch.from_numpy(m2),
                        torch.from_numpy(s2))
    mvn = torch.distributions.MultivariateNormal
    ref = torch.distributions.kl_divergence(mvn(torch.from_numpy(m1), torch.from_numpy(s1)),
                                            mvn(torch.from_numpy(m2), torch.from_numpy(s2)))
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    same = kl_gaussians(torch.from_numpy(m1), torch.from_numpy(s1), torch.from_numpy(m1),
                        torch.from_numpy(s1))
    assert float(same.abs().max()) < 1e-12


def test_optimal_diagonal_encoder_maximizes_the_elbo():
    x, w, mu, s2, *_ = _setup(seed=3)
    v, b, dd = optimal_diagonal_encoder(w, mu, s2)
    best = float(linear_vae_elbo(x, w, mu, s2, v, b, dd).elbo.mean())
    rng = np.random.default_rng(4)
    for _ in range(20):
        dv = torch.from_numpy(1e-3 * rng.standard_normal(v.shape))
        db = torch.from_numpy(1e-3 * rng.standard_normal(b.shape))
        scale = torch.from_numpy(np.exp(1e-3 * rng.standard_normal(dd.shape)))
        worse = float(linear_vae_elbo(x, w, mu, s2, v + dv, b + db, dd * scale).elbo.mean())
        assert worse < best
    # the gap to log p(x) is the same for every x and equals diagonal_gap
    gaps = kl_to_posterior(x, w, mu, s2, v, b, dd)
    torch.testing.assert_close(gaps, torch.full_like(gaps, diagonal_gap(w, s2)), rtol=1e-9,
                               atol=1e-12)
    assert diagonal_gap(w, s2) > 1e-3  # random W: columns not orthogonal


def test_diagonal_gap_is_zero_iff_columns_orthogonal():
    rng = np.random.default_rng(5)
    q, _ = np.linalg.qr(rng.standard_normal((8, 3)))
    w_orth = torch.from_numpy(q * np.array([2.0, 1.0, 0.5]))
    assert abs(diagonal_gap(w_orth, 0.3)) < 1e-12
    w_mixed = w_orth @ torch.from_numpy(np.array([[1.0, 0.2, 0.0], [0.0, 1.0, 0.0],
                                                  [0.0, 0.0, 1.0]]))
    assert diagonal_gap(w_mixed, 0.3) > 1e-3


def test_elbo_maximum_equals_max_loglik_at_the_ml_solution():
    rng = np.random.default_rng(6)
    x = torch.from_numpy(rng.standard_normal((400, 3)) @ rng.standard_normal((3, 7))
                         + 0.5 * rng.standard_normal((400, 7)))
    fit = ppca_ml(x, 3)
    v, b, dd = optimal_diagonal_encoder(fit.W, fit.mu, fit.sigma2)
    elbo = linear_vae_elbo(x, fit.W, fit.mu, fit.sigma2, v, b, dd).elbo.mean()
    assert float(elbo) == pytest.approx(fit.max_loglik_per_point, rel=1e-12)
    assert subspace_similarity(fit.W, fit.eigvecs) == pytest.approx(1.0, abs=1e-12)


def test_subspace_similarity_known_angles():
    rng = np.random.default_rng(7)
    a = torch.from_numpy(rng.standard_normal((6, 2)))
    mix = torch.from_numpy(rng.standard_normal((2, 2)))
    assert subspace_similarity(a, a @ mix) == pytest.approx(1.0, abs=1e-12)
    theta = 0.3
    e1 = torch.tensor([[1.0], [0.0], [0.0]], dtype=torch.float64)
    rotated = torch.tensor([[math.cos(theta)], [math.sin(theta)], [0.0]], dtype=torch.float64)
    assert subspace_similarity(e1, rotated) == pytest.approx(math.cos(theta) ** 2, rel=1e-12)
    eye = torch.eye(4, dtype=torch.float64)
    assert subspace_similarity(eye[:, :2], eye[:, 2:]) == pytest.approx(0.0, abs=1e-15)
    # a collapsed (zero) column counts as a missing direction
    half = torch.cat([eye[:, :1], torch.zeros(4, 1, dtype=torch.float64)], dim=1)
    assert subspace_similarity(half, eye[:, :2]) == pytest.approx(0.5, rel=1e-12)


def test_linear_gaussian_mi_matches_joint_covariance_formula():
    rng = np.random.default_rng(8)
    a = rng.standard_normal((5, 5))
    cov_x = a @ a.T + 0.1 * np.eye(5)
    v = rng.standard_normal((2, 5))
    dd = np.array([0.3, 2.0])
    cov_z = v @ cov_x @ v.T + np.diag(dd)
    joint = np.block([[cov_x, cov_x @ v.T], [v @ cov_x, cov_z]])
    # I = h(x) + h(z) - h(x, z)
    ref = (gaussian_entropy(torch.from_numpy(cov_x)) + gaussian_entropy(torch.from_numpy(cov_z))
           - gaussian_entropy(torch.from_numpy(joint)))
    ours = linear_gaussian_mi(torch.from_numpy(v), torch.from_numpy(dd), torch.from_numpy(cov_x))
    assert ours == pytest.approx(ref, rel=1e-10)


def test_bad_inputs():
    x, w, mu, s2, v, b, dd = _setup()
    with pytest.raises(ValueError, match=r"V must have shape \(3, 6\)"):
        linear_vae_elbo(x, w, mu, s2, v.T, b, dd)
    with pytest.raises(ValueError, match="D_diag must be > 0"):
        linear_vae_elbo(x, w, mu, s2, v, b, -dd)
    with pytest.raises(ValueError, match="positive definite"):
        kl_gaussians(torch.zeros(2), -torch.eye(2), torch.zeros(2), torch.eye(2))

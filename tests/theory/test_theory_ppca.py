"""pPCA closed forms against scipy, direct maximization, sklearn and brute-force Bayes."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from scipy.stats import multivariate_normal, norm
from sklearn.decomposition import PCA

from vaebench.theory.ppca import ppca_covariance, ppca_log_likelihood, ppca_ml, ppca_posterior


def _model(d: int, k: int, seed: int):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((d, k))
    mu = rng.standard_normal(d)
    return w, mu, 0.3


def _sample(w, mu, sigma2, n, seed):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, w.shape[1]))
    return z @ w.T + mu + math.sqrt(sigma2) * rng.standard_normal((n, w.shape[0]))


def test_log_likelihood_matches_scipy_logpdf():
    w, mu, s2 = _model(7, 3, seed=0)
    x = _sample(w, mu, s2, 40, seed=1)
    ours = ppca_log_likelihood(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(mu), s2)
    ref = multivariate_normal(mu, w @ w.T + s2 * np.eye(7)).logpdf(x)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-11)
    np.testing.assert_allclose(ppca_covariance(w, s2).numpy(), w @ w.T + s2 * np.eye(7))
    # numpy inputs work too
    np.testing.assert_allclose(ppca_log_likelihood(x, w, mu, s2).numpy(), ref, rtol=1e-11)


def test_ml_matches_direct_numerical_maximization():
    w_true, mu_true, s2_true = _model(3, 1, seed=2)
    x = _sample(w_true, mu_true, s2_true, 60, seed=3)
    fit = ppca_ml(torch.from_numpy(x), 1)
    n = x.shape[0]
    mean = x.mean(0)

    def neg_loglik(theta):
        w = theta[:3].reshape(3, 1)
        return -multivariate_normal(mean, w @ w.T + math.exp(theta[3]) * np.eye(3)).logpdf(x).sum()

    best = min((minimize(neg_loglik, np.r_[np.random.default_rng(s).standard_normal(3), 0.0],
                         method="BFGS", options={"gtol": 1e-9}) for s in range(3)),
               key=lambda r: r.fun)
    assert fit.max_loglik_per_point == pytest.approx(-best.fun / n, rel=1e-8)
    assert fit.sigma2 == pytest.approx(math.exp(best.x[3]), rel=1e-4)
    w_opt = best.x[:3].reshape(3, 1)
    np.testing.assert_allclose((fit.W @ fit.W.T).numpy(), w_opt @ w_opt.T, atol=1e-4)


def test_ml_value_is_attained_and_is_a_maximum():
    w, mu, s2 = _model(6, 2, seed=4)
    x = torch.from_numpy(_sample(w, mu, s2, 300, seed=5))
    fit = ppca_ml(x, 2)
    at_fit = ppca_log_likelihood(x, fit.W, fit.mu, fit.sigma2).mean()
    assert float(at_fit) == pytest.approx(fit.max_loglik_per_point, rel=1e-12)
    rng = np.random.default_rng(6)
    for _ in range(20):
        dw = torch.from_numpy(1e-2 * rng.standard_normal(fit.W.shape))
        dmu = torch.from_numpy(1e-2 * rng.standard_normal(6))
        ds2 = fit.sigma2 * (1 + 1e-2 * rng.standard_normal())
        perturbed = ppca_log_likelihood(x, fit.W + dw, fit.mu + dmu, ds2).mean()
        assert float(perturbed) < fit.max_loglik_per_point
    # closed form L*/N written out with a full eigendecomposition of S (1/N)
    xc = x.numpy() - x.numpy().mean(0)
    lam = np.sort(np.linalg.eigvalsh(xc.T @ xc / x.shape[0]))[::-1]
    s2_ml = lam[2:].mean()
    ref = -0.5 * (6 * math.log(2 * math.pi) + np.log(lam[:2]).sum() + 4 * math.log(s2_ml) + 6)
    assert fit.max_loglik_per_point == pytest.approx(ref, rel=1e-12)
    assert fit.sigma2 == pytest.approx(s2_ml, rel=1e-12)
    np.testing.assert_allclose(fit.eigvals.numpy(), lam[:2], rtol=1e-12)


def test_covariance_uses_1_over_n_unlike_sklearn_pca_score():
    w, mu, s2 = _model(5, 2, seed=7)
    x = _sample(w, mu, s2, 30, seed=8)
    n = x.shape[0]
    fit = ppca_ml(torch.from_numpy(x), 2)
    pca = PCA(n_components=2).fit(x)
    # sklearn's noise variance is ours times N / (N - 1) (it uses the 1/(N-1) covariance)
    assert pca.noise_variance_ == pytest.approx(fit.sigma2 * n / (n - 1), rel=1e-10)
    # its score is our log-likelihood at its (slightly off) parameters, below the maximum
    w_sk = pca.components_.T * np.sqrt(pca.explained_variance_ - pca.noise_variance_)
    at_sk = ppca_log_likelihood(x, w_sk, pca.mean_, pca.noise_variance_).mean()
    assert float(at_sk) == pytest.approx(pca.score(x), rel=1e-10)
    assert pca.score(x) < fit.max_loglik_per_point - 1e-4


@pytest.mark.parametrize(("n", "d", "k"), [(500, 40, 3), (25, 40, 3)])
def test_eigen_methods_agree(n, d, k):
    rng = np.random.default_rng(9)
    x = torch.from_numpy(rng.standard_normal((n, d)) * np.linspace(3.0, 0.5, d))
    fits = {m: ppca_ml(x, k, method=m) for m in ("svd", "dense", "lanczos", "auto")}
    ref = fits["dense"]
    for fit in fits.values():
        assert fit.sigma2 == pytest.approx(ref.sigma2, rel=1e-10)
        assert fit.max_loglik_per_point == pytest.approx(ref.max_loglik_per_point, rel=1e-10)
        np.testing.assert_allclose(fit.eigvals.numpy(), ref.eigvals.numpy(), rtol=1e-10)
        np.testing.assert_allclose(fit.eigvecs.numpy(), ref.eigvecs.numpy(), atol=1e-7)
        np.testing.assert_allclose(fit.W.numpy(), ref.W.numpy(), atol=1e-7)


def test_ml_is_fast_for_image_sized_d():
    rng = np.random.default_rng(10)
    x784 = torch.from_numpy(rng.standard_normal((1200, 784)) * np.linspace(2.0, 0.1, 784))
    x4096 = torch.from_numpy(rng.standard_normal((300, 4096)))
    t0 = time.perf_counter()
    f784 = ppca_ml(x784, 20)
    f4096 = ppca_ml(x4096, 20)
    elapsed = time.perf_counter() - t0
    assert elapsed < 30.0  # about 2 s on an idle 2-core machine; generous for shared CI
    assert f784.W.shape == (784, 20) and f4096.W.shape == (4096, 20)
    assert f4096.sigma2 > 0


def test_posterior_matches_gaussian_conditioning_on_the_joint():
    w, mu, s2 = _model(5, 2, seed=11)
    x = _sample(w, mu, s2, 6, seed=12)
    mean, cov = ppca_posterior(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(mu), s2)
    c = w @ w.T + s2 * np.eye(5)  # joint of (z, x): [[I, W^T], [W, C]]
    gain = np.linalg.solve(c, w).T  # W^T C^-1
    np.testing.assert_allclose(mean.numpy(), (x - mu) @ gain.T, rtol=1e-10)
    np.testing.assert_allclose(cov.numpy(), np.eye(2) - gain @ w, rtol=1e-10, atol=1e-12)


def test_posterior_matches_numerical_bayes_in_one_dimension():
    w, mu, s2 = _model(4, 1, seed=13)
    x = _sample(w, mu, s2, 1, seed=14)[0]
    grid = np.linspace(-12, 12, 200_001)
    log_joint = norm.logpdf(grid) + norm.logpdf(x[None, :], grid[:, None] * w[:, 0] + mu,
                                                math.sqrt(s2)).sum(1)
    post = np.exp(log_joint - log_joint.max())
    post /= np.trapezoid(post, grid)
    m_num = np.trapezoid(grid * post, grid)
    v_num = np.trapezoid((grid - m_num) ** 2 * post, grid)
    mean, cov = ppca_posterior(x[None, :], w, mu, s2)
    assert float(mean[0, 0]) == pytest.approx(m_num, rel=1e-7)
    assert float(cov[0, 0]) == pytest.approx(v_num, rel=1e-6)


def test_bad_inputs():
    x = torch.zeros(10, 4)
    with pytest.raises(ValueError, match="k must be an integer in 1..3"):
        ppca_ml(x, 4)
    with pytest.raises(ValueError, match="method must be one of"):
        ppca_ml(torch.randn(10, 4), 1, method="qr")
    with pytest.raises(ValueError, match="rank"):
        ppca_ml(torch.randn(10, 1) @ torch.randn(1, 4), 1)
    with pytest.raises(ValueError, match="sigma2 must be a finite number > 0"):
        ppca_log_likelihood(x, torch.zeros(4, 2), torch.zeros(4), 0.0)
    with pytest.raises(ValueError, match=r"mu must have shape \(4,\)"):
        ppca_log_likelihood(x, torch.zeros(4, 2), torch.zeros(3), 1.0)

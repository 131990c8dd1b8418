"""pPCA samples: covariance, orthogonal loadings, exact log-likelihood in the manifest."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from vaebench.data import load, prepare
from vaebench.data.linear_gaussian import ppca_log_likelihood

Z_STAR = 5.0  # Bonferroni over at most a few hundred checks: family-wise false alarm ~1e-4


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("linear-gaussian")
    prepare("linear-gaussian", {}, out)
    return load(out)


def test_defaults_and_extra(bundle):
    cfg = bundle.manifest["config"]
    assert (cfg["d"], cfg["k"], cfg["sigma2"]) == (20, 4, 0.1)
    assert (len(bundle.x_train), len(bundle.x_val), len(bundle.x_test)) == (10000, 2000, 2000)
    assert bundle.kind == "continuous" and bundle.levels is None and bundle.image_shape is None
    assert bundle.x_train.dtype == np.float32 and bundle.y_train is None
    assert bundle.extra["W"].shape == (20, 4) and bundle.extra["mu"].shape == (20,)
    assert float(bundle.extra["sigma2"]) == 0.1


def test_loadings_orthogonal_with_separated_norms(bundle):
    w = bundle.extra["W"]
    gram = w.T @ w
    assert np.allclose(gram, np.diag([4.0, 3.0, 2.0, 1.0]), atol=1e-12)
    # the top-4 eigenvectors of C span the columns of W
    c = w @ w.T + 0.1 * np.eye(20)
    eigvals, eigvecs = np.linalg.eigh(c)
    assert np.allclose(eigvals[::-1][:5], [4.1, 3.1, 2.1, 1.1, 0.1])
    top = eigvecs[:, -4:]
    assert np.allclose(top @ top.T @ w, w, atol=1e-10)


def test_sample_moments_match_model(bundle):
    """Entrywise z-scores of the sample mean and covariance; for Gaussian data
    Var(S_ij) ~ (C_ii C_jj + C_ij^2)/n and Var(mean_i) = C_ii/n."""
    x = bundle.x_train.astype(np.float64)
    n = len(x)
    w, mu, sigma2 = bundle.extra["W"], bundle.extra["mu"], float(bundle.extra["sigma2"])
    c = w @ w.T + sigma2 * np.eye(w.shape[0])
    z_mean = (x.mean(0) - mu) / np.sqrt(np.diag(c) / n)
    assert np.abs(z_mean).max() < Z_STAR
    s = np.cov(x, rowvar=False, bias=True)
    se = np.sqrt((np.outer(np.diag(c), np.diag(c)) + c**2) / n)
    assert np.abs((s - c) / se).max() < Z_STAR
    # and the data are not white noise: a wrong model would fail the same check
    assert np.abs((s - np.eye(20)) / se).max() > 10 * Z_STAR


def test_manifest_log_likelihood_is_exact(bundle):
    w, mu, sigma2 = bundle.extra["W"], bundle.extra["mu"], float(bundle.extra["sigma2"])
    c = w @ w.T + sigma2 * np.eye(w.shape[0])
    reference = multivariate_normal(mean=mu, cov=c).logpdf(bundle.x_test.astype(np.float64))
    true_model = bundle.manifest["true_model"]
    assert true_model["mean_test_log_likelihood"] == pytest.approx(reference.mean(), rel=1e-12)
    assert bundle.manifest["test_loglik_true_model"] == true_model["mean_test_log_likelihood"]
    assert np.allclose(ppca_log_likelihood(bundle.x_val, w, mu, sigma2),
                       multivariate_normal(mean=mu, cov=c).logpdf(bundle.x_val.astype(np.float64)))
    # -2 log p(x) - const is chi-square with d degrees of freedom: Var log p(x) = d / 2
    se = np.sqrt(20 / 2 / len(reference))
    assert abs(reference.mean() - true_model["expected_log_likelihood"]) < Z_STAR * se


def test_seed_and_config_validation(tmp_path):
    a = prepare("linear-gaussian", {"n_train": 50, "n_val": 5, "n_test": 5}, tmp_path / "a")
    b = prepare("linear-gaussian", {"n_train": 50, "n_val": 5, "n_test": 5, "seed": 1},
                tmp_path / "b")
    assert a["arrays"]["sha256"] != b["arrays"]["sha256"]
    with pytest.raises(ValueError, match="k = 20 must be below d = 20"):
        prepare("linear-gaussian", {"k": 20}, tmp_path / "c")
    with pytest.raises(ValueError, match="sigma2=-1.0"):
        prepare("linear-gaussian", {"sigma2": -1.0}, tmp_path / "c")

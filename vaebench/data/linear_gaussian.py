"""Samples from a probabilistic PCA model with a known exact log-likelihood.

Model (Tipping & Bishop 1999): z ~ N(0, I_k), x | z ~ N(W z + mu, sigma2 I_d), hence
x ~ N(mu, C) with C = W W^T + sigma2 I_d and
log p(x) = -1/2 [d log 2 pi + log|C| + (x - mu)^T C^-1 (x - mu)].
"""

from __future__ import annotations

import numpy as np

from vaebench.data.bundle import Built


def make_ppca(
    d: int, k: int, signal_var_max: float, signal_var_min: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """W = Q diag(sqrt(v)) (Q: (d, k) orthonormal from a QR of a Gaussian matrix, v linearly spaced
    from ``signal_var_max`` down to ``signal_var_min``) and mu ~ N(0, I_d); float64.

    The columns of W are orthogonal with squared norms v, so the eigenvalues of C are v_j + sigma2
    (j <= k) and sigma2 (d - k times), and the top-k eigen-directions are the columns of Q.
    """
    q, r = np.linalg.qr(rng.standard_normal((d, k)))
    q = q * np.sign(np.diag(r))  # unique QR (positive diagonal of R)
    v = np.linspace(signal_var_max, signal_var_min, k)
    w = q * np.sqrt(v)
    mu = rng.standard_normal(d)
    return w, mu


def sample_ppca(
    w: np.ndarray, mu: np.ndarray, sigma2: float, n: int, rng: np.random.Generator
) -> np.ndarray:
    """n draws of x = W z + mu + sqrt(sigma2) eps (float64)."""
    d, k = w.shape
    z = rng.standard_normal((n, k))
    eps = rng.standard_normal((n, d))
    return z @ w.T + mu + np.sqrt(sigma2) * eps


def ppca_covariance(w: np.ndarray, sigma2: float) -> np.ndarray:
    """C = W W^T + sigma2 I, the marginal covariance of x (Tipping & Bishop 1999)."""
    return w @ w.T + sigma2 * np.eye(w.shape[0])


def ppca_log_likelihood(x: np.ndarray, w: np.ndarray, mu: np.ndarray, sigma2: float) -> np.ndarray:
    """Per-point log p(x) under N(mu, W W^T + sigma2 I), float64 via a Cholesky factor of C."""
    x = np.asarray(x, dtype=np.float64)
    d = w.shape[0]
    chol = np.linalg.cholesky(ppca_covariance(np.asarray(w, np.float64), sigma2))
    white = np.linalg.solve(chol, (x - mu).T)  # L^-1 (x - mu)
    log_det = 2.0 * np.sum(np.log(np.diag(chol)))
    return -0.5 * (d * np.log(2.0 * np.pi) + log_det + np.sum(white**2, axis=0))


def ppca_entropy(w: np.ndarray, sigma2: float) -> float:
    """Differential entropy of N(mu, C): 1/2 [d log(2 pi e) + log|C|] = -E[log p(x)]."""
    d = w.shape[0]
    _, log_det = np.linalg.slogdet(ppca_covariance(w, sigma2))
    return float(0.5 * (d * np.log(2.0 * np.pi * np.e) + log_det))


def build(cfg) -> Built:
    """Draw W, mu, then train/val/test samples (float32); the manifest gets the exact test log p."""
    rng = np.random.default_rng(cfg.seed)
    w, mu = make_ppca(cfg.d, cfg.k, cfg.signal_var_max, cfg.signal_var_min, rng)
    arrays: dict[str, np.ndarray] = {}
    for split, n in (("train", cfg.n_train), ("val", cfg.n_val), ("test", cfg.n_test)):
        arrays[f"x_{split}"] = sample_ppca(w, mu, cfg.sigma2, n, rng).astype(np.float32)
    arrays["extra_W"] = w
    arrays["extra_mu"] = mu
    arrays["extra_sigma2"] = np.array(cfg.sigma2, dtype=np.float64)
    log_px = {
        split: float(ppca_log_likelihood(arrays[f"x_{split}"], w, mu, cfg.sigma2).mean())
        if len(arrays[f"x_{split}"]) else None
        for split in ("train", "val", "test")
    }
    eigenvalues = np.sort(np.linalg.eigvalsh(ppca_covariance(w, cfg.sigma2)))[::-1]
    return Built(
        arrays=arrays,
        kind="continuous",
        levels=None,
        image_shape=None,
        n_classes=None,
        source={"generator": "vaebench.data.linear_gaussian (pPCA, Tipping & Bishop 1999)"},
        info={
            "true_model": {
                "formula": "x = W z + mu + sqrt(sigma2) eps, z ~ N(0, I_k), eps ~ N(0, I_d)",
                "mean_test_log_likelihood": log_px["test"],
                "mean_val_log_likelihood": log_px["val"],
                "mean_train_log_likelihood": log_px["train"],
                "log_likelihood_note": "exact mean log p(x) in nats per point of the stored "
                "float32 data under N(mu, W W^T + sigma2 I), computed in float64",
                "expected_log_likelihood": -ppca_entropy(w, cfg.sigma2),
                "column_sq_norms": [float(v) for v in np.sum(w**2, axis=0)],
                "covariance_eigenvalues": [float(v) for v in eigenvalues],
                "sigma2": cfg.sigma2,
            },
            "test_loglik_true_model": log_px["test"],  # = true_model.mean_test_log_likelihood
            "stored_extra": {"W": "(d, k) float64", "mu": "(d,) float64", "sigma2": "() float64"},
        },
    )

"""Probabilistic PCA in closed form, float64 (Tipping & Bishop 1999).

Model: z ~ N(0, I_k), x | z ~ N(W z + mu, sigma2 I_d), so x ~ N(mu, C) with
C = W W^T + sigma2 I_d. With M = W^T W + sigma2 I_k (k x k) every quantity needs only
k x k factorizations: log|C| = (d - k) log sigma2 + log|M| and
C^-1 = sigma2^-1 (I - W M^-1 W^T) (Tipping & Bishop 1999, sec. 3 and appendix).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse.linalg
import torch
from torch import Tensor

LOG_2PI = math.log(2.0 * math.pi)
ML_METHODS = ("auto", "svd", "dense", "lanczos")


def _as_f64(name: str, value: object, ndim: int | None = None) -> Tensor:
    """``value`` (tensor, numpy array or number) as a float64 tensor with ``ndim`` dims."""
    if isinstance(value, Tensor):
        out = value.to(torch.float64)
    elif isinstance(value, np.ndarray | float | int | np.floating | np.integer | list):
        out = torch.as_tensor(np.asarray(value, dtype=np.float64))
    else:
        raise TypeError(f"{name} must be a torch.Tensor, numpy array or number; "
                        f"got {type(value).__name__}")
    if ndim is not None and out.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D; got shape {tuple(out.shape)}")
    return out


def _positive_scalar(name: str, value: object) -> float:
    """``value`` (number or one-element tensor/array) as a float > 0."""
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a positive number; got {value!r}") from None
    if not out > 0.0 or not math.isfinite(out):
        raise ValueError(f"{name} must be a finite number > 0; got {out!r}")
    return out


def _check_model(x: Tensor | None, W: Tensor, mu: Tensor) -> tuple[int, int]:
    d, k = W.shape
    if mu.shape != (d,):
        raise ValueError(f"mu must have shape ({d},) to match W {tuple(W.shape)}; "
                         f"got {tuple(mu.shape)}")
    if x is not None and (x.dim() != 2 or x.shape[1] != d):
        raise ValueError(f"x must have shape (N, {d}) to match W {tuple(W.shape)}; "
                         f"got {tuple(x.shape)}")
    return d, k


def m_matrix(W: Tensor, sigma2: float) -> Tensor:
    """M = W^T W + sigma2 I_k (k, k), float64 (Tipping & Bishop 1999, eq. 6)."""
    w = _as_f64("W", W, 2)
    s2 = _positive_scalar("sigma2", sigma2)
    return w.T @ w + s2 * torch.eye(w.shape[1], dtype=torch.float64, device=w.device)


def ppca_covariance(W: Tensor, sigma2: float) -> Tensor:
    """C = W W^T + sigma2 I_d (d, d), the marginal covariance of x (Tipping & Bishop 1999)."""
    w = _as_f64("W", W, 2)
    s2 = _positive_scalar("sigma2", sigma2)
    return w @ w.T + s2 * torch.eye(w.shape[0], dtype=torch.float64, device=w.device)


def ppca_log_likelihood(x: Tensor, W: Tensor, mu: Tensor, sigma2: float) -> Tensor:
    """Per-point log p(x) = log N(x; mu, W W^T + sigma2 I), (N,), float64.

    log p(x) = -1/2 [d log 2 pi + log|C| + (x - mu)^T C^-1 (x - mu)] with the cheap form
    log|C| = (d - k) log sigma2 + log|M| and
    (x - mu)^T C^-1 (x - mu) = [||r||^2 - ||L^-1 W^T r||^2] / sigma2, M = L L^T, r = x - mu
    (Tipping & Bishop 1999, eqs. 4-5 and appendix A; reference sheet, pPCA).
    """
    xx = _as_f64("x", x, 2)
    w = _as_f64("W", W, 2)
    m = _as_f64("mu", mu, 1)
    s2 = _positive_scalar("sigma2", sigma2)
    d, k = _check_model(xx, w, m)
    chol = torch.linalg.cholesky(m_matrix(w, s2))
    r = xx - m
    proj = torch.linalg.solve_triangular(chol, (r @ w).T, upper=False)  # (k, N)
    quad = ((r * r).sum(-1) - (proj * proj).sum(0)) / s2
    log_det = (d - k) * math.log(s2) + 2.0 * torch.log(torch.diagonal(chol)).sum()
    return -0.5 * (d * LOG_2PI + log_det + quad)


@dataclass(frozen=True)
class PPCAFit:
    """Maximum-likelihood pPCA (Tipping & Bishop 1999, eqs. 7-8 and 15).

    W (d, k) = U_k (Lambda_k - sigma2 I)^1/2 (R = I), mu (d,) the sample mean, sigma2 the
    mean of the d - k smallest eigenvalues of S (1/N covariance), eigvals (k,) the k largest
    eigenvalues of S in descending order, eigvecs (d, k) their unit eigenvectors (sign fixed
    so the largest-magnitude entry is positive), and max_loglik_per_point = L* / N.
    """

    W: Tensor
    mu: Tensor
    sigma2: float
    eigvals: Tensor
    eigvecs: Tensor
    max_loglik_per_point: float


def _fix_signs(vecs: Tensor) -> Tensor:
    idx = vecs.abs().argmax(dim=0)
    signs = torch.sign(vecs[idx, torch.arange(vecs.shape[1])])
    signs[signs == 0] = 1.0
    return vecs * signs


def _top_eigen(xc: Tensor, k: int, method: str) -> tuple[Tensor, Tensor, float]:
    """Leading k eigenpairs (descending) of S = xc^T xc / N and trace(S)."""
    n, d = xc.shape
    if method == "auto":
        if n <= d:
            method = "svd"
        elif d <= 1024 or 10 * k > d:
            method = "dense"
        else:
            method = "lanczos"
    if method == "svd":
        _, s, vh = torch.linalg.svd(xc, full_matrices=False)
        vals = s[:k] ** 2 / n
        vecs = vh[:k].T
        trace = float((xc * xc).sum() / n)
        return vals, vecs, trace
    cov = (xc.T @ xc / n).cpu().numpy()
    trace = float(np.trace(cov))
    if method == "lanczos" and k >= d - 1:
        method = "dense"
    if method == "lanczos":
        v0 = np.random.default_rng(0).standard_normal(d)
        try:
            vals_np, vecs_np = scipy.sparse.linalg.eigsh(cov, k=k, which="LA", tol=0.0, v0=v0)
        except scipy.sparse.linalg.ArpackNoConvergence:
            method = "dense"
    if method == "dense":
        vals_np, vecs_np = scipy.linalg.eigh(cov, subset_by_index=[d - k, d - 1])
    order = np.argsort(vals_np)[::-1]
    vals = torch.from_numpy(np.ascontiguousarray(vals_np[order])).to(xc.device)
    vecs = torch.from_numpy(np.ascontiguousarray(vecs_np[:, order])).to(xc.device)
    return vals, vecs, trace


def ppca_ml(x: Tensor, k: int, method: str = "auto") -> PPCAFit:
    """Closed-form maximum-likelihood pPCA of the rows of ``x`` (N, d) with k latent dims.

    Tipping & Bishop 1999, eqs. 7, 8 and 15 (reference sheet, pPCA maximum likelihood):
    mu = x-bar; S = (1/N) sum_n (x_n - mu)(x_n - mu)^T (1/N, not 1/(N-1));
    sigma2_ML = (trace S - sum_{j<=k} lambda_j) / (d - k), the mean of the d - k smallest
    eigenvalues; W_ML = U_k (Lambda_k - sigma2_ML I)^1/2; and
    L* / N = -1/2 [d log 2 pi + sum_{j<=k} log lambda_j + (d - k) log sigma2_ML + d].
    Only the leading k eigenpairs and the trace are needed. ``method``: "svd" (thin SVD of
    the centred data, O(N^2 d), chosen by "auto" when N <= d), "dense" (eigh of the d x d
    covariance, top-k subset; "auto" when d <= 1024 or k > d/10), "lanczos" (ARPACK on the
    covariance to machine precision; "auto" otherwise, e.g. d = 4096 with small k).
    """
    xx = _as_f64("x", x, 2)
    n, d = xx.shape
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k < d:
        raise ValueError(f"k must be an integer in 1..{d - 1} (d = {d}); got {k!r}")
    if k > n - 2:
        raise ValueError(f"k must be <= N - 2 = {n - 2} (the centred data have rank <= N - 1 "
                         f"and sigma2_ML needs rank > k); got k = {k} with x {tuple(xx.shape)}")
    if method not in ML_METHODS:
        raise ValueError(f"method must be one of {', '.join(ML_METHODS)}; got {method!r}")
    k = int(k)
    mu = xx.mean(0)
    vals, vecs, trace = _top_eigen(xx - mu, k, method)
    sigma2 = (trace - float(vals.sum())) / (d - k)
    if not sigma2 > 1e-12 * max(trace / d, 1e-300):
        raise ValueError(f"k = {k} leaves no residual variance (sigma2_ML = {sigma2:.3g}): the "
                         f"data have rank <= k; choose a k below the rank of x")
    vecs = _fix_signs(vecs)
    W = vecs * torch.sqrt(torch.clamp(vals - sigma2, min=0.0))
    loglik = -0.5 * (d * LOG_2PI + float(torch.log(vals).sum()) + (d - k) * math.log(sigma2) + d)
    return PPCAFit(W=W, mu=mu, sigma2=sigma2, eigvals=vals, eigvecs=vecs,
                   max_loglik_per_point=loglik)


def ppca_posterior(x: Tensor, W: Tensor, mu: Tensor, sigma2: float) -> tuple[Tensor, Tensor]:
    """Exact posterior p(z|x) = N(M^-1 W^T (x - mu), sigma2 M^-1): mean (N, k), cov (k, k).

    Tipping & Bishop 1999, eq. 6 (reference sheet, exact posterior).
    """
    xx = _as_f64("x", x, 2)
    w = _as_f64("W", W, 2)
    m = _as_f64("mu", mu, 1)
    s2 = _positive_scalar("sigma2", sigma2)
    _check_model(xx, w, m)
    mm = m_matrix(w, s2)
    mean = torch.linalg.solve(mm, ((xx - m) @ w).T).T
    cov = s2 * torch.linalg.inv(mm)
    return mean, 0.5 * (cov + cov.T)

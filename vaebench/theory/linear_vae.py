"""The linear VAE on pPCA in closed form, float64 (Lucas, Tucker, Grosse & Norouzi 2019).

Decoder p(x|z) = N(W z + mu, sigma2 I_d), prior p(z) = N(0, I_k); encoder
q(z|x) = N(m, diag D) with m = V x + b (V is (k, d), b and D are (k,)). Shapes: x (N, d),
W (d, k), mu (d,), sigma2 > 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from vaebench.theory.ppca import (
    LOG_2PI,
    _as_f64,
    _check_model,
    _positive_scalar,
    m_matrix,
    ppca_posterior,
)


@dataclass(frozen=True)
class LinearELBO:
    """Per-point ELBO (N,) and its two terms: elbo = recon - kl. Fields are also readable by
    key (``out["elbo"]``), like a dict."""

    elbo: Tensor
    recon: Tensor
    kl: Tensor

    def __getitem__(self, key: str) -> Tensor:
        if key not in ("elbo", "recon", "kl"):
            raise KeyError(f"{key!r}; valid keys: elbo, recon, kl")
        return getattr(self, key)


def _encoder(x: Tensor, W: Tensor, V: object, b: object, D_diag: object
             ) -> tuple[Tensor, Tensor, Tensor]:
    d, k = W.shape
    v = _as_f64("V", V, 2)
    bb = _as_f64("b", b, 1)
    dd = _as_f64("D_diag", D_diag, 1)
    if v.shape != (k, d):
        raise ValueError(f"V must have shape ({k}, {d}) to match W {tuple(W.shape)}; "
                         f"got {tuple(v.shape)}")
    if bb.shape != (k,) or dd.shape != (k,):
        raise ValueError(f"b and D_diag must have shape ({k},); got {tuple(bb.shape)} and "
                         f"{tuple(dd.shape)}")
    if not bool((dd > 0).all()):
        raise ValueError(f"D_diag must be > 0 (variances); got minimum {float(dd.min())!r}")
    return x @ v.T + bb, v, dd


def linear_vae_elbo(x: Tensor, W: Tensor, mu: Tensor, sigma2: float, V: Tensor, b: Tensor,
                    D_diag: Tensor) -> LinearELBO:
    """Analytic ELBO of the linear VAE per point, with its reconstruction and KL terms.

    Lucas et al. 2019, sec. 4 (reference sheet, linear VAE): with m = V x + b,
    E_q log p(x|z) = -(d/2) log(2 pi sigma2) - [||x - mu - W m||^2 + sum_j D_jj ||w_j||^2]
    / (2 sigma2) and KL(q || p(z)) = 1/2 [sum_j D_jj + ||m||^2 - k - sum_j log D_jj].
    """
    xx = _as_f64("x", x, 2)
    w = _as_f64("W", W, 2)
    mm = _as_f64("mu", mu, 1)
    s2 = _positive_scalar("sigma2", sigma2)
    d, k = _check_model(xx, w, mm)
    m, _, dd = _encoder(xx, w, V, b, D_diag)
    resid = xx - mm - m @ w.T
    trace_term = (dd * (w * w).sum(0)).sum()
    recon = -0.5 * d * (LOG_2PI + math.log(s2)) - ((resid * resid).sum(-1) + trace_term) / (2 * s2)
    kl = 0.5 * (dd.sum() + (m * m).sum(-1) - k - torch.log(dd).sum())
    return LinearELBO(elbo=recon - kl, recon=recon, kl=kl)


def kl_gaussians(m1: Tensor, S1: Tensor, m2: Tensor, S2: Tensor) -> Tensor:
    """KL(N(m1, S1) || N(m2, S2)) for full covariances, broadcasting over leading dims.

    KL = 1/2 [tr(S2^-1 S1) + (m2 - m1)^T S2^-1 (m2 - m1) - k + log|S2| - log|S1|]
    (Rasmussen & Williams 2006, eq. A.23). Means (..., k), covariances (..., k, k), both
    symmetric positive definite; computed with Cholesky factors.
    """
    a1 = _as_f64("m1", m1)
    a2 = _as_f64("m2", m2)
    c1 = _as_f64("S1", S1)
    c2 = _as_f64("S2", S2)
    k = a1.shape[-1] if a1.dim() else 0
    for name, c in (("S1", c1), ("S2", c2)):
        if c.dim() < 2 or c.shape[-2:] != (k, k):
            raise ValueError(f"{name} must have shape (..., {k}, {k}) to match m1; "
                             f"got {tuple(c.shape)}")
    if a2.shape[-1:] != (k,):
        raise ValueError(f"m2 must have shape (..., {k}); got {tuple(a2.shape)}")
    l1, info1 = torch.linalg.cholesky_ex(c1)
    l2, info2 = torch.linalg.cholesky_ex(c2)
    if bool((info1 != 0).any()) or bool((info2 != 0).any()):
        raise ValueError("S1 and S2 must be symmetric positive definite")
    batch = torch.broadcast_shapes(l1.shape[:-2], l2.shape[:-2])
    l1b = l1.expand(*batch, k, k)
    l2b = l2.expand(*batch, k, k)
    trace = (torch.linalg.solve_triangular(l2b, l1b, upper=False) ** 2).sum((-2, -1))
    diff = (a2 - a1).unsqueeze(-1)
    batch_q = torch.broadcast_shapes(l2.shape[:-2], diff.shape[:-2])
    y = torch.linalg.solve_triangular(l2.expand(*batch_q, k, k), diff.expand(*batch_q, k, 1),
                                      upper=False)
    quad = (y * y).sum((-2, -1))
    log_det1 = 2.0 * torch.log(torch.diagonal(l1, dim1=-2, dim2=-1)).sum(-1)
    log_det2 = 2.0 * torch.log(torch.diagonal(l2, dim1=-2, dim2=-1)).sum(-1)
    return 0.5 * (trace + quad - k + log_det2 - log_det1)


def kl_to_posterior(x: Tensor, W: Tensor, mu: Tensor, sigma2: float, V: Tensor, b: Tensor,
                    D_diag: Tensor) -> Tensor:
    """KL(q(z|x) || p(z|x)) per point (N,), with p(z|x) = N(M^-1 W^T (x - mu), sigma2 M^-1).

    The gap of the ELBO: ELBO = log p(x) - KL(q(z|x) || p(z|x)) exactly (Lucas et al. 2019;
    reference sheet, linear VAE). Uses ``ppca_posterior`` and ``kl_gaussians``.
    """
    xx = _as_f64("x", x, 2)
    w = _as_f64("W", W, 2)
    mm = _as_f64("mu", mu, 1)
    s2 = _positive_scalar("sigma2", sigma2)
    _check_model(xx, w, mm)
    m, _, dd = _encoder(xx, w, V, b, D_diag)
    post_mean, post_cov = ppca_posterior(xx, w, mm, s2)
    return kl_gaussians(m, torch.diag(dd), post_mean, post_cov)


def optimal_diagonal_encoder(W: Tensor, mu: Tensor, sigma2: float) -> tuple[Tensor, Tensor, Tensor]:
    """Best diagonal-Gaussian linear encoder for a fixed decoder: (V*, b*, D*).

    V* = M^-1 W^T (k, d), b* = -V* mu (k,), D*_jj = sigma2 / M_jj (k,) (Lucas et al. 2019,
    sec. 4; reference sheet, tightness). The mean is the exact posterior mean and
    D*_jj = 1 / (Sigma_post^-1)_jj minimizes KL(N(m, diag D) || N(m, Sigma_post)) over D.
    """
    w = _as_f64("W", W, 2)
    mm = _as_f64("mu", mu, 1)
    s2 = _positive_scalar("sigma2", sigma2)
    _check_model(None, w, mm)
    mmat = m_matrix(w, s2)
    v = torch.linalg.solve(mmat, w.T)
    return v, -(v @ mm), s2 / torch.diagonal(mmat)


def diagonal_gap(W: Tensor, sigma2: float) -> float:
    """KL(q* || p(z|x)) of the optimal diagonal encoder: 1/2 (sum_j log M_jj - log|M|) >= 0.

    The same for every x; zero if and only if M is diagonal, i.e. W has orthogonal columns
    (Hadamard's inequality; Lucas et al. 2019; reference sheet, tightness).
    """
    mmat = m_matrix(W, sigma2)
    chol = torch.linalg.cholesky(mmat)
    log_det = 2.0 * torch.log(torch.diagonal(chol)).sum()
    return float(0.5 * (torch.log(torch.diagonal(mmat)).sum() - log_det))


def _orthonormal_basis(a: Tensor) -> Tensor:
    u, s, _ = torch.linalg.svd(a, full_matrices=False)
    if s.numel() == 0 or float(s[0]) == 0.0:
        return u[:, :0]
    tol = max(a.shape) * torch.finfo(torch.float64).eps * float(s[0])
    return u[:, : int((s > tol).sum())]


def subspace_similarity(A: Tensor, B: Tensor) -> float:
    """Mean squared cosine of the principal angles between the column spaces of A and B.

    ||Q_A^T Q_B||_F^2 / r in [0, 1], with Q orthonormal bases (Bjorck & Golub 1973: the
    singular values of Q_A^T Q_B are the cosines of the principal angles). A (d, k_A),
    B (d, k_B); r = max(rank A, rank B), so for full-rank A, B with k columns it is
    ||Q_A^T Q_B||_F^2 / k, and a missing (collapsed) direction counts as orthogonal.
    Invariant to any invertible mixing of the columns (e.g. the rotation R of pPCA).
    """
    a = _as_f64("A", A, 2)
    bm = _as_f64("B", B, 2)
    if a.shape[0] != bm.shape[0]:
        raise ValueError(f"A and B must have the same number of rows; got {tuple(a.shape)} and "
                         f"{tuple(bm.shape)}")
    qa = _orthonormal_basis(a)
    qb = _orthonormal_basis(bm)
    r = max(qa.shape[1], qb.shape[1])
    if r == 0:
        raise ValueError("A and B are both zero: their column spaces are empty")
    return float(((qa.T @ qb) ** 2).sum() / r)


def linear_gaussian_mi(V: Tensor, D_diag: Tensor, cov_x: Tensor) -> float:
    """I_q(x; z) for z = V x + b + D^1/2 eps with Gaussian data x ~ N(mu_x, cov_x).

    q(z) = N(V mu_x + b, V cov_x V^T + D) and q(z|x) = N(V x + b, D), so
    I = h(z) - h(z|x) = 1/2 log|V cov_x V^T + D| - 1/2 sum_j log D_jj (Gaussian entropy,
    Cover & Thomas 2006, Theorem 8.4.1; the Gaussian-channel MI, ibid. sec. 9.1). b and mu_x
    do not enter. V (k, d), D_diag (k,), cov_x (d, d).
    """
    v = _as_f64("V", V, 2)
    dd = _as_f64("D_diag", D_diag, 1)
    cx = _as_f64("cov_x", cov_x, 2)
    k, d = v.shape
    if dd.shape != (k,) or cx.shape != (d, d):
        raise ValueError(f"D_diag must have shape ({k},) and cov_x ({d}, {d}) to match V "
                         f"{(k, d)}; got {tuple(dd.shape)} and {tuple(cx.shape)}")
    if not bool((dd > 0).all()):
        raise ValueError(f"D_diag must be > 0 (variances); got minimum {float(dd.min())!r}")
    cov_z = v @ cx @ v.T + torch.diag(dd)
    chol = torch.linalg.cholesky(0.5 * (cov_z + cov_z.T))
    log_det = 2.0 * torch.log(torch.diagonal(chol)).sum()
    return float(0.5 * (log_det - torch.log(dd).sum()))


def gaussian_aggregate_terms(V: Tensor, D_diag: Tensor, cov_x: Tensor,
                             mean_z: Tensor | None = None) -> dict[str, float]:
    """Index-code MI, total correlation and dimension-wise KL of a linear encoder on Gaussian data.

    q(z|x) = N(V x + b, D) and x ~ N(mu_x, cov_x) give the aggregate posterior
    q(z) = N(V mu_x + b, Sigma) with Sigma = V cov_x V^T + D, so (Chen et al. 2018, eq. 2, in
    closed form; Cover & Thomas 2006, Theorem 8.4.1):
      MI = 1/2 (log|Sigma| - log|D|), TC = 1/2 (sum_j log Sigma_jj - log|Sigma|),
      DWKL = sum_j KL(N(m_j, Sigma_jj) || N(0, 1)), m = V mu_x + b (``mean_z``, 0 if None).
    Their sum is the rate E_x KL(q(z|x) || p(z)).
    """
    v = _as_f64("V", V, 2)
    dd = _as_f64("D_diag", D_diag, 1)
    cx = _as_f64("cov_x", cov_x, 2)
    sigma = v @ cx @ v.T + torch.diag(dd)
    log_det = float(torch.linalg.slogdet(0.5 * (sigma + sigma.T))[1])
    diag = torch.diagonal(sigma)
    m2 = torch.zeros_like(diag) if mean_z is None else _as_f64("mean_z", mean_z, 1) ** 2
    return {"mi": 0.5 * (log_det - float(torch.log(dd).sum())),
            "tc": 0.5 * (float(torch.log(diag).sum()) - log_det),
            "dwkl": float(0.5 * (diag + m2 - 1.0 - torch.log(diag)).sum())}

"""Estimators and their standard errors for the evaluate stage (batched torch, no I/O).

Every function takes per-point (or per-sample) tensors and returns tensors or
(mean, standard error) pairs as Python floats. Sums are accumulated in float64 on the
device of the input. The standard errors follow the agreement-test rules of the
reference sheet (Agreement tests): for a dataset-level mean over fixed x where only eps is
random, use the within-point variance (``mc_mean_se``), never the spread across points.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor

from kernels.reference import LOG_2PI
from vaebench.objectives import betatc_terms, gaussian_log_density_matrix, iwae_bound


def as_float64(name: str, value: object, ndim: int | None = None) -> Tensor:
    """``value`` as a float64 tensor (numpy arrays accepted), checking its number of dims."""
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array; got {type(value).__name__}")
    if ndim is not None and value.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D; got shape {tuple(value.shape)}")
    return value.to(torch.float64)


def _same_shape(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape; "
                         f"got {tuple(a.shape)} and {tuple(b.shape)}")


def _positive_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def se_over_points(values: Tensor) -> tuple[float, float]:
    """Mean of per-point values (N,) and its usual standard error s / sqrt(N).

    s is the sample standard deviation across the N points (1/(N-1)). This is the SE of a
    test-set mean when the points are an iid sample of the data distribution.
    """
    v = as_float64("values", values, 1)
    n = v.shape[0]
    if n < 2:
        raise ValueError(f"values must hold at least 2 points for a standard error; got {n}")
    return float(v.mean()), float(v.std(correction=1) / math.sqrt(n))


def mc_mean_se(values: Tensor) -> tuple[float, float]:
    """Dataset mean of (S, N) Monte Carlo values over fixed x, and its standard error.

    Only eps is random (reference sheet, Agreement tests): SE^2 = (1/N^2) sum_x s_x^2 / S,
    with s_x^2 the sample variance (1/(S-1)) over the S draws for point x. The spread
    across different x is not part of this error.
    """
    v = as_float64("values", values, 2)
    s, n = v.shape
    if s < 2 or n < 1:
        raise ValueError(f"values must have shape (S >= 2, N >= 1); got {(s, n)}")
    var_x = v.var(dim=0, correction=1)
    return float(v.mean()), float(torch.sqrt(var_x.sum() / (n * n * s)))


def iw_bounds_crn(log_w: Tensor, ks: Iterable[int]) -> dict[int, Tensor]:
    """L_k per point (N,) from the FIRST k of the K draws in ``log_w`` (K, N), for each k.

    Burda et al. 2016, eq. 8, via ``objectives.iwae_bound``. Reusing the first k draws for
    every k gives common random numbers, so L_k <= L_k' is compared on the same draws
    (reference sheet, Agreement tests).
    """
    lw = as_float64("log_w", log_w, 2)
    big_k = lw.shape[0]
    out: dict[int, Tensor] = {}
    for k in ks:
        k = _positive_int("ks entry", k)
        if k > big_k:
            raise ValueError(f"ks entry {k} exceeds the K = {big_k} draws in log_w; "
                             f"valid choices: 1..{big_k}")
        out[k] = iwae_bound(lw[:k])
    return out


def kl_mc_variance(mu: Tensor, logvar: Tensor) -> Tensor:
    """Variance of the single-sample Monte Carlo KL k = log q(z|x) - log p(z), per row.

    With z = mu + sigma eps, k = sum_j [-log sigma_j + mu_j^2/2 + mu_j sigma_j eps_j
    + (sigma_j^2 - 1) eps_j^2 / 2]. For eps ~ N(0, 1): Var eps = 1, Var eps^2 = 2 and
    Cov(eps, eps^2) = E eps^3 = 0, so Var k = sum_j [mu_j^2 sigma_j^2 + 1/2 (sigma_j^2 - 1)^2]
    (reference sheet, Gaussian latent layer).
    """
    m = as_float64("mu", mu)
    lv = as_float64("logvar", logvar)
    _same_shape("mu", m, "logvar", lv)
    var = torch.exp(lv)
    return (m * m * var + 0.5 * (var - 1.0) ** 2).sum(-1)


def kl_per_dim(mu: Tensor, logvar: Tensor) -> Tensor:
    """Analytic KL(q(z_j|x) || N(0, 1)) per latent dimension (D,), averaged over all rows.

    Kingma & Welling 2014, appendix B, term by term: 1/2 (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2).
    """
    m = as_float64("mu", mu)
    lv = as_float64("logvar", logvar)
    _same_shape("mu", m, "logvar", lv)
    if m.dim() < 1:
        raise ValueError(f"mu must have a latent dimension; got shape {tuple(m.shape)}")
    kl = 0.5 * (m * m + torch.exp(lv) - 1.0 - lv)
    return kl.reshape(-1, kl.shape[-1]).mean(0)


def active_units(mu: Tensor, threshold: float = 0.01) -> tuple[int, Tensor]:
    """Number of active units and the activity Cov_x(E_q[z_u]) per unit (D,).

    Burda et al. 2016, sec. 5.2: unit u is active when A_u = Cov_x(E_{q(z|x)}[z_u]) > 0.01.
    ``mu`` (N, D) holds the encoder means E_q[z | x_n]; the variance over the N points uses
    1/N (the population variance of the given points).
    """
    m = as_float64("mu", mu, 2)
    if m.shape[0] < 2:
        raise ValueError(f"mu must hold at least 2 rows; got shape {tuple(m.shape)}")
    if not threshold >= 0.0:
        raise ValueError(f"threshold must be >= 0; got {threshold!r}")
    activity = m.var(dim=0, correction=0)
    return int((activity > threshold).sum()), activity


def _check_latents(z: Tensor, mu: Tensor, logvar: Tensor, log_qz_x: Tensor) -> None:
    if z.dim() != 2:
        raise ValueError(f"z must be 2-D (N, D); got shape {tuple(z.shape)}")
    _same_shape("z", z, "mu", mu)
    _same_shape("z", z, "logvar", logvar)
    if log_qz_x.shape != z.shape[:1]:
        raise ValueError(f"log_qz_x must have shape ({z.shape[0]},); got {tuple(log_qz_x.shape)}")


def mutual_information_per_point(z: Tensor, mu: Tensor, logvar: Tensor, log_qz_x: Tensor,
                                 chunk_elements: int = 2 ** 22,
                                 leave_one_out: bool = False) -> Tensor:
    """Per-point terms log q(z_i|x_i) - log (1/N) sum_n q(z_i|x_n), (N,), chunked over i.

    See ``mutual_information``. The (i, n) block of log-densities is
    log N(z_i; mu_n, diag s_n^2) = -1/2 [sum_j log(2 pi s_nj^2) + sum_j (z_ij - mu_nj)^2 / s_nj^2]
    with the square expanded into matrix products (z^2) P^T - 2 z (mu P)^T + sum_j mu_nj^2 P_nj,
    P = 1/s^2, in float64 after centring z and mu on the mean of mu. The diagonal n = i uses
    ``log_qz_x`` itself, so every term is at most log N exactly. Rows i are processed in
    chunks of ``chunk_elements // N`` so that only a (chunk, N) block is held.
    """
    zz = as_float64("z", z)
    m = as_float64("mu", mu)
    lv = as_float64("logvar", logvar)
    lq = as_float64("log_qz_x", log_qz_x)
    _check_latents(zz, m, lv, lq)
    chunk_elements = _positive_int("chunk_elements", chunk_elements)
    n = zz.shape[0]
    rows = max(1, chunk_elements // n)
    centre = m.mean(0)
    zz = zz - centre
    m = m - centre
    prec = torch.exp(-lv)  # (N, D)
    mu_prec = m * prec
    const = -0.5 * ((LOG_2PI + lv).sum(-1) + (m * mu_prec).sum(-1))  # (N,)
    out = torch.empty(n, dtype=torch.float64, device=zz.device)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        zc = zz[start:stop]
        mat = const[None, :] - 0.5 * ((zc * zc) @ prec.T) + zc @ mu_prec.T  # (c, N)
        idx = torch.arange(start, stop, device=zz.device)
        if leave_one_out:  # the mixture of the other N - 1 points
            mat[idx - start, idx] = -math.inf
            out[start:stop] = lq[start:stop] - (torch.logsumexp(mat, dim=1) - math.log(n - 1))
        else:
            mat[idx - start, idx] = lq[start:stop]
            out[start:stop] = lq[start:stop] - (torch.logsumexp(mat, dim=1) - math.log(n))
    return out


def mutual_information(z: Tensor, mu: Tensor, logvar: Tensor, log_qz_x: Tensor,
                       chunk_elements: int = 2 ** 22) -> tuple[float, float]:
    """I_q(x; z) estimated with the N given points' mixture as the aggregate posterior.

    mean_i [log q(z_i|x_i) - log (1/N) sum_n q(z_i|x_n)], with z_i ~ q(z|x_i) (reference
    sheet: minibatch mixture for q(z); Chen et al. 2018, sec. 3.1, index-code MI). Each
    term is at most log N, so the estimate is at most log N. With x_1..x_N iid data points
    it is the InfoNCE lower bound on I_q(x; z) (Poole et al. 2019, eq. 12 with critic
    log q(z|x)); it is an unbiased one-sample estimate of the MI between the index n and z
    for the uniform mixture over the N points. z is (N, D), mu and logvar (N, D), log_qz_x
    (N,) = log N(z_i; mu_i, diag exp(logvar_i)). Memory is chunked (N = 10000, D = 20 fits).
    The SE is the spread of the per-point terms / sqrt(N) (approximate: the terms share the
    mixture).
    """
    return se_over_points(mutual_information_per_point(z, mu, logvar, log_qz_x, chunk_elements))


def mutual_information_upper(z: Tensor, mu: Tensor, logvar: Tensor, log_qz_x: Tensor,
                             chunk_elements: int = 2 ** 22) -> tuple[float, float]:
    """Leave-one-out upper bound on I_q(x; z): mean_i [log q(z_i|x_i) - log (1/(N-1)) sum_{n!=i}
    q(z_i|x_n)] (Poole et al. 2019, eq. 13). With ``mutual_information`` it brackets I:
    lower <= I <= upper, each in expectation over the N iid points. (mean, se)."""
    if as_float64("z", z).shape[0] < 2:
        raise ValueError("the leave-one-out bound needs at least 2 points")
    return se_over_points(mutual_information_per_point(z, mu, logvar, log_qz_x, chunk_elements,
                                                       leave_one_out=True))


def tc_terms(z: Tensor, mu: Tensor, logvar: Tensor, log_qz_x: Tensor, log_pz: Tensor,
             dataset_size: int, batch_size: int) -> dict[str, Tensor]:
    """Per-sample MI, TC, DWKL and Monte Carlo KL (N,) from minibatch-weighted sampling.

    Chen et al. 2018, eq. 2 and sec. 3.1, through ``objectives.betatc_terms`` on consecutive
    minibatches of ``batch_size`` rows (the last one may be smaller; M is its size), i.e. the
    estimator the beta-TCVAE trains with. TC keeps the constant (K - 1) log(N M).
    kl_mc = log q(z|x) - log p(z) = mi + tc + dwkl per sample (a telescoping identity).
    """
    zz = as_float64("z", z)
    m = as_float64("mu", mu)
    lv = as_float64("logvar", logvar)
    lq = as_float64("log_qz_x", log_qz_x)
    lp = as_float64("log_pz", log_pz)
    _check_latents(zz, m, lv, lq)
    _same_shape("log_qz_x", lq, "log_pz", lp)
    dataset_size = _positive_int("dataset_size", dataset_size)
    batch_size = _positive_int("batch_size", batch_size)
    parts: dict[str, list[Tensor]] = {"mi": [], "tc": [], "dwkl": []}
    for start in range(0, zz.shape[0], batch_size):
        sl = slice(start, start + batch_size)
        terms = betatc_terms(zz[sl], m[sl], lv[sl], lq[sl], lp[sl], dataset_size)
        for key in parts:
            parts[key].append(terms[key])
    out = {key: torch.cat(val) for key, val in parts.items()}
    out["kl_mc"] = lq - lp
    return out


def tc_decomposition(z: Tensor, mu: Tensor, logvar: Tensor, log_qz_x: Tensor, log_pz: Tensor,
                     dataset_size: int, batch_size: int) -> dict[str, tuple[float, float]]:
    """(mean, se) of mi, tc, dwkl and kl_mc over samples (Chen et al. 2018, eq. 2).

    The per-sample values come from ``tc_terms`` (minibatch-weighted sampling, TC with its
    constant (K - 1) log(N M)); the SE is the spread across samples / sqrt(N).
    """
    terms = tc_terms(z, mu, logvar, log_qz_x, log_pz, dataset_size, batch_size)
    return {key: se_over_points(val) for key, val in terms.items()}


def gaussian_entropy(cov: Tensor) -> float:
    """Differential entropy of N(m, cov) in nats: 1/2 [d log(2 pi e) + log|cov|], float64.

    Cover & Thomas 2006, Theorem 8.4.1. ``cov`` (d, d) must be symmetric positive definite.
    """
    c = as_float64("cov", cov, 2)
    d = c.shape[0]
    if c.shape != (d, d) or d == 0:
        raise ValueError(f"cov must be a non-empty square matrix; got shape {tuple(c.shape)}")
    chol, info = torch.linalg.cholesky_ex(c)
    if int(info) != 0:
        raise ValueError("cov must be symmetric positive definite; its Cholesky factorization "
                         f"failed at column {int(info)}")
    log_det = 2.0 * torch.log(torch.diagonal(chol)).sum()
    return float(0.5 * (d * (1.0 + LOG_2PI) + log_det))


def aggregate_log_density(z: Tensor, mu: Tensor, logvar: Tensor,
                          chunk_elements: int = 2 ** 22) -> tuple[Tensor, Tensor]:
    """log q(z_i) and log q(z_ij) under the aggregate posterior of the N given points.

    q(z) = (1/N) sum_n q(z|x_n) and q(z_j) = (1/N) sum_n q(z_j|x_n), evaluated at each z_i
    (Chen et al. 2018, eq. 2, with the dataset's own points as the mixture; unlike the
    training-time minibatch-weighted sampling it has no (K - 1) log(N M) offset, and a
    collapsed posterior, q(z|x) = p(z), gives TC = 0). Returns (N,) and (N, D), float64,
    chunked over i so that a (chunk, N, D) block is the largest tensor held.
    """
    zz = as_float64("z", z)
    m = as_float64("mu", mu)
    lv = as_float64("logvar", logvar)
    _same_shape("z", zz, "mu", m)
    _same_shape("z", zz, "logvar", lv)
    n, d = zz.shape
    rows = max(1, _positive_int("chunk_elements", chunk_elements) // (n * d))
    log_n = math.log(n)
    joint = torch.empty(n, dtype=torch.float64)
    marg = torch.empty(n, d, dtype=torch.float64)
    for start in range(0, n, rows):
        block = gaussian_log_density_matrix(zz[start:start + rows], m, lv)  # (c, N, D)
        joint[start:start + rows] = torch.logsumexp(block.sum(-1), dim=1) - log_n
        marg[start:start + rows] = torch.logsumexp(block, dim=1) - log_n
    return joint, marg


def tc_terms_mixture(z: Tensor, mu: Tensor, logvar: Tensor, log_qz_x: Tensor,
                     log_pz: Tensor) -> dict[str, Tensor]:
    """Per-sample index-code MI, TC and dimension-wise KL with the N points' mixture as q(z).

    MI + TC + DWKL = log q(z|x) - log p(z) per sample exactly, so their mean is the Monte
    Carlo KL (Chen et al. 2018, eq. 2). The MI term is the estimator of ``mutual_information``.
    """
    log_qz, log_qz_marg = aggregate_log_density(z, mu, logvar)
    lq = as_float64("log_qz_x", log_qz_x)
    lp = as_float64("log_pz", log_pz)
    marg = log_qz_marg.sum(-1)
    return {"mi": lq - log_qz, "tc": log_qz - marg, "dwkl": marg - lp, "kl_mc": lq - lp}

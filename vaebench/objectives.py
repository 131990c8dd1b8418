"""Training objectives as pure functions of per-point log-densities (no networks, no I/O).

Every function returns one value per data point (to be maximized); the trainer averages
and negates. Any objective works with any architecture: models only supply
log p(x|z), log p(z), log q(z|x), the KL and (for beta-TCVAE) the latent samples.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from kernels.reference import LOG_2PI


def elbo(log_px_z: Tensor, kl: Tensor, beta: float = 1.0) -> Tensor:
    """beta-ELBO: E_q log p(x|z) - beta * KL(q(z|x) || p(z)).

    beta = 1 is the ELBO of Kingma & Welling 2014 (eq. 3); beta != 1 is the beta-VAE of
    Higgins et al. 2017 (eq. 4).
    """
    return log_px_z - beta * kl


def log_importance_weights(log_px_z: Tensor, log_pz: Tensor, log_qz: Tensor) -> Tensor:
    """log w = log p(x|z) + log p(z) - log q(z|x) (Burda et al. 2016, eq. 7)."""
    return log_px_z + log_pz - log_qz


def iwae_bound(log_w: Tensor) -> Tensor:
    """L_K = log (1/K) sum_i w_i over the leading sample dim of ``log_w`` (K, ...).

    Burda et al. 2016, eq. 8. K = 1 is the ELBO. Computed stably with logsumexp.
    """
    k = log_w.shape[0]
    return torch.logsumexp(log_w, dim=0) - math.log(k)


def iwae_objective(log_w: Tensor) -> Tensor:
    """L_K with the IWAE gradient made explicit: sum_i w~_i grad log w_i, w~ detached.

    Burda et al. 2016, eq. 14: the normalized weights w~_i = w_i / sum_j w_j act as
    constants in the gradient. The value equals ``iwae_bound(log_w)``; the gradient is that
    of the surrogate sum_i w~_i.detach() * log w_i.
    """
    w_norm = torch.softmax(log_w, dim=0).detach()
    surrogate = (w_norm * log_w).sum(0)
    value = iwae_bound(log_w)
    return value.detach() + (surrogate - surrogate.detach())


def gaussian_log_density_matrix(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """[i, m, j] = log N(z_ij; mu_mj, exp(logvar_mj)) for every pair of batch rows (M, M, D)."""
    zi = z.unsqueeze(1)
    mu_m = mu.unsqueeze(0)
    lv_m = logvar.unsqueeze(0)
    return -0.5 * (LOG_2PI + lv_m + (zi - mu_m) ** 2 * torch.exp(-lv_m))


def betatc_terms(z: Tensor, mu: Tensor, logvar: Tensor, log_qz_x: Tensor, log_pz: Tensor,
                 dataset_size: int) -> dict[str, Tensor]:
    """Per-sample index-code MI, total correlation and dimension-wise KL (Chen et al. 2018, eq. 2).

    Minibatch-weighted sampling (Chen et al. 2018, sec. 3.1) over a batch of M rows:
      log q(z_i)    ~ logsumexp_m sum_j log q(z_ij | x_m) - log(N M)
      log q(z_ij)   ~ logsumexp_m log q(z_ij | x_m)       - log(N M)
    so TC = log q(z) - sum_j log q(z_j) keeps the constant (K - 1) log(N M) that
    disentanglement_lib drops. MI + TC + DWKL = log q(z|x) - log p(z) for every sample
    exactly (the telescoping sum), whose mean is the Monte Carlo KL.
    """
    m, k = z.shape
    log_nm = math.log(dataset_size * m)
    mat = gaussian_log_density_matrix(z, mu, logvar)
    log_qz = torch.logsumexp(mat.sum(-1), dim=1) - log_nm
    log_qz_marginals = (torch.logsumexp(mat, dim=1) - log_nm).sum(-1)
    return {
        "mi": log_qz_x - log_qz,
        "tc": log_qz - log_qz_marginals,
        "dwkl": log_qz_marginals - log_pz,
    }


def betatc_objective(log_px_z: Tensor, terms: dict[str, Tensor], alpha: float = 1.0,
                     beta: float = 6.0, gamma: float = 1.0) -> Tensor:
    """beta-TCVAE: E log p(x|z) - alpha MI - beta TC - gamma DWKL (Chen et al. 2018, eq. 4)."""
    return log_px_z - alpha * terms["mi"] - beta * terms["tc"] - gamma * terms["dwkl"]


def hierarchical_log_weights(log_px_z: Tensor, log_p_cond: list[Tensor], log_p_top: Tensor,
                             log_q: list[Tensor]) -> Tensor:
    """log w of a model with stochastic layers z_1..z_L (Burda et al. 2016, sec. 2 and eq. 7):

    log w = log p(x|z_1) + sum_{l<L} log p(z_l|z_{l+1}) + log p(z_L) - sum_l log q(z_l|z_{l-1}),
    with z_0 = x. ``log_p_cond`` holds the L - 1 conditional prior terms, ``log_q`` the L
    encoder terms; one layer gives ``log_importance_weights``.
    """
    return log_px_z + sum(log_p_cond, torch.zeros_like(log_p_top)) + log_p_top - sum(
        log_q, torch.zeros_like(log_p_top))


def k_sample_elbo(log_w: Tensor) -> Tensor:
    """The VAE objective estimated with K samples: (1/K) sum_i log w_i over the leading dim.

    Burda et al. 2016, sec. 5: the "VAE" rows of Table 1 with k > 1 average k draws of the
    ELBO's integrand (their code: ``T.sum(log_ws) / num_samples``); its expectation is the
    ELBO for every K, unlike L_K.
    """
    return log_w.mean(0)

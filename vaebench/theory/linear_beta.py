"""The linear beta-VAE's optimum in closed form: rate, distortion and collapse at every beta.

Model (Lucas, Tucker, Grosse & Norouzi 2019): q(z|x) = N(V(x - mu), diag D),
p(x|z) = N(W z + mu, sigma^2 I), p(z) = N(0, I_k), trained on data with covariance S
(eigenvalues lambda_1 >= ... >= lambda_d) to maximize E_q log p(x|z) - beta KL(q || p(z)).
The derivation is in docs/linear_beta_vae.md; in short:

1. For fixed sigma^2, dividing the objective by beta leaves the ordinary linear VAE's ELBO with
   noise variance beta sigma^2 (plus a constant), so its optimum is Tipping & Bishop's with
   beta sigma^2 in place of sigma^2: column j of W is u_j (lambda_j - beta sigma^2)^1/2 when
   lambda_j > beta sigma^2 (active) and 0 otherwise (collapsed), with D_jj = beta sigma^2 /
   lambda_j and KL_j = 1/2 log(lambda_j / (beta sigma^2)) for an active j, D_jj = 1, KL_j = 0
   for a collapsed one.
2. With sigma^2 learned, it is the mean squared residual per dimension at the optimum,
   sigma^2 = (a beta sigma^2 + sum_{i not active} lambda_i) / d, so
   sigma^2 = sum_{i not active} lambda_i / (d - a beta) with a the number of active columns;
   a is the self-consistent count (lambda_a > beta sigma^2 >= lambda_{a+1}) with the largest
   objective.
3. Then R(beta) = 1/2 sum_{j active} log(lambda_j / (beta sigma^2)) and
   D(beta) = d/2 (log(2 pi sigma^2) + 1) nats per point. beta = 1 gives pPCA's maximum
   likelihood L*/N = -(D + R).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LinearBetaOptimum:
    beta: float
    sigma2: float
    active: int                     # number of latent dimensions that do not collapse
    rate: float                     # R = E_x KL(q(z|x) || p(z)), nats per point
    distortion: float               # D = -E_x E_q log p(x|z), nats per point
    kl_per_dim: tuple[float, ...]   # KL_j, j = 1..k in eigenvalue order

    @property
    def objective(self) -> float:
        """E_q log p(x|z) - beta KL at the optimum: -(D + beta R)."""
        return -(self.distortion + self.beta * self.rate)


def linear_beta_optimum(eigvals: np.ndarray, k: int, beta: float) -> LinearBetaOptimum:
    """The optimum of the linear beta-VAE with k latents on data whose covariance has the
    eigenvalues ``eigvals`` (all d of them, any order), for beta > 0."""
    lam = np.sort(np.asarray(eigvals, dtype=np.float64))[::-1]
    d = lam.shape[0]
    if not 0 < k < d:
        raise ValueError(f"k must be in 1..{d - 1} (d = {d}); got {k}")
    if not beta > 0:
        raise ValueError(f"beta must be > 0; got {beta}")
    if not lam[-1] > 0:
        raise ValueError(f"eigenvalues must be > 0; got minimum {lam[-1]}")
    best: LinearBetaOptimum | None = None
    for a in range(k, -1, -1):
        if d - a * beta <= 0:
            continue
        sigma2 = float(lam[a:].sum() / (d - a * beta))
        noise = beta * sigma2
        if (a > 0 and not lam[a - 1] > noise) or (a < k and not lam[a] <= noise):
            continue  # not self-consistent
        kl = tuple(0.5 * math.log(lam[j] / noise) if j < a else 0.0 for j in range(k))
        found = LinearBetaOptimum(beta=float(beta), sigma2=sigma2, active=a, rate=sum(kl),
                                  distortion=0.5 * d * (math.log(2 * math.pi * sigma2) + 1),
                                  kl_per_dim=kl)
        if best is None or found.objective > best.objective:
            best = found
    if best is None:
        raise ValueError(f"no self-consistent optimum for beta = {beta} (d = {d}, k = {k})")
    return best


def linear_beta_objective(S: np.ndarray, W: np.ndarray, V: np.ndarray, D: np.ndarray,
                          sigma2: float, beta: float) -> tuple[float, float, float]:
    """(objective, rate, distortion) per point of a linear beta-VAE with centred data of
    covariance S (the encoder's bias -V mu and the decoder's mean mu at the data mean).

    E_q log p(x|z) = -d/2 log(2 pi sigma^2) - [tr((I - WV) S (I - WV)^T) + tr(W D W^T)] /
    (2 sigma^2) and KL = 1/2 [sum D + tr(V S V^T) - k - sum log D] (Lucas et al. 2019): the
    reference that tests/theory optimizes numerically against ``linear_beta_optimum``.
    """
    d, k = W.shape
    resid = np.eye(d) - W @ V
    err = np.trace(resid @ S @ resid.T) + np.trace(W @ np.diag(D) @ W.T)
    distortion = 0.5 * d * math.log(2 * math.pi * sigma2) + err / (2 * sigma2)
    rate = 0.5 * (D.sum() + np.trace(V @ S @ V.T) - k - np.log(D).sum())
    return -(distortion + beta * rate), float(rate), float(distortion)

"""Every disentanglement score of one set of codes, with the variants named.

``score_codes`` runs MIG (disentanglement_lib variant), the FactorVAE score, the beta-VAE score
and DCI on the same codes, and names for each factor the latent most related to it (the
largest correlation ratio). The evaluate stage calls it on a model's encoder means.
"""

from __future__ import annotations

import numpy as np

from vaebench.metrics.beta_vae import beta_vae_score
from vaebench.metrics.dci import dci
from vaebench.metrics.factor_vae import factor_vae_score
from vaebench.metrics.mig import mig
from vaebench.metrics.sampler import FactorSampler

MIG_VARIANT = "disentanglement_lib: encoder means in 20 equal-width bins, every factor"
DCI_REGRESSOR = "random forest, 10 trees, depth 10"


def correlation_ratio(codes: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """eta^2 of each code column given a discrete factor: Var(E[c | f]) / Var(c)."""
    total = codes.var(0) + 1e-12
    means = np.zeros_like(codes)
    for v in np.unique(factor):
        sel = factor == v
        means[sel] = codes[sel].mean(0)
    return means.var(0) / total


def score_codes(codes: np.ndarray, factors: np.ndarray, factor_sizes: tuple[int, ...],
                factor_names: tuple[str, ...], seed: int) -> dict:
    """MIG, FactorVAE, beta-VAE and DCI scores of ``codes`` (n, d) against ``factors`` (n, f);
    DCI trains on the first 80% of the rows and tests on the rest."""
    n = len(codes)
    sampler = FactorSampler(factors, tuple(factor_sizes))
    rng = np.random.default_rng(seed)
    cut = int(0.8 * n)
    d = dci(codes[:cut], factors[:cut], codes[cut:], factors[cut:], rng=seed)
    eta = np.stack([correlation_ratio(codes, factors[:, f]) for f in range(factors.shape[1])])
    return {
        "mig": float(mig(codes, factors)["mig"]), "mig_variant": MIG_VARIANT,
        "factor_vae": float(factor_vae_score(codes, sampler, rng)["factor_vae"]),
        "beta_vae": float(beta_vae_score(codes, sampler, rng)["beta_vae"]),
        "dci_disentanglement": float(d["disentanglement"]),
        "dci_completeness": float(d["completeness"]),
        "dci_informativeness": float(d["informativeness"]), "dci_regressor": DCI_REGRESSOR,
        "factor_dims": {name: int(eta[f].argmax()) for f, name in enumerate(factor_names)},
    }

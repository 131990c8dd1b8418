"""Disentanglement metrics: pure functions of precomputed codes and integer ground-truth factors.

- ``mig``: mutual information gap (Chen et al. 2018), disentanglement_lib's 20-bin variant.
- ``factor_vae_score``: majority-vote FactorVAE score (Kim & Mnih 2018).
- ``beta_vae_score``: linear-classifier beta-VAE score (Higgins et al. 2017).
- ``dci``: disentanglement, completeness, informativeness (Eastwood & Williams 2018).

Scores that sample with one factor fixed take a ``FactorSampler`` over the dataset's rows and a
numpy Generator or integer seed; every module docstring states the variant it implements.
"""

from vaebench.metrics.beta_vae import beta_vae_features, beta_vae_score
from vaebench.metrics.dci import (
    completeness,
    completeness_per_factor,
    dci,
    disentanglement,
    disentanglement_per_code,
    importance_matrix,
)
from vaebench.metrics.factor_vae import factor_vae_score, majority_vote_accuracy
from vaebench.metrics.mig import (
    discrete_entropy,
    discrete_mutual_info,
    histogram_discretize,
    mig,
    mig_from_mutual_info,
)
from vaebench.metrics.sampler import FactorSampler

__all__ = [
    "FactorSampler",
    "beta_vae_features",
    "beta_vae_score",
    "completeness",
    "completeness_per_factor",
    "dci",
    "discrete_entropy",
    "discrete_mutual_info",
    "disentanglement",
    "disentanglement_per_code",
    "factor_vae_score",
    "histogram_discretize",
    "importance_matrix",
    "majority_vote_accuracy",
    "mig",
    "mig_from_mutual_info",
]

"""Closed forms (pPCA, the linear VAE) and the theory checks of the report stage."""

from vaebench.theory.checks import CheckRecord, RawRecord, bonferroni_z, finalize
from vaebench.theory.linear_vae import (
    LinearELBO,
    diagonal_gap,
    kl_gaussians,
    kl_to_posterior,
    linear_gaussian_mi,
    linear_vae_elbo,
    optimal_diagonal_encoder,
    subspace_similarity,
)
from vaebench.theory.ppca import (
    PPCAFit,
    ppca_covariance,
    ppca_log_likelihood,
    ppca_ml,
    ppca_posterior,
)

__all__ = [
    "CheckRecord",
    "LinearELBO",
    "PPCAFit",
    "RawRecord",
    "bonferroni_z",
    "diagonal_gap",
    "finalize",
    "kl_gaussians",
    "kl_to_posterior",
    "linear_gaussian_mi",
    "linear_vae_elbo",
    "optimal_diagonal_encoder",
    "ppca_covariance",
    "ppca_log_likelihood",
    "ppca_ml",
    "ppca_posterior",
    "subspace_similarity",
]

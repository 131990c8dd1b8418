"""The typed metrics contract between the evaluate stage and everything that reads it.

``evaluate`` returns a ``RunMetrics``; ``runs/<cell>/seed<k>/eval/metrics.json`` is its JSON;
the report, the MLflow logging (``RunMetrics.flat``) and the test fixtures all go through this
class. A renamed field fails validation and type checks, never a page silently.

Conventions (stated with every number): nats per data point; ``Estimate.se`` is the standard
error over test points unless the field says otherwise; the NLL is -L_k with its k and its
number of test points; per-point values for paired comparisons are in ``eval/points.npz``
(``POINTS_FILE``), on the same test points for every run of a dataset.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

POINTS_FILE = "points.npz"  # per-point nll (the first nll_points test points) and elbo (all)
TIMING_FIELDS = ("train_seconds",)  # wall-clock fields: equal only in distribution


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Estimate(_Frozen):
    """A mean and its standard error."""

    mean: float
    se: float

    @classmethod
    def of(cls, mean: float, se: float) -> Estimate:
        return cls(mean=float(mean), se=float(se))


class MutualInformation(_Frozen):
    """I_q(x; z) bracketed by the test-set mixture (InfoNCE) lower bound and the leave-one-out
    upper bound (Poole et al. 2019, eqs. 12-13). The lower bound cannot exceed log N."""

    lower: Estimate
    upper: Estimate
    cap: float        # log N for the N test points used
    points: int
    saturated: bool   # lower bound within SATURATION nats of its cap: a floor, not an estimate

    SATURATION: ClassVar[float] = 0.1


class TCDecomposition(_Frozen):
    """Index-code MI, total correlation and dimension-wise KL (Chen et al. 2018, eq. 2) with the
    test set's mixture as q(z); ``mws`` holds beta-TCVAE's training estimator on the same draws."""

    mi: Estimate
    tc: Estimate
    dwkl: Estimate
    mws: dict[str, float] | None = None
    # a linear encoder on Gaussian data: the exact values, and the training (MWS) estimator's
    # bias at its batch size after its (K - 1) log N offset
    exact: dict[str, float] | None = None
    mws_batch: int | None = None
    mws_bias_at_batch: float | None = None


class LinearMetrics(_Frozen):
    """Closed forms for a trained linear VAE (Tipping & Bishop 1999; Lucas et al. 2019)."""

    elbo_analytic: float          # closed-form ELBO on the test set, mean
    log_px_exact: float           # exact log p(x) on the test set, mean
    kl_to_posterior: float        # mean KL(q(z|x) || p(z|x))
    elbo_train: float             # closed-form ELBO on the training set, mean
    ppca_max_loglik: float        # L*/N on the training set
    ppca_sigma2: float
    sigma2: float
    subspace_similarity: float
    # the closed-form optimum at the model's beta (theory.linear_beta), training covariance
    optimum_rate: float
    optimum_distortion: float
    optimum_active: int
    optimum_sigma2: float


class Disentanglement(_Frozen):
    """Scores on a dataset with ground-truth factors (encoder means, training images)."""

    mig: float
    mig_variant: str
    factor_vae: float
    beta_vae: float
    dci_disentanglement: float
    dci_completeness: float
    dci_informativeness: float
    dci_regressor: str
    factor_dims: dict[str, int]
    conditioned_on: str | None = None  # a conditional model given one of the factors as label


class RunMetrics(_Frozen):
    """Everything the evaluate stage measures for one run of the study."""

    # identity
    run: str
    cell: str
    model: str
    dataset: str
    seed: int
    group: Literal["grid", "linear", "sweep"]
    beta: float | None = None
    # conventions
    likelihood: str
    preprocessing: str
    test_preprocessing: str
    backend: str
    n_test: int
    dim: int
    latent_dim: int
    test_digest: str  # SHA-256 of the test inputs evaluated (the dataset's fixed preprocessing)
    epochs: int
    train_seconds: float
    # the test set, S draws per point
    elbo: Estimate
    recon: Estimate
    kl: Estimate
    elbo_mc_se: float  # Monte Carlo part of the ELBO's error (fixed x)
    elbo_samples: int
    # importance sampling: NLL = -L_k (Burda et al. 2016)
    nll: Estimate
    nll_k: int
    nll_points: int
    bounds: dict[int, Estimate]  # L_k for every evaluated k, on common random numbers
    nll_discrete: float | None = None
    bits_per_dim: float | None = None
    # a conditional model: its NLL above is the unconditional bound log sum_c p(c) p(x|c)
    nll_conditional: Estimate | None = None  # -log p(x|c) given the true label
    nll_classes: int | None = None
    # latent diagnostics
    kl_per_dim: list[float]
    active_units: int
    au_cov: list[float]
    mi: MutualInformation
    tc: TCDecomposition
    # data with a known density
    data_entropy: float | None = None
    true_model_log_px: float | None = None
    linear: LinearMetrics | None = None
    disentanglement: Disentanglement | None = None

    def flat(self, prefix: str = "test_") -> dict[str, float]:
        """Every number as one flat ``{name: float}`` (MLflow metrics): estimates give
        ``name`` and ``name_se``, nested models ``group_field``; lists are left out."""
        out: dict[str, float] = {}
        _flatten(self.model_dump(exclude={"kl_per_dim", "au_cov"}), prefix, out)
        return out

    def comparable(self) -> dict[str, Any]:
        """The metrics a rerun must reproduce bit for bit on one machine: all but timings."""
        return self.model_dump(mode="json", exclude=set(TIMING_FIELDS))


def _flatten(value: Any, key: str, out: dict[str, float]) -> None:
    if isinstance(value, dict):
        if set(value) == {"mean", "se"}:
            _flatten(value["mean"], key, out)
            _flatten(value["se"], f"{key}_se", out)
            return
        for k, v in value.items():
            _flatten(v, f"{key}{'' if key.endswith('_') or not key else '_'}{k}", out)
    elif isinstance(value, bool):
        out[key] = float(value)
    elif isinstance(value, int | float) and math.isfinite(float(value)):
        out[key] = float(value)

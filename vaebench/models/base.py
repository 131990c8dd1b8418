"""What every model shares: a typed training config and a Gaussian-latent model.

A model is an encoder, a decoder, a likelihood and an objective from ``vaebench.objectives``.
The latent layer (eps, z, KL, log q(z|x), log p(z)) comes from ``kernels``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt
from torch import Tensor, nn

import kernels
from vaebench import likelihoods
from vaebench.nets import build_decoder, build_encoder


class EarlyStoppingConfig(BaseModel):
    """Stop when the validation ELBO has not improved for more than ``patience`` epochs (never
    during the KL warm-up) and keep the best epoch's weights (``vaebench.regimen``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    patience: PositiveInt


class TrainConfig(BaseModel):
    """Hyper-parameters shared by every model (one block of ``train.<model>`` in params.yaml).

    The first four define the experiment and are required; the rest have defaults, which the
    train stage prints when it starts and logs to MLflow (``vaebench.cells.defaults_used``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    latent_dim: PositiveInt
    epochs: PositiveInt  # with early_stopping: the most epochs to train
    batch_size: PositiveInt
    lr: PositiveFloat
    arch: Literal["mlp", "conv", "gated_mlp"] = "mlp"
    hidden: list[PositiveInt] = Field(default_factory=lambda: [400])
    likelihood: Literal["auto", "bernoulli", "gaussian"] = "auto"
    min_steps: NonNegativeInt = 0  # small datasets: train for at least this many Adam steps
    # cosine: anneal to 0 over training; burda: 3^i epochs at lr * 10^(-i/7) (vaebench.regimen)
    lr_schedule: Literal["constant", "cosine", "burda"] = "constant"
    adam_eps: PositiveFloat = 1e-8
    adam_betas: list[float] = Field(default_factory=lambda: [0.9, 0.999], min_length=2,
                                    max_length=2)
    # Adam on each parameter's gradient scaled to unit L2 norm (the VampPrior's AdamNormGrad)
    grad_normalization: Literal["none", "unit_norm"] = "none"
    kl_warmup_epochs: NonNegativeInt = 0  # KL weight min(1, epoch / kl_warmup_epochs)
    # the KL term of the ELBO objective: closed form, or log q(z|x) - log p(z) at the sample
    kl_estimator: Literal["analytic", "monte_carlo"] = "analytic"
    early_stopping: EarlyStoppingConfig | None = None  # on the validation ELBO
    # Bernoulli means clamped to [eps, 1 - eps] (the VampPrior's log_Bernoulli: 1e-5)
    bernoulli_eps: float | None = Field(None, gt=0, lt=0.5)

    def total_epochs(self, n_train: int) -> int:
        """``epochs``, raised so that at least ``min_steps`` optimizer steps are taken."""
        steps_per_epoch = max(1, n_train // min(self.batch_size, n_train))
        return max(self.epochs, -(-self.min_steps // steps_per_epoch))


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about its data (from the dataset's Bundle)."""

    dim: int
    image_shape: tuple[int, int, int] | None
    kind: str  # "image" or "continuous"
    n_classes: int | None = None
    size: int = 0  # number of training points N (beta-TCVAE's estimator needs it)


@dataclass
class LatentTerms:
    """Per-point quantities of one forward pass; sample dims lead where n_samples > 1."""

    mu: Tensor
    logvar: Tensor
    z: Tensor
    kl: Tensor
    log_px_z: Tensor
    log_qz: Tensor | None = None
    log_pz: Tensor | None = None


def resolve_likelihood(cfg_likelihood: str, info: DataInfo) -> str:
    if cfg_likelihood != "auto":
        return cfg_likelihood
    return "bernoulli" if info.kind == "image" else "gaussian"


class GaussianLatentModel(nn.Module):
    """x -> q(z|x) = N(mu, diag exp(logvar)) -> z -> p(x|z); prior p(z) = N(0, I).

    Subclasses choose the objective (``objective``); everything else is shared.
    """

    name = "vae"

    def __init__(self, cfg: TrainConfig, info: DataInfo, backend: str | None = None,
                 conditional: bool = False):
        super().__init__()
        self.cfg = cfg
        self.info = info
        self.latent_dim = cfg.latent_dim
        self.likelihood = resolve_likelihood(cfg.likelihood, info)
        self.backend = kernels.resolve_backend(backend, "cpu")  # models train on the CPU
        self.n_classes = info.n_classes if conditional else None
        if conditional and not info.n_classes:
            raise ValueError("the conditional VAE needs a labelled dataset (n_classes is None)")
        cond = self.n_classes or 0
        self.encoder, self.decoder = self.build_nets(cfg, info, cond)
        # Gaussian decoders share one learned log sigma^2 (pPCA-style); init sigma^2 = 0.1.
        self.dec_logvar = (nn.Parameter(torch.full((), math.log(0.1)))
                           if self.likelihood == "gaussian" else None)
        self.kl_weight = 1.0  # the KL warm-up's weight, set by the trainer every epoch
        self._check_options(cfg)

    def _check_options(self, cfg: TrainConfig) -> None:
        """Options that only the plain (beta-)ELBO objective or a Bernoulli decoder honour."""
        own_objective = type(self).objective is not GaussianLatentModel.objective
        for key, default in (("kl_warmup_epochs", 0), ("kl_estimator", "analytic")):
            if own_objective and getattr(cfg, key) != default:
                raise ValueError(f"{key}: model {self.name!r} has its own objective, which "
                                 f"ignores {key}; leave it at {default!r}")
        if cfg.bernoulli_eps is not None and self.likelihood != "bernoulli":
            raise ValueError(f"bernoulli_eps: the decoder is {self.likelihood!r}; it applies to "
                             "a Bernoulli decoder only")

    def build_nets(self, cfg: TrainConfig, info: DataInfo, cond: int) -> tuple[nn.Module, nn.Module]:
        enc = build_encoder(cfg.arch, info.dim, info.image_shape, cfg.latent_dim, cfg.hidden, cond)
        dec = build_decoder(cfg.arch, info.dim, info.image_shape, cfg.latent_dim, cfg.hidden, cond)
        return enc, dec

    # -- the pieces -------------------------------------------------------------------------
    def condition(self, y: Tensor | None) -> Tensor | None:
        if self.n_classes is None:
            return None
        if y is None:
            raise ValueError("the conditional VAE needs labels y")
        return F.one_hot(y.long(), self.n_classes).float()

    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.encoder(x, self.condition(y))

    def decode(self, z: Tensor, y: Tensor | None = None) -> tuple[Tensor, ...]:
        out = self.decoder(z, self.condition(y))
        if self.likelihood == "gaussian":
            return out, self.dec_logvar
        if self.cfg.bernoulli_eps is not None:  # sigmoid(+-L) = 1 - eps, eps: the same clamp
            bound = math.log((1.0 - self.cfg.bernoulli_eps) / self.cfg.bernoulli_eps)
            out = out.clamp(-bound, bound)
        return (out,)

    def log_px(self, x: Tensor, z: Tensor, y: Tensor | None = None) -> Tensor:
        return likelihoods.log_px(self.likelihood, x, self.decode(z, y))

    def mean_x(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return likelihoods.decoder_mean(self.likelihood, self.decode(z, y))

    def terms(self, x: Tensor, y: Tensor | None, n_samples: int, seed: int,
              with_log_probs: bool = False) -> LatentTerms:
        """One pass: encode, draw n_samples z per point, decode, evaluate log p(x|z)."""
        mu, logvar = self.encode(x, y)
        if with_log_probs:
            z, log_qz, log_pz = kernels.reparameterize(mu, logvar, n_samples, seed,
                                                       with_log_probs=True, backend=self.backend)
            kl = kernels.gaussian_kl(mu, logvar, backend=self.backend)
        else:
            z, kl = kernels.reparameterize_kl(mu, logvar, n_samples, seed, backend=self.backend)
            log_qz = log_pz = None
        log_px_z = self.log_px(x, z, y)
        return LatentTerms(mu, logvar, z, kl, log_px_z, log_qz, log_pz)

    def log_weights(self, x: Tensor, y: Tensor | None, n_samples: int, seed: int) -> Tensor:
        """log w = log p(x|z) + log p(z) - log q(z|x), ``n_samples`` draws per row: (S, N)
        (Burda et al. 2016, eq. 7)."""
        from vaebench.objectives import log_importance_weights

        t = self.terms(x, y, n_samples, seed, with_log_probs=True)
        return log_importance_weights(t.log_px_z, t.log_pz, t.log_qz).reshape(n_samples, -1)

    # -- the objective ----------------------------------------------------------------------
    def objective(self, x: Tensor, y: Tensor | None, seed: int) -> tuple[Tensor, dict[str, Tensor]]:
        """Per-point objective to maximize, and per-point stats (elbo, recon, kl)."""
        from vaebench.objectives import elbo

        mc = self.cfg.kl_estimator == "monte_carlo"
        t = self.terms(x, y, 1, seed, with_log_probs=mc)
        kl = t.log_qz - t.log_pz if mc else t.kl
        value = elbo(t.log_px_z, kl)
        stats = {"elbo": value, "recon": t.log_px_z, "kl": kl}
        weight = self.beta * self.kl_weight  # 1: the ELBO itself, with no product by 1 to undo
        return (value if weight == 1.0 else elbo(t.log_px_z, kl, weight)), stats

    @property
    def beta(self) -> float:
        return float(getattr(self.cfg, "beta", 1.0))

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


class TrainConfig(BaseModel):
    """Hyper-parameters shared by every model (one block of ``train.<model>`` in params.yaml).

    The first four define the experiment and are required; the rest have defaults, which the
    train stage prints when it starts and logs to MLflow (``config.defaults_used``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    latent_dim: PositiveInt
    epochs: PositiveInt
    batch_size: PositiveInt
    lr: PositiveFloat
    arch: Literal["mlp", "conv"] = "mlp"
    hidden: list[PositiveInt] = Field(default_factory=lambda: [400])
    likelihood: Literal["auto", "bernoulli", "gaussian"] = "auto"
    min_steps: NonNegativeInt = 0  # small datasets: train for at least this many Adam steps
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: anneal to 0 over training

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

    # -- the objective ----------------------------------------------------------------------
    def objective(self, x: Tensor, y: Tensor | None, seed: int) -> tuple[Tensor, dict[str, Tensor]]:
        """Per-point objective to maximize, and per-point stats (elbo, recon, kl)."""
        from vaebench.objectives import elbo

        t = self.terms(x, y, 1, seed)
        stats = {"elbo": elbo(t.log_px_z, t.kl), "recon": t.log_px_z, "kl": t.kl}
        return elbo(t.log_px_z, t.kl, self.beta), stats

    @property
    def beta(self) -> float:
        return float(getattr(self.cfg, "beta", 1.0))

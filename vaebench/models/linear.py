"""Linear VAE (Lucas, Tucker, Grosse & Norouzi 2019): the VAE whose optimum is probabilistic PCA.

Encoder q(z|x) = N(V x + b, diag D) with D independent of x; decoder p(x|z) = N(W z + mu,
sigma^2 I) with sigma^2 learned. Its ELBO, KL to the exact posterior and optimum are known in
closed form (``vaebench.theory``), which the report checks against the trained model. With
beta != 1 it maximizes E_q log p(x|z) - beta KL, whose optimum is again closed form (the ordinary
linear VAE with the noise variance scaled by beta, for fixed sigma^2; Lucas et al. 2019, sec. 5).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import NonNegativeFloat
from torch import Tensor, nn

from vaebench.models.base import DataInfo, GaussianLatentModel, TrainConfig
from vaebench.nets.linear import Linear


class LinearVAEConfig(TrainConfig):
    arch: Literal["linear"] = "linear"  # type: ignore[assignment]
    likelihood: Literal["gaussian"] = "gaussian"  # type: ignore[assignment]
    hidden: list[int] = []
    beta: NonNegativeFloat = 1.0  # the KL weight; the beta sweep runs on this model


class LinearEncoder(nn.Module):
    def __init__(self, in_dim: int, latent_dim: int):
        super().__init__()
        self.mean = Linear(in_dim, latent_dim)
        self.logvar = nn.Parameter(torch.full((latent_dim,), -2.0))

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mu = self.mean(x)
        return mu, self.logvar.expand_as(mu)


class LinearVAE(GaussianLatentModel):
    name = "linear"

    def build_nets(self, cfg: TrainConfig, info: DataInfo, cond: int) -> tuple[nn.Module, nn.Module]:
        return LinearEncoder(info.dim, cfg.latent_dim), Linear(cfg.latent_dim, info.dim)

    def decode(self, z: Tensor, y: Tensor | None = None) -> tuple[Tensor, ...]:
        return self.decoder(z), self.dec_logvar

    def parameters_float64(self) -> dict[str, Tensor]:
        """W (d,k), mu (d,), sigma2 (), V (k,d), b (k,), D (k,) in float64 for the closed forms."""
        return {
            "W": self.decoder.weight.detach().double(),
            "mu": self.decoder.bias.detach().double(),
            "sigma2": self.dec_logvar.detach().double().exp(),
            "V": self.encoder.mean.weight.detach().double(),
            "b": self.encoder.mean.bias.detach().double(),
            "D": self.encoder.logvar.detach().double().exp(),
        }

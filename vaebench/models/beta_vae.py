"""beta-VAE (Higgins et al. 2017, eq. 4): E_q log p(x|z) - beta * KL(q(z|x) || p(z))."""

from __future__ import annotations

from pydantic import NonNegativeFloat

from vaebench.models.base import GaussianLatentModel, TrainConfig


class BetaVAEConfig(TrainConfig):
    beta: NonNegativeFloat


class BetaVAE(GaussianLatentModel):
    name = "beta_vae"

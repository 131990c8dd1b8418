"""VAE (Kingma & Welling 2014): maximize the ELBO, E_q log p(x|z) - KL(q(z|x) || p(z))."""

from __future__ import annotations

from vaebench.models.base import GaussianLatentModel, TrainConfig


class VAEConfig(TrainConfig):
    pass


class VAE(GaussianLatentModel):
    name = "vae"

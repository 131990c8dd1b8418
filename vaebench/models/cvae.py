"""Conditional VAE (Sohn et al. 2015): q(z|x, c), p(x|z, c), prior p(z|c) = N(0, I).

The label enters both networks as a one-hot vector; the ELBO is conditioned on c.
"""

from __future__ import annotations

from vaebench.models.base import DataInfo, GaussianLatentModel, TrainConfig


class CVAEConfig(TrainConfig):
    pass


class CVAE(GaussianLatentModel):
    name = "cvae"

    def __init__(self, cfg: TrainConfig, info: DataInfo, backend: str | None = None):
        super().__init__(cfg, info, backend, conditional=True)

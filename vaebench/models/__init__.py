"""Model registry: name -> (config class, model class)."""

from __future__ import annotations

from vaebench.models.base import DataInfo, GaussianLatentModel, TrainConfig
from vaebench.models.beta_vae import BetaVAE, BetaVAEConfig
from vaebench.models.betatc import BetaTCVAE, BetaTCVAEConfig
from vaebench.models.cvae import CVAE, CVAEConfig
from vaebench.models.hvae import HVAE, HVAEConfig
from vaebench.models.iwae import IWAE, IWAEConfig
from vaebench.models.linear import LinearVAE, LinearVAEConfig
from vaebench.models.vae import VAE, VAEConfig

MODELS: dict[str, tuple[type[TrainConfig], type[GaussianLatentModel]]] = {
    "vae": (VAEConfig, VAE),
    "beta_vae": (BetaVAEConfig, BetaVAE),
    "cvae": (CVAEConfig, CVAE),
    "iwae": (IWAEConfig, IWAE),
    "betatc": (BetaTCVAEConfig, BetaTCVAE),
    "linear": (LinearVAEConfig, LinearVAE),
    "hvae": (HVAEConfig, HVAE),
}


def _check(name: str) -> None:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid choices: {', '.join(MODELS)}")


def config_class(name: str) -> type[TrainConfig]:
    _check(name)
    return MODELS[name][0]


def build_model(name: str, cfg: TrainConfig, info: DataInfo,
                backend: str | None = None) -> GaussianLatentModel:
    _check(name)
    return MODELS[name][1](cfg, info, backend)


__all__ = ["MODELS", "DataInfo", "GaussianLatentModel", "TrainConfig", "build_model",
           "config_class"]

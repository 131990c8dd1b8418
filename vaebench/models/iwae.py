"""Importance-weighted autoencoder (Burda et al. 2016): maximize L_k, eq. 8, with k samples."""

from __future__ import annotations

from pydantic import PositiveInt
from torch import Tensor

from vaebench.models.base import GaussianLatentModel, TrainConfig
from vaebench.objectives import elbo, iwae_objective, log_importance_weights


class IWAEConfig(TrainConfig):
    k: PositiveInt


class IWAE(GaussianLatentModel):
    name = "iwae"

    def objective(self, x: Tensor, y: Tensor | None, seed: int) -> tuple[Tensor, dict[str, Tensor]]:
        t = self.terms(x, y, self.cfg.k, seed, with_log_probs=True)
        log_px_z = t.log_px_z if self.cfg.k > 1 else t.log_px_z.unsqueeze(0)
        log_qz = t.log_qz if self.cfg.k > 1 else t.log_qz.unsqueeze(0)
        log_pz = t.log_pz if self.cfg.k > 1 else t.log_pz.unsqueeze(0)
        log_w = log_importance_weights(log_px_z, log_pz, log_qz)
        recon = log_px_z.mean(0)
        stats = {"elbo": elbo(recon, t.kl), "recon": recon, "kl": t.kl}
        return iwae_objective(log_w), stats

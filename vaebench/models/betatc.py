"""beta-TCVAE (Chen et al. 2018, eq. 4): the KL split into index-code MI, total correlation and
dimension-wise KL, weighted alpha, beta, gamma, estimated by minibatch-weighted sampling."""

from __future__ import annotations

from pydantic import NonNegativeFloat
from torch import Tensor

from vaebench.models.base import GaussianLatentModel, TrainConfig
from vaebench.objectives import betatc_objective, betatc_terms, elbo


class BetaTCVAEConfig(TrainConfig):
    alpha: NonNegativeFloat
    beta: NonNegativeFloat
    gamma: NonNegativeFloat


class BetaTCVAE(GaussianLatentModel):
    name = "betatc"

    def objective(self, x: Tensor, y: Tensor | None, seed: int) -> tuple[Tensor, dict[str, Tensor]]:
        t = self.terms(x, y, 1, seed, with_log_probs=True)
        terms = betatc_terms(t.z, t.mu, t.logvar, t.log_qz, t.log_pz, max(self.info.size, 1))
        stats = {"elbo": elbo(t.log_px_z, t.kl), "recon": t.log_px_z, "kl": t.kl, **terms}
        obj = betatc_objective(t.log_px_z, terms, self.cfg.alpha, self.cfg.beta, self.cfg.gamma)
        return obj, stats

    @property
    def beta(self) -> float:  # the KL weight seen by the plain-ELBO helpers
        return 1.0

"""VAE and IWAE with one or more stochastic layers (Burda, Grosse & Salakhutdinov 2016).

The architecture of their sec. 5 and official code (github.com/yburda/iwae, ``iwae.py``,
``nnet.py``, ``experiments.py``):
- one stochastic layer: x -> 200 -> 200 -> z (50), and back z -> 200 -> 200 -> x;
- two: x -> 200 -> 200 -> z1 (100) -> 100 -> 100 -> z2 (50), and back z2 -> 100 -> 100 ->
  z1 -> 200 -> 200 -> x; config ``latent_dims: [100, 50]``, ``hidden: [[200, 200], [100, 100]]``
  (from x upwards; the generative side uses each pair reversed);
- deterministic layers tanh; every Gaussian layer (q(z_l|z_{l-1}) and p(z_l|z_{l+1})) has a
  linear mean and sigma = exp(linear) (log-variance 2 * linear); p(z_L) = N(0, I); p(x|z_1)
  Bernoulli with logits from a linear layer;
- weights drawn from Glorot & Bengio's U(-sqrt(6/(in+out)), +sqrt(6/(in+out))), biases 0.

The objective is a pure function of the log-weights: ``iwae`` maximizes L_k (eq. 8, with the
detached normalized-weight gradient of eq. 14), ``vae`` the k-sample average of log w.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import Field, PositiveInt, model_validator
from torch import Tensor, nn

import kernels
from vaebench import likelihoods
from vaebench.models.base import DataInfo, GaussianLatentModel, LatentTerms, TrainConfig
from vaebench.nets.linear import Linear
from vaebench.objectives import hierarchical_log_weights, iwae_objective, k_sample_elbo


class HVAEConfig(TrainConfig):
    latent_dim: PositiveInt | None = None  # type: ignore[assignment]  # = latent_dims[-1]
    latent_dims: list[PositiveInt] = Field(min_length=1)  # stochastic layers, from x upwards
    hidden: list[list[PositiveInt]]  # type: ignore[assignment]  # tanh widths below each
    k: PositiveInt  # importance samples in the training objective
    objective: Literal["vae", "iwae"]
    arch: Literal["tanh_mlp"] = "tanh_mlp"  # type: ignore[assignment]
    likelihood: Literal["bernoulli"] = "bernoulli"  # type: ignore[assignment]

    @model_validator(mode="before")
    @classmethod
    def _top(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("latent_dims"):
            top = data["latent_dims"][-1]
            if data.get("latent_dim") is not None and data["latent_dim"] != top:
                raise ValueError(f"latent_dim {data['latent_dim']} must equal the top layer's "
                                 f"size latent_dims[-1] = {top} (or be left out)")
            if len(data.get("hidden") or []) != len(data["latent_dims"]):
                raise ValueError(f"hidden needs one list of widths per stochastic layer "
                                 f"({len(data['latent_dims'])}); got {data.get('hidden')!r}")
            data = {**data, "latent_dim": top}
        return data


def glorot_(layer: nn.Linear, rows: slice | None = None) -> nn.Linear:
    """U(-a, a) with a = sqrt(6 / (fan_in + fan_out)) on ``weight[rows]``; bias 0 (nnet.py)."""
    with torch.no_grad():
        w = layer.weight if rows is None else layer.weight[rows]
        a = math.sqrt(6.0 / (w.shape[1] + w.shape[0]))
        w.uniform_(-a, a)
        if layer.bias is not None:
            layer.bias.zero_()
    return layer


def tanh_chain(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [glorot_(Linear(a, b)), nn.Tanh()]
    return nn.Sequential(*layers)


class GaussianLayer(nn.Module):
    """in -> tanh chain -> (mean, log-variance) of a diagonal Gaussian over ``out`` units."""

    def __init__(self, in_dim: int, hidden: list[int], out_dim: int):
        super().__init__()
        self.body = tanh_chain([in_dim, *hidden])
        self.head = Linear(hidden[-1] if hidden else in_dim, 2 * out_dim)
        glorot_(self.head, slice(0, out_dim))  # the mean and the sigma layers are separate
        glorot_(self.head, slice(out_dim, 2 * out_dim))  # Glorot-initialized layers there

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_sigma = self.head(self.body(h)).chunk(2, dim=-1)
        return mean, 2.0 * log_sigma


class HVAE(GaussianLatentModel):
    name = "hvae"

    def __init__(self, cfg: HVAEConfig, info: DataInfo, backend: str | None = None):
        super().__init__(cfg, info, backend)

    def build_nets(self, cfg: HVAEConfig, info: DataInfo, cond: int) -> tuple[nn.Module, nn.Module]:
        dims = [info.dim, *cfg.latent_dims]
        q = nn.ModuleList(GaussianLayer(dims[i], cfg.hidden[i], dims[i + 1])
                          for i in range(len(cfg.latent_dims)))
        x_net = tanh_chain([dims[1], *reversed(cfg.hidden[0])])
        x_net.append(glorot_(Linear(cfg.hidden[0][0], info.dim)))
        p = nn.ModuleList([x_net, *(GaussianLayer(dims[i + 1], list(reversed(cfg.hidden[i])),
                                                  dims[i]) for i in range(1, len(dims) - 1))])
        return q, p

    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """q(z_1|x): the first stochastic layer (the one whose active units Burda et al. count)."""
        return self.encoder[0](x)

    def decode(self, z: Tensor, y: Tensor | None = None) -> tuple[Tensor, ...]:
        """Bernoulli logits of p(x|z_1)."""
        return (self.decoder[0](z),)

    def terms(self, *args, **kwargs) -> LatentTerms:
        raise ValueError("model 'hvae' has several stochastic layers; its test metrics come "
                         "from `vaebench paper` (log_weights), not the study's evaluate stage")

    def log_weights(self, x: Tensor, y: Tensor | None, n_samples: int, seed: int) -> Tensor:
        """log w (S, N): z_1 ~ q(z_1|x) S times per image, then one z_l per z_{l-1} upwards.

        Layer l draws its eps from ``step_seed(seed, l, 0)`` (layer 0 from ``seed``)."""
        h, zs, log_q = x, [], []
        for i, layer in enumerate(self.encoder):
            mu, logvar = layer(h)
            n = n_samples if i == 0 else 1
            lead = (n, *mu.shape[:-1]) if i == 0 else tuple(mu.shape[:-1])
            z, lq, lp = kernels.reparameterize(
                mu, logvar, n, seed if i == 0 else kernels.step_seed(seed, i, 0),
                with_log_probs=True, backend=self.backend)
            h = z.reshape(*lead, mu.shape[-1])
            zs.append(h)
            log_q.append(lq.reshape(lead))
        log_p_top = lp.reshape(lead)
        log_p_cond = [likelihoods.gaussian_log_px(zs[i - 1], *self.decoder[i](zs[i]))
                      for i in range(1, len(zs))]
        log_px = likelihoods.log_px(self.likelihood, x, self.decode(zs[0]))
        return hierarchical_log_weights(log_px, log_p_cond, log_p_top, log_q)

    def objective(self, x: Tensor, y: Tensor | None, seed: int) -> tuple[Tensor, dict[str, Tensor]]:
        log_w = self.log_weights(x, y, self.cfg.k, seed)
        elbo = k_sample_elbo(log_w)
        obj = iwae_objective(log_w) if self.cfg.objective == "iwae" else elbo
        return obj, {"elbo": elbo.detach()}

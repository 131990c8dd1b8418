"""Gated dense encoder and decoder: the fully connected nets of the VampPrior and Exemplar VAE.

A gated dense layer (Dauphin et al. 2017, "gated linear units"; Tomczak & Welling 2018, sec. 4)
is ``h(x) * sigmoid(g(x))`` with two affine maps h and g and no other activation. The VampPrior
code (jmtomczak/vae_vampprior, ``utils/nn.py``: ``GatedDense``; ``models/VAE.py``) and the
Exemplar VAE code (sajadn/Exemplar-VAE, ``utils/nn.py``, ``models/VAE.py``) build:

- encoder: x -> GatedDense(300) -> GatedDense(300) -> mean = Linear(z), log-variance =
  Hardtanh(-6, 2)(Linear(z));
- decoder: z -> GatedDense(300) -> GatedDense(300) -> Linear(784) -> the Bernoulli mean
  sigmoid(.) (returned here as logits; the likelihood applies the sigmoid);
- every ``nn.Linear`` weight drawn from N(0, 2 / fan_in) ("he_init" in both repositories),
  biases left at PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

Here h and g of a layer share one ``Linear`` with 2 * width outputs (one GEMM instead of two;
the same function and the same initial distribution, since fan_in is shared), and the mean
and log-variance heads share one ``Linear`` too.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from vaebench.nets.linear import Linear

LOGVAR_MIN, LOGVAR_MAX = -6.0, 2.0  # Hardtanh on the encoder's log-variance (VampPrior)


def he_normal_(layer: nn.Linear) -> nn.Linear:
    """Weights ~ N(0, 2 / fan_in), biases untouched (``he_init`` of the VampPrior code)."""
    with torch.no_grad():
        layer.weight.normal_(0.0, math.sqrt(2.0 / layer.in_features))
    return layer


class GatedDense(nn.Module):
    """y = h(x) * sigmoid(g(x)), with [h; g] one affine map of ``in_features`` -> 2 * width."""

    def __init__(self, in_features: int, width: int):
        super().__init__()
        self.width = width
        self.hg = he_normal_(Linear(in_features, 2 * width))

    def forward(self, x: Tensor) -> Tensor:
        h, g = self.hg(x).split(self.width, dim=-1)
        return h * torch.sigmoid(g)


def _gated_stack(in_features: int, widths: list[int]) -> nn.Sequential:
    sizes = [in_features, *widths]
    return nn.Sequential(*[GatedDense(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)])


def _cat(x: Tensor, c: Tensor | None) -> Tensor:
    if c is None:
        return x
    return torch.cat([x, c.expand(*x.shape[:-1], c.shape[-1])], dim=-1)


class GatedMLPEncoder(nn.Module):
    """(x, c) -> (mu, logvar): gated layers, then one affine head; logvar clipped to [-6, 2]."""

    def __init__(self, in_dim: int, latent_dim: int, hidden: list[int], cond_dim: int = 0):
        super().__init__()
        if not hidden:
            raise ValueError("arch 'gated_mlp' needs at least one hidden width; got hidden=[]")
        self.body = _gated_stack(in_dim + cond_dim, hidden)
        self.head = he_normal_(Linear(hidden[-1], 2 * latent_dim))

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mu, logvar = self.head(self.body(_cat(x, c))).chunk(2, dim=-1)
        return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)


class GatedMLPDecoder(nn.Module):
    """(z, c) -> ``out_dim`` decoder parameters (Bernoulli logits) through gated layers."""

    def __init__(self, out_dim: int, latent_dim: int, hidden: list[int], cond_dim: int = 0):
        super().__init__()
        if not hidden:
            raise ValueError("arch 'gated_mlp' needs at least one hidden width; got hidden=[]")
        self.body = _gated_stack(latent_dim + cond_dim, list(reversed(hidden)))
        self.out = he_normal_(Linear(hidden[0], out_dim))

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        return self.out(self.body(_cat(z, c)))

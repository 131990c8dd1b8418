"""Fully connected encoder and decoder (Kingma & Welling 2014, appendix C: one hidden layer)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vaebench.nets.linear import Linear


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-2], sizes[1:-1], strict=True):
        layers += [Linear(a, b), nn.ReLU()]
    layers.append(Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


def _cat(x: Tensor, c: Tensor | None) -> Tensor:
    if c is None:
        return x
    return torch.cat([x, c.expand(*x.shape[:-1], c.shape[-1])], dim=-1)


class MLPEncoder(nn.Module):
    def __init__(self, in_dim: int, latent_dim: int, hidden: list[int], cond_dim: int = 0):
        super().__init__()
        self.net = _mlp([in_dim + cond_dim, *hidden, 2 * latent_dim])

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mu, logvar = self.net(_cat(x, c)).chunk(2, dim=-1)
        return mu, logvar


class MLPDecoder(nn.Module):
    def __init__(self, out_dim: int, latent_dim: int, hidden: list[int], cond_dim: int = 0):
        super().__init__()
        self.net = _mlp([latent_dim + cond_dim, *list(reversed(hidden)), out_dim])

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        return self.net(_cat(z, c))

"""Decoder likelihoods log p(x|z), one value per data point (nats).

- Bernoulli: log p(x|z) = sum_i x_i log p_i + (1 - x_i) log(1 - p_i), written with logits
  (Kingma & Welling 2014, appendix C.1). Targets must be binary: binary cross-entropy on grey
  levels is not a likelihood (pytorch/examples issue #460).
- Gaussian: log N(x; m, diag s^2) = -1/2 sum_i [log 2 pi + log s_i^2 + (x_i - m_i)^2 / s_i^2]
  (K&W 2014, appendix C.2); the variance is either per-dimension from the decoder or one
  shared, learned scalar (the pPCA / linear-VAE case).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

LOG_2PI = math.log(2.0 * math.pi)
LIKELIHOODS = ("bernoulli", "gaussian")


def bernoulli_log_px(x: Tensor, logits: Tensor) -> Tensor:
    """log p(x|z) for binary x under Bernoulli(sigmoid(logits)); sums the last dimension."""
    return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits),
                                               reduction="none").sum(-1)


def gaussian_log_px(x: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """log N(x; mean, diag exp(logvar)); ``logvar`` broadcasts (a scalar gives shared sigma^2)."""
    logvar = logvar.expand_as(mean)
    return -0.5 * (LOG_2PI + logvar + (x - mean) ** 2 * torch.exp(-logvar)).sum(-1)


def log_px(likelihood: str, x: Tensor, params: tuple[Tensor, ...]) -> Tensor:
    """Dispatch on the likelihood name: Bernoulli takes (logits,), Gaussian (mean, logvar)."""
    if likelihood == "bernoulli":
        return bernoulli_log_px(x, *params)
    if likelihood == "gaussian":
        return gaussian_log_px(x, *params)
    raise ValueError(f"unknown likelihood {likelihood!r}; valid choices: {', '.join(LIKELIHOODS)}")


def decoder_mean(likelihood: str, params: tuple[Tensor, ...]) -> Tensor:
    """E[x|z]: sigmoid(logits) for Bernoulli, the mean for Gaussian."""
    return torch.sigmoid(params[0]) if likelihood == "bernoulli" else params[0]

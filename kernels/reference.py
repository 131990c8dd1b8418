"""Eager PyTorch reference for the Gaussian latent layer: the definition of correct.

Every other backend is tested against these functions. They are plain differentiable
PyTorch, so their gradients come from autograd.

Equations (Kingma & Welling 2014):
- reparameterization, eq. 10:      z = mu + exp(logvar / 2) * eps,  eps ~ N(0, I)
- KL to the prior, appendix B:     KL = 1/2 sum_j (mu_j^2 + exp(logvar_j) - 1 - logvar_j)
- log q(z|x) = -1/2 sum_j (eps_j^2 + logvar_j + log 2 pi)
- log p(z)   = -1/2 sum_j (z_j^2 + log 2 pi)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LOG_2PI = math.log(2.0 * math.pi)


def standard_normal(seed: int, shape: tuple[int, ...], device: torch.device | str = "cpu",
                    dtype: torch.dtype = torch.float32) -> Tensor:
    """Draw eps ~ N(0, I) of ``shape`` as a pure function of ``seed``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed) & 0xFFFF_FFFF_FFFF_FFFF)
    return torch.randn(shape, generator=gen, device=device, dtype=dtype)


def sample_shape(mu: Tensor, n_samples: int) -> tuple[int, ...]:
    return (n_samples, *mu.shape) if n_samples > 1 else tuple(mu.shape)


def reparameterize_with_eps(mu: Tensor, logvar: Tensor, eps: Tensor) -> Tensor:
    """z = mu + exp(logvar / 2) * eps, broadcasting eps over leading sample dims."""
    return mu + torch.exp(0.5 * logvar) * eps


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) per row (K&W 2014, appendix B), float32 accumulate."""
    m = mu.float()
    lv = logvar.float()
    return 0.5 * (m * m + torch.exp(lv) - 1.0 - lv).sum(-1)


def log_q_from_eps(logvar: Tensor, eps: Tensor) -> Tensor:
    """log N(z; mu, diag exp(logvar)) written through eps = (z - mu) / sigma."""
    return -0.5 * (eps.float() ** 2 + logvar.float() + LOG_2PI).sum(-1)


def log_p_standard(z: Tensor) -> Tensor:
    """log N(z; 0, I) per row."""
    return -0.5 * (z.float() ** 2 + LOG_2PI).sum(-1)


def reparameterize(mu: Tensor, logvar: Tensor, n_samples: int = 1, seed: int = 0,
                   with_log_probs: bool = False):
    eps = standard_normal(seed, sample_shape(mu, n_samples), mu.device, torch.float32)
    z = reparameterize_with_eps(mu.float(), logvar.float(), eps).to(mu.dtype)
    if not with_log_probs:
        return z
    lv = logvar.float().expand_as(eps) if n_samples > 1 else logvar.float()
    zf = reparameterize_with_eps(mu.float(), logvar.float(), eps)
    return z, log_q_from_eps(lv, eps), log_p_standard(zf)


def reparameterize_kl(mu: Tensor, logvar: Tensor, n_samples: int = 1, seed: int = 0):
    return reparameterize(mu, logvar, n_samples, seed), gaussian_kl(mu, logvar)

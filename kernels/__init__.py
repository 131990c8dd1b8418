"""The Gaussian latent layer: reparameterization and KL, on three backends.

- ``eager``: plain PyTorch (``kernels.reference``), the definition of correct;
- ``compile``: the same math through ``torch.compile`` with hand-written backward (CPU default);
- ``triton``: fused Triton kernels, eps drawn in-kernel from Philox (CUDA default).

The backend is chosen by the ``backend=`` argument, else ``set_default_backend``,
else the environment variable ``VAEBENCH_BACKEND``, else automatically.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from kernels import reference

BACKENDS = ("eager", "compile", "triton")
_default: str | None = None


def set_default_backend(name: str | None) -> None:
    """Set the process-wide backend (``None`` or ``"auto"`` restores automatic choice)."""
    global _default
    _default = None if name in (None, "auto") else _check_backend(name)


def _check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; valid choices: auto, {', '.join(BACKENDS)}")
    return name


def resolve_backend(name: str | None = None, device: torch.device | str | None = None) -> str:
    """Resolve ``name`` (or the default, or ``$VAEBENCH_BACKEND``) to a concrete backend."""
    if name in (None, "auto"):
        name = _default or os.environ.get("VAEBENCH_BACKEND") or "auto"
    if name == "auto":
        dev = torch.device(device) if device is not None else None
        if dev is not None and dev.type == "cuda":
            return "triton"
        return "eager"
    return _check_backend(name)


def _validate(mu: Tensor, logvar: Tensor, n_samples: int = 1) -> None:
    if not isinstance(mu, Tensor) or not isinstance(logvar, Tensor):
        raise TypeError("mu and logvar must be torch.Tensor")
    if mu.shape != logvar.shape:
        raise ValueError(
            f"mu and logvar must have the same shape, got mu {tuple(mu.shape)} "
            f"and logvar {tuple(logvar.shape)}")
    for arg, t in (("mu", mu), ("logvar", logvar)):
        if not t.is_floating_point():
            raise TypeError(f"{arg} must be a floating-point tensor, got dtype {t.dtype}")
    if mu.dim() < 1:
        raise ValueError("mu and logvar need at least one dimension (the latent dimension)")
    if not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}")


def reparameterize(mu: Tensor, logvar: Tensor, n_samples: int = 1, seed: int = 0, *,
                   with_log_probs: bool = False, backend: str | None = None):
    """z = mu + exp(logvar/2) * eps with eps ~ N(0, I) drawn from ``seed``.

    Returns z of shape (n_samples, ..., D), or (..., D) when n_samples == 1. With
    ``with_log_probs`` also returns log q(z|x) and log p(z), one per sample row.
    """
    _validate(mu, logvar, n_samples)
    resolve_backend(backend, mu.device)
    return reference.reparameterize(mu, logvar, n_samples, seed, with_log_probs)


def gaussian_kl(mu: Tensor, logvar: Tensor, *, backend: str | None = None) -> Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) per row, shape (...)."""
    _validate(mu, logvar)
    resolve_backend(backend, mu.device)
    return reference.gaussian_kl(mu, logvar)


def reparameterize_kl(mu: Tensor, logvar: Tensor, n_samples: int = 1, seed: int = 0, *,
                      backend: str | None = None) -> tuple[Tensor, Tensor]:
    """(z, kl) from one read of mu and logvar."""
    _validate(mu, logvar, n_samples)
    resolve_backend(backend, mu.device)
    return reference.reparameterize_kl(mu, logvar, n_samples, seed)


def step_seed(base_seed: int, step: int, stream: int = 0) -> int:
    """A 63-bit seed for training step ``step``: distinct for every (base_seed, step, stream).

    SplitMix64 finalizer over the packed triple, so consecutive steps get unrelated seeds.
    """
    x = (int(base_seed) * 0x9E3779B97F4A7C15 + int(step) * 0xBF58476D1CE4E5B9
         + int(stream) * 0x94D049BB133111EB) & 0xFFFF_FFFF_FFFF_FFFF
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & 0xFFFF_FFFF_FFFF_FFFF
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & 0xFFFF_FFFF_FFFF_FFFF
    x ^= x >> 31
    return x & 0x7FFF_FFFF_FFFF_FFFF


__all__ = ["BACKENDS", "gaussian_kl", "reparameterize", "reparameterize_kl",
           "resolve_backend", "set_default_backend", "step_seed"]

"""The Gaussian latent layer: reparameterization and KL, on three backends.

- ``eager``: plain PyTorch (``kernels.reference``), the definition of correct;
- ``compile``: the same math through ``torch.compile`` with hand-written backward (CPU default);
- ``triton``: fused Triton kernels, eps drawn in-kernel from Philox (CUDA default).

The backend is chosen by the ``backend=`` argument, else ``set_default_backend``,
else the environment variable ``VAEBENCH_BACKEND``, else automatically ("auto":
``triton`` for CUDA tensors, ``compile`` otherwise). It is resolved and checked before any
kernel is launched. Importing this package compiles nothing and does not import Triton.

eps at flat position i of the (n_samples, ..., D) sample tensor is ``tl.randn(seed, i)``
(Philox-4x32-10 + Box-Muller) on every backend; see ``kernels.reference``.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import torch
from torch import Tensor

from kernels import reference

BACKENDS = ("eager", "compile", "triton")
ENV_VAR = "VAEBENCH_BACKEND"
_default: str | None = None


def set_default_backend(name: str | None) -> None:
    """Set the process-wide backend (``None`` or ``"auto"`` restores automatic choice)."""
    global _default
    _default = None if name in (None, "auto") else _check_backend(name, "backend")


def _check_backend(name: object, where: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown {where} {name!r}; valid choices: auto, {', '.join(BACKENDS)}")
    return name  # type: ignore[return-value]


def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def available_backends(device: torch.device | str | None = None) -> tuple[str, ...]:
    """Backends that can run on ``device`` in this process (``triton`` needs CUDA or the
    interpreter, ``TRITON_INTERPRET=1``, set before ``kernels.triton_latent`` is imported)."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    names = ["eager", "compile"]
    if _triton_installed() and (dev.type == "cuda" or _triton_interpreter()):
        names.append("triton")
    return tuple(names)


def _triton_interpreter() -> bool:
    """Whether Triton kernels run in the interpreter (decided when they are decorated)."""
    module = sys.modules.get("kernels.triton_latent")
    if module is not None:
        return module.INTERPRET
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def resolve_backend(name: str | None = None, device: torch.device | str | None = None) -> str:
    """Resolve ``name`` (or the default, or ``$VAEBENCH_BACKEND``) to a concrete backend.

    "auto" gives ``triton`` on CUDA (``compile`` if Triton is missing) and ``compile``
    elsewhere; with no device, CUDA counts when it is available.
    """
    if name in (None, "auto"):
        name = _default
        if name is None:
            env = os.environ.get(ENV_VAR) or "auto"
            name = "auto" if env == "auto" else _check_backend(env, f"${ENV_VAR}")
    else:
        name = _check_backend(name, "backend")
    if name != "auto":
        return name
    if device is not None:
        on_cuda = torch.device(device).type == "cuda"
    else:
        on_cuda = torch.cuda.is_available()
    return "triton" if on_cuda and _triton_installed() else "compile"


def _backend_module(name: str, mu: Tensor):
    """The module implementing ``name`` for ``mu``'s device; raises before any launch."""
    if name == "compile":
        from kernels import compiled

        return compiled
    if name == "triton":
        if not _triton_installed():
            raise ValueError("backend 'triton' needs the triton package; "
                             "use backend='compile' or 'eager'")
        if mu.device.type != "cuda" and not _triton_interpreter():
            raise ValueError(
                f"backend 'triton' needs a CUDA tensor, got device {mu.device.type!r} "
                "(set TRITON_INTERPRET=1 before importing kernels.triton_latent to run the "
                "interpreter); use backend='compile' or 'eager'")
        from kernels import triton_latent

        return triton_latent
    return None


def _validate(mu: Tensor, logvar: Tensor, n_samples: int = 1, seed: int = 0) -> None:
    if not isinstance(mu, Tensor) or not isinstance(logvar, Tensor):
        raise TypeError(f"mu and logvar must be torch.Tensor, got {type(mu).__name__} "
                        f"and {type(logvar).__name__}")
    if mu.shape != logvar.shape:
        raise ValueError(
            f"mu and logvar must have the same shape, got mu {tuple(mu.shape)} "
            f"and logvar {tuple(logvar.shape)}")
    for arg, t in (("mu", mu), ("logvar", logvar)):
        if not t.is_floating_point():
            raise TypeError(f"{arg} must be a floating-point tensor, got dtype {t.dtype}")
        if t.dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
            raise TypeError(f"{arg} dtype {t.dtype} is not supported; valid choices: "
                            "float32, float64, float16, bfloat16")
    if mu.dtype != logvar.dtype:
        raise TypeError(f"mu and logvar must have the same dtype, got {mu.dtype} "
                        f"and {logvar.dtype}")
    if mu.device != logvar.device:
        raise ValueError(f"mu and logvar must be on the same device, got {mu.device} "
                         f"and {logvar.device}")
    if mu.dim() < 1:
        raise ValueError("mu and logvar need at least one dimension (the latent dimension), "
                         "got 0-d tensors")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}")
    reference.fold_seed(seed)


def reparameterize(mu: Tensor, logvar: Tensor, n_samples: int = 1, seed: int = 0, *,
                   with_log_probs: bool = False, backend: str | None = None):
    """z = mu + exp(logvar/2) * eps with eps ~ N(0, I) drawn from ``seed``.

    Returns z of shape (n_samples, ..., D), or (..., D) when n_samples == 1, in the input
    dtype. With ``with_log_probs`` also returns log q(z|x) and log p(z), one per sample
    row (float32; float64 for float64 inputs). Gradients flow through all outputs.
    """
    _validate(mu, logvar, n_samples, seed)
    module = _backend_module(resolve_backend(backend, mu.device), mu)
    if module is None or mu.numel() == 0:
        return reference.reparameterize(mu, logvar, n_samples, seed, with_log_probs)
    return module.reparameterize(mu, logvar, n_samples, seed, with_log_probs)


def gaussian_kl(mu: Tensor, logvar: Tensor, *, backend: str | None = None) -> Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) per row, shape (...), float32 (float64 for
    float64 inputs)."""
    _validate(mu, logvar)
    module = _backend_module(resolve_backend(backend, mu.device), mu)
    if module is None or mu.numel() == 0:
        return reference.gaussian_kl(mu, logvar)
    return module.gaussian_kl(mu, logvar)


def reparameterize_kl(mu: Tensor, logvar: Tensor, n_samples: int = 1, seed: int = 0, *,
                      backend: str | None = None) -> tuple[Tensor, Tensor]:
    """(z, kl) from one read of mu and logvar; z as in ``reparameterize``."""
    _validate(mu, logvar, n_samples, seed)
    module = _backend_module(resolve_backend(backend, mu.device), mu)
    if module is None or mu.numel() == 0:
        return reference.reparameterize_kl(mu, logvar, n_samples, seed)
    return module.reparameterize_kl(mu, logvar, n_samples, seed)


def log_q_at(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log q(z|x) = log N(z; mu, diag exp(logvar)) per row, differentiated at fixed z.

    The score-function (REINFORCE) estimator needs this: its gradient with respect to mu and
    logvar is the score, with z detached (``reference.log_q_at``). The log q returned by
    ``reparameterize(..., with_log_probs=True)`` has the same value but is differentiated
    with eps held fixed, so its d/d mu is 0: use it for pathwise gradients only.
    z: (..., D) or (S, ..., D), the shape of mu (the same dtype and device); returns (...) or
    (S, ...), float32 (float64 for float64 inputs). Plain PyTorch on every backend.
    """
    _validate(mu, logvar)
    if not isinstance(z, Tensor):
        raise TypeError(f"z must be a torch.Tensor, got {type(z).__name__}")
    if tuple(z.shape[-mu.dim():]) != tuple(mu.shape) or z.dim() > mu.dim() + 1:
        raise ValueError(f"z must have shape {tuple(mu.shape)} or (n_samples, "
                         f"*{tuple(mu.shape)}), got {tuple(z.shape)}")
    if z.dtype != mu.dtype or z.device != mu.device:
        raise TypeError(f"z must have mu's dtype and device ({mu.dtype}, {mu.device}), "
                        f"got {z.dtype}, {z.device}")
    return reference.log_q_at(z, mu, logvar)


def step_seed(base_seed: int, step: int, stream: int = 0) -> int:
    """A 63-bit seed for training step ``step``: distinct for every step of a (base_seed, stream).

    The SplitMix64 finalizer (Steele, Lea, Flood 2014) run on 63-bit words: the packed word
    base_seed * G + step * C1 + stream * C2 (mod 2**63, odd multipliers) is injective in
    ``step`` mod 2**63, and each xor-shift and odd multiplication is a bijection of 63-bit
    words, so distinct steps give distinct seeds (hence distinct Philox keys and eps), and
    consecutive steps get unrelated ones.
    """
    mask = (1 << reference.SEED_BITS) - 1
    x = (int(base_seed) * 0x9E3779B97F4A7C15 + int(step) * 0xBF58476D1CE4E5B9
         + int(stream) * 0x94D049BB133111EB) & mask
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & mask
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & mask
    x ^= x >> 31
    return x


__all__ = ["BACKENDS", "available_backends", "gaussian_kl", "log_q_at", "reparameterize",
           "reparameterize_kl", "resolve_backend", "set_default_backend", "step_seed"]

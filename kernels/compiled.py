"""The ``compile`` backend: the reference math through ``torch.compile``, with hand-written backward.

Four graphs serve every op, compiled lazily on first use with ``dynamic=True`` (batch sizes
vary; the inductor cache in ``$TORCHINDUCTOR_CACHE_DIR`` is used as configured):

- ``_sample_forward``:  (z, kl, log q, log p) from one read of mu and logvar;
- ``_sample_backward``: grad mu and grad logvar from the four output grads, eps regenerated;
- ``_kl_forward`` and ``_kl_backward`` for ``gaussian_kl`` alone (no noise at all).

eps is ``reference.normal_from_counter`` traced into the graph, so inductor fuses Philox,
Box-Muller, z and the row sums into its loops: eps is never stored, and it equals the eager
reference's eps (the integer part bit for bit; float32 log/cos may differ by an ulp).

Layout inside the graphs: rows r = s * N + n of the (n_samples * N, D) sample matrix use the
input row n = r mod N, so one graph covers n_samples == 1 and n_samples > 1 without a
recompile; ``n_samples`` enters as ``n_samples + 2`` because dynamo specializes integer
arguments equal to 0 or 1. float16 and bfloat16 inputs are computed in float32.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from kernels import reference
from kernels.reference import LOG_2PI

_compiled: dict[str, object] = {}


def _compiled_fn(name: str, fn):
    """``torch.compile(fn, dynamic=True, fullgraph=True)``, built on first use only."""
    if name not in _compiled:
        _compiled[name] = torch.compile(fn, dynamic=True, fullgraph=True)
    return _compiled[name]


def _noise_rows(mu: Tensor, lv: Tensor, key: Tensor, n_samples_p2: int):
    """Shared prologue: row-gathered mu, logvar, sigma and eps for the (S*N, D) sample matrix."""
    n_samples = n_samples_p2 - 2
    n, d = mu.shape
    r = n_samples * n
    src = torch.arange(r, device=mu.device) % n
    m, lv_r = mu[src], lv[src]
    counter = torch.arange(r * d, device=mu.device, dtype=torch.int64).view(r, d) + key[2]
    eps = reference.normal_from_counter(counter, key[0], key[1]).to(mu.dtype)
    sigma = torch.exp(0.5 * lv_r)
    return m, lv_r, sigma, eps


def _sample_forward(mu: Tensor, lv: Tensor, key: Tensor, n_samples_p2: int):
    """z = mu + sigma eps (S*N, D); log q, log p (S*N,); kl (N,). Reference equations."""
    m, lv_r, sigma, eps = _noise_rows(mu, lv, key, n_samples_p2)
    z = m + sigma * eps
    log_q = -0.5 * (eps * eps + lv_r + LOG_2PI).sum(-1)
    log_p = -0.5 * (z * z + LOG_2PI).sum(-1)
    kl = 0.5 * (mu * mu + torch.exp(lv) - 1.0 - lv).sum(-1)
    return z, kl, log_q, log_p


def _sample_backward(mu: Tensor, lv: Tensor, key: Tensor, n_samples_p2: int,
                     g_z: Tensor, g_kl: Tensor, g_q: Tensor, g_p: Tensor):
    """Vector-Jacobian product of ``_sample_forward`` with eps held fixed.

    With g = g_z - z g_p (log p flows through z):
      grad mu     = sum_s g + g_kl mu
      grad logvar = sigma/2 sum_s g eps - 1/2 sum_s g_q + g_kl (exp(logvar) - 1)/2
    Outputs the caller did not use arrive as zero grads; their terms are masked to exactly
    zero so that a NaN in one output does not leak into gradients that do not depend on it.
    """
    n_samples = n_samples_p2 - 2
    n, d = mu.shape
    m, _, sigma, eps = _noise_rows(mu, lv, key, n_samples_p2)
    z = m + sigma * eps
    g_p_col, g_kl_col = g_p[:, None], g_kl[:, None]
    g = g_z - torch.where(g_p_col == 0, 0.0, z * g_p_col)
    g_mu = g.view(n_samples, n, d).sum(0) + torch.where(g_kl_col == 0, 0.0, g_kl_col * mu)
    g_eps = (g * eps).view(n_samples, n, d).sum(0)
    g_q_sum = g_q.view(n_samples, n).sum(0)
    kl_lv = torch.where(g_kl_col == 0, 0.0, 0.5 * g_kl_col * (torch.exp(lv) - 1.0))
    g_lv = 0.5 * torch.exp(0.5 * lv) * g_eps - 0.5 * g_q_sum[:, None] + kl_lv
    return g_mu, g_lv


def _kl_forward(mu: Tensor, lv: Tensor) -> Tensor:
    """KL per row (K&W 2014, appendix B)."""
    return 0.5 * (mu * mu + torch.exp(lv) - 1.0 - lv).sum(-1)


def _kl_backward(mu: Tensor, lv: Tensor, g_kl: Tensor):
    """d KL / d mu = mu, d KL / d logvar = (exp(logvar) - 1) / 2, times the row grad."""
    g = g_kl[:, None]
    return g * mu, 0.5 * g * (torch.exp(lv) - 1.0)


def _key(seed: int, offset: int, device: torch.device) -> Tensor:
    """(k0, k1, counter offset) as an int64 tensor, so new seeds never trigger a recompile."""
    k0, k1 = reference.philox_key(seed)
    return torch.tensor([k0, k1, int(offset)], dtype=torch.int64, device=device)


def _acc_rows(t: Tensor) -> Tensor:
    """(..., D) -> contiguous (N, D) in the accumulation dtype, as a detached non-view.

    The graphs then never see requires_grad or view inputs (both are guarded on, and
    would cost a recompile).
    """
    return reference.rows_view(t).to(reference.acc_dtype(t.dtype)).contiguous().detach()


def _grad_or_zeros(g: Tensor | None, shape: tuple[int, ...], like: Tensor) -> Tensor:
    if g is None:
        return torch.zeros(shape, dtype=like.dtype, device=like.device)
    return g.reshape(shape).to(like.dtype).contiguous().detach()


class LatentCompiled(torch.autograd.Function):
    """(z, kl, log q, log p) for mu, logvar of shape (..., D); outputs chosen by flags.

    Forward returns, in order, those of z (S, N, D), kl (N,), log q (S, N), log p (S, N)
    that are wanted; the caller reshapes them.
    """

    @staticmethod
    def forward(ctx, mu, logvar, n_samples, seed, want_z, want_kl, want_lp, offset=0):
        ctx.set_materialize_grads(False)
        mu2, lv2 = _acc_rows(mu), _acc_rows(logvar)
        n, d = mu2.shape
        ctx.save_for_backward(mu, logvar)
        ctx.meta = (n_samples, seed, offset, want_z, want_kl, want_lp)
        if not (want_z or want_lp):
            return (_compiled_fn("kl_forward", _kl_forward)(mu2, lv2),)
        key = _key(seed, offset, mu2.device)
        fwd = _compiled_fn("sample_forward", _sample_forward)
        z, kl, log_q, log_p = fwd(mu2, lv2, key, n_samples + 2)
        out = []
        if want_z:
            out.append(z.view(n_samples, n, d).to(mu.dtype))
        if want_kl:
            out.append(kl)
        if want_lp:
            out += [log_q.view(n_samples, n), log_p.view(n_samples, n)]
        return tuple(out)

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads):
        mu, logvar = ctx.saved_tensors
        n_samples, seed, offset, want_z, want_kl, want_lp = ctx.meta
        mu2, lv2 = _acc_rows(mu), _acc_rows(logvar)
        n, d = mu2.shape
        grads = list(grads)
        g_z = grads.pop(0) if want_z else None
        g_kl = grads.pop(0) if want_kl else None
        g_q, g_p = (grads[0], grads[1]) if want_lp else (None, None)
        if g_z is None and g_q is None and g_p is None:
            if g_kl is None:
                return (None,) * 8
            g_mu, g_lv = _compiled_fn("kl_backward", _kl_backward)(
                mu2, lv2, _grad_or_zeros(g_kl, (n,), mu2))
        else:
            bwd = _compiled_fn("sample_backward", _sample_backward)
            g_mu, g_lv = bwd(mu2, lv2, _key(seed, offset, mu2.device), n_samples + 2,
                             _grad_or_zeros(g_z, (n_samples * n, d), mu2),
                             _grad_or_zeros(g_kl, (n,), mu2),
                             _grad_or_zeros(g_q, (n_samples * n,), mu2),
                             _grad_or_zeros(g_p, (n_samples * n,), mu2))
        return (g_mu.view(mu.shape).to(mu.dtype), g_lv.view(logvar.shape).to(logvar.dtype),
                None, None, None, None, None, None)


def _lead(mu: Tensor, n_samples: int) -> tuple[int, ...]:
    return (n_samples, *mu.shape[:-1]) if n_samples > 1 else tuple(mu.shape[:-1])


def reparameterize(mu: Tensor, logvar: Tensor, n_samples: int = 1, seed: int = 0,
                   with_log_probs: bool = False, *, offset: int = 0):
    """``kernels.reparameterize`` on the compile backend (inputs already validated)."""
    out = LatentCompiled.apply(mu, logvar, n_samples, seed, True, False, with_log_probs, offset)
    z = out[0].view(reference.sample_shape(mu, n_samples))
    if not with_log_probs:
        return z
    lead = _lead(mu, n_samples)
    return z, out[1].view(lead), out[2].view(lead)


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """``kernels.gaussian_kl`` on the compile backend."""
    (kl,) = LatentCompiled.apply(mu, logvar, 1, 0, False, True, False, 0)
    return kl.view(mu.shape[:-1])


def reparameterize_kl(mu: Tensor, logvar: Tensor, n_samples: int = 1, seed: int = 0, *,
                      offset: int = 0) -> tuple[Tensor, Tensor]:
    """``kernels.reparameterize_kl`` on the compile backend: one graph gives z and kl."""
    z, kl = LatentCompiled.apply(mu, logvar, n_samples, seed, True, True, False, offset)
    return z.view(reference.sample_shape(mu, n_samples)), kl.view(mu.shape[:-1])

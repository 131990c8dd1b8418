"""The ``compile`` backend: the reference math through ``torch.compile``, with hand-written backward.

Graphs are compiled lazily on first use with ``dynamic=True`` (batch sizes and sample counts
vary; the inductor cache in ``$TORCHINDUCTOR_CACHE_DIR`` is used as configured), one top-level
function, hence one dynamo cache, per variant:

- ``_forward_{plain,keep,lp,lp_keep}``: z (S, N, D) and kl (N,) from one read of mu and
  logvar, plus log q, log p (S, N) with ``lp`` and eps (S, N, D) with ``keep`` (kept for
  backward);
- ``_sample_backward_{plain,lp}``: grad mu and grad logvar from the output grads and the
  kept eps;
- ``kl_forward`` and ``kl_backward`` for ``gaussian_kl`` alone (no noise at all).

eps at flat position i of the (S, N, D) sample tensor is ``tl.randn(seed, i)`` as in the
reference: ``philox_words`` below is Philox-4x32-10 written for speed inside a graph (one
wrapping int64 product per multiply, masks deferred to where they matter) and gives the same
words as ``reference.philox4x32`` bit for bit (``tests/kernels/test_rng.py``); Box-Muller is
``reference.box_muller`` on ``uniform_from_word``. Inductor computes Philox, Box-Muller and
z in one loop over (S, N * D); eps leaves registers only when it is kept for backward.

Why eps is kept for backward on this backend (the Triton one regenerates it): on a CPU the
Philox rounds, not memory, bound the op (a few percent of copy bandwidth,
``reports/kernels/latent_bench_cpu-amd.md``), so drawing once and keeping eps, as autograd does
for ``torch.randn`` noise, costs a store and a load per element where regenerating costs the
whole draw again. eps is only kept when mu or logvar requires grad. (Saving z, the output,
and using sigma eps = z - mu would cost no memory at all, but z's rounding then enters the
gradient: with |sigma eps| near ulp(mu) the logvar gradient is off by up to 100%.)

float16 and bfloat16 inputs are computed in float32. ``n_samples`` enters as
``n_samples + 2`` because dynamo specializes integer arguments equal to 0 or 1.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from kernels import reference
from kernels.reference import (
    LOG_2PI,
    MASK32,
    PHILOX_M0,
    PHILOX_M1,
    PHILOX_ROUNDS,
    PHILOX_W0,
    PHILOX_W1,
)

_compiled: dict[str, object] = {}
# Inductor realizes (stores to a buffer) any value with several users whose expression exceeds
# ``realize_cpu_opcount_threshold`` (50) ops; the Philox words grow past that after a round or
# two, so by default eps is computed in pieces that round-trip through memory, in a loop
# apart from z (3x slower at S = 50). Raised, the whole draw stays in registers, in the loop
# that writes z. The words reuse each other only within one element, so there is no blow-up.
# On CUDA, torch 2.11's inductor asserts in its coalescing tiling analysis on the dynamic
# sample dimension (4 kernel tests, reports/kernels/gpu_tests_cuda-before-fix.log); the
# analysis only picks a tiling, so it is switched off, and every kernel test passes on the GPU
# (reports/kernels/gpu_tests_cuda.log). A Triton option: the CPU's C++ code is the same.
_OPTIONS = {"realize_opcount_threshold": 100_000, "triton.coalesce_tiling_analysis": False}


def _compiled_fn(name: str, fn):
    """``torch.compile(fn, dynamic=True, fullgraph=True)``, built on first use only."""
    if name not in _compiled:
        _compiled[name] = torch.compile(fn, dynamic=True, fullgraph=True, options=_OPTIONS)
    return _compiled[name]


def _xor(a, b):
    """a ^ b, skipping a Python-int zero (the first rounds' c1 and c3)."""
    return a if isinstance(b, int) and b == 0 else a ^ b


def philox_words(c0: Tensor, c1: Tensor, k0, k1) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The four output words of Philox-4x32-10 for counters (c0, c1, 0, 0), int64 tensors,
    valid in their low 32 bits (mask with 0xFFFFFFFF, or truncate to int32, to read them).
    The eps stream reads words 0 and 1 (``tl.randn``); inside a graph the unread words 2 and
    3 cost nothing (inductor drops them).

    The rounds of ``reference.philox4x32`` (Salmon et al. 2011), with the bookkeeping
    changed for speed: each 32 x 32-bit product is one int64 multiply, which wraps modulo
    2**64 and so holds the exact 64-bit product; its low word is the product itself and its
    high word ``p >> 32``, both read in their low 32 bits only. Words may carry garbage above
    bit 31 between rounds; every multiply input is masked to 32 bits first. c2 = c3 = 0
    start as Python ints, so the first round's zero products fold away.
    """
    c2 = c3 = 0
    for _ in range(PHILOX_ROUNDS):
        p0 = (c0 & MASK32) * PHILOX_M0
        p1 = (c2 & MASK32) * PHILOX_M1
        c0, c1, c2, c3 = _xor(_xor(p1 >> 32, c1), k0), p1, _xor(_xor(p0 >> 32, c3), k1), p0
        k0 = (k0 + PHILOX_W0) & MASK32
        k1 = (k1 + PHILOX_W1) & MASK32
    return c0, c1, c2, c3


def uniform_from_word(word: Tensor) -> Tensor:
    """``reference.uniform_from_bits`` of the low 32 bits of ``word``, in int32 lanes: the
    truncation to int32 reads the word as signed, and x ^ (x >> 31) is ~x for negative x."""
    x = word.to(torch.int32)
    return (x ^ (x >> 31)).to(torch.float32) * reference.UNIFORM_SCALE


def _eps(shape: tuple, key: Tensor, row_stride: int, device: torch.device, dtype: torch.dtype
         ) -> Tensor:
    """eps of ``shape`` (S, N, D): ``tl.randn(seed, offset + i)`` at flat position i.

    ``row_stride`` is N * D, passed as its own (symbolic) integer: the counter
    s * row_stride + (n * D + d) then cannot be merged into one flat loop index, so inductor
    loops over (S, N * D) here as for z = mu + sigma eps, and fuses the two loops.
    """
    s, n, d = shape
    counter = (torch.arange(s, device=device, dtype=torch.int64)[:, None, None] * row_stride
               + torch.arange(n * d, device=device, dtype=torch.int64).view(1, n, d) + key[2])
    r0, r1, _, _ = philox_words(counter & MASK32, counter >> 32, key[0], key[1])
    return reference.box_muller(uniform_from_word(r0), uniform_from_word(r1)).to(dtype)


def _sample_forward(mu: Tensor, lv: Tensor, key: Tensor, n_samples_p2: int, row_stride: int, *,
                    lp: bool, keep_eps: bool):
    """z = mu + sigma eps (S, N, D); kl (N,); log q, log p (S, N) if ``lp``; eps if kept."""
    n, d = mu.shape
    eps = _eps((n_samples_p2 - 2, n, d), key, row_stride, mu.device, mu.dtype)
    z = mu + torch.exp(0.5 * lv) * eps
    out = [z, reference.gaussian_kl(mu, lv)]  # inputs in their accumulation dtype already
    if lp:
        out += [-0.5 * (eps * eps + lv + LOG_2PI).sum(-1), -0.5 * (z * z + LOG_2PI).sum(-1)]
    if keep_eps:
        out.append(eps)
    return tuple(out)


def _sample_backward(mu: Tensor, lv: Tensor, eps: Tensor, g_z: Tensor, g_kl: Tensor,
                     g_q: Tensor | None, g_p: Tensor | None):
    """Vector-Jacobian product of ``_sample_forward`` with eps held fixed.

    With g = g_z - z g_p (log p flows through z):
      grad mu     = sum_s g + g_kl mu
      grad logvar = sigma/2 sum_s g eps - 1/2 sum_s g_q + g_kl (exp(logvar) - 1)/2
    Outputs the caller did not use arrive as zero grads; their terms are masked to exactly
    zero so that a NaN in one output does not leak into gradients that do not depend on it.
    """
    sigma = torch.exp(0.5 * lv)
    g_kl_col = g_kl[:, None]
    g = g_z
    if g_p is not None:
        g_p_col = g_p[..., None]
        g = g - torch.where(g_p_col == 0, 0.0, (mu + sigma * eps) * g_p_col)
    g_mu = g.sum(0) + torch.where(g_kl_col == 0, 0.0, g_kl_col * mu)
    kl_lv = torch.where(g_kl_col == 0, 0.0, 0.5 * g_kl_col * (torch.exp(lv) - 1.0))
    g_lv = 0.5 * sigma * (g * eps).sum(0) + kl_lv
    if g_q is not None:
        g_lv = g_lv - 0.5 * g_q.sum(0)[:, None]
    return g_mu, g_lv


def _sample_backward_lp(mu, lv, eps, g_z, g_kl, g_q, g_p):
    return _sample_backward(mu, lv, eps, g_z, g_kl, g_q, g_p)


def _sample_backward_plain(mu, lv, eps, g_z, g_kl):
    return _sample_backward(mu, lv, eps, g_z, g_kl, None, None)


def _kl_backward(mu: Tensor, lv: Tensor, g_kl: Tensor):
    """d KL / d mu = mu, d KL / d logvar = (exp(logvar) - 1) / 2, times the row grad."""
    g = g_kl[:, None]
    return g * mu, 0.5 * g * (torch.exp(lv) - 1.0)


# One top-level function per variant: dynamo keeps compiled graphs per code object, so
# variants sharing one (a closure) would count against one recompile limit.
def _forward_plain(mu, lv, key, n_samples_p2, row_stride):
    return _sample_forward(mu, lv, key, n_samples_p2, row_stride, lp=False, keep_eps=False)


def _forward_keep(mu, lv, key, n_samples_p2, row_stride):
    return _sample_forward(mu, lv, key, n_samples_p2, row_stride, lp=False, keep_eps=True)


def _forward_lp(mu, lv, key, n_samples_p2, row_stride):
    return _sample_forward(mu, lv, key, n_samples_p2, row_stride, lp=True, keep_eps=False)


def _forward_lp_keep(mu, lv, key, n_samples_p2, row_stride):
    return _sample_forward(mu, lv, key, n_samples_p2, row_stride, lp=True, keep_eps=True)


_FORWARDS = {(False, False): _forward_plain, (False, True): _forward_keep,
             (True, False): _forward_lp, (True, True): _forward_lp_keep}


def _forward_fn(lp: bool, keep_eps: bool):
    """The compiled forward variant: with or without log-probs, keeping eps or not."""
    fn = _FORWARDS[(lp, keep_eps)]
    return _compiled_fn(fn.__name__, fn)


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
        ctx.meta = (n_samples, want_z, want_kl, want_lp)
        if not (want_z or want_lp):
            ctx.save_for_backward(mu, logvar)
            return (_compiled_fn("kl_forward", reference.gaussian_kl)(mu2, lv2),)
        keep = bool(ctx.needs_input_grad[0] or ctx.needs_input_grad[1])
        outs = list(_forward_fn(want_lp, keep)(mu2, lv2, _key(seed, offset, mu2.device),
                                               n_samples + 2, n * d))
        z, kl = outs[0], outs[1]
        ctx.save_for_backward(mu, logvar, outs[-1] if keep else None)
        out = []
        if want_z:
            out.append(z.to(mu.dtype))
        if want_kl:
            out.append(kl)
        if want_lp:
            out += [outs[2], outs[3]]
        return tuple(out)

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads):
        mu, logvar, *kept = ctx.saved_tensors
        n_samples, want_z, want_kl, want_lp = ctx.meta
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
            args = (mu2, lv2, kept[0], _grad_or_zeros(g_z, (n_samples, n, d), mu2),
                    _grad_or_zeros(g_kl, (n,), mu2))
            if g_q is None and g_p is None:
                g_mu, g_lv = _compiled_fn("sample_backward[lp=0]", _sample_backward_plain)(*args)
            else:
                g_mu, g_lv = _compiled_fn("sample_backward[lp=1]", _sample_backward_lp)(
                    *args, _grad_or_zeros(g_q, (n_samples, n), mu2),
                    _grad_or_zeros(g_p, (n_samples, n), mu2))
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

"""The ``triton`` backend: fused Triton kernels for the Gaussian latent layer.

Read top to bottom: the forward kernel, the backward kernel, the launch helpers, then the
autograd wrapper and the three ops. The benchmark is ``kernels/bench/test_bench_latent.py``.

Forward, one program per (sample s, tile of rows), columns in chunks of BLOCK_D:

    eps   = tl.randn(seed, offset + (s * N + row) * D + col)   # never stored
    z     = mu + exp(logvar / 2) * eps                         # stored in the input dtype
    kl    = 1/2 sum_col (mu^2 + sigma^2 - 1 - logvar)          # stored by s == 0 only
    log q = -1/2 sum_col (eps^2 + logvar + log 2 pi)
    log p = -1/2 sum_col (z^2 + log 2 pi)

Backward, one program per (tile of rows, chunk of columns), looping over samples and
regenerating eps from the seed (g = g_z - z g_p, because log p depends on z):

    grad mu     = sum_s g + g_kl mu
    grad logvar = sigma/2 sum_s g eps - 1/2 sum_s g_q + g_kl (sigma^2 - 1)/2

Loads and math in float32 (float64 for float64 inputs); counters are int64, so tensors of
more than 2**31 elements work. With ``TRITON_INTERPRET=1`` set before this module is
imported the kernels run on CPU tensors through Triton's interpreter.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.autograd.function import once_differentiable

from kernels import reference

_LOG_2PI = tl.constexpr(math.log(2.0 * math.pi))


@triton.jit
def _to_acc(x, ACC_FP64: tl.constexpr):
    """Cast to the accumulation dtype: float64 for float64 inputs, else float32."""
    if ACC_FP64:
        return x.to(tl.float64)
    else:
        return x.to(tl.float32)


# --------------------------------------------------------------------------------------
# Forward kernel
# --------------------------------------------------------------------------------------
@triton.jit(do_not_specialize=["seed", "offset"])
def _latent_fwd_kernel(
    mu_ptr, lv_ptr, z_ptr, kl_ptr, lq_ptr, lp_ptr,
    n_rows, dim, n_samples, seed, offset,
    stride_mu_r, stride_mu_c, stride_lv_r, stride_lv_c,
    ROWS: tl.constexpr, BLOCK_D: tl.constexpr,
    WANT_Z: tl.constexpr, WANT_KL: tl.constexpr, WANT_LP: tl.constexpr,
    ACC_FP64: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)
    sample = pid % n_samples
    tile = pid // n_samples
    rows = tile * ROWS + tl.arange(0, ROWS).to(tl.int64)
    row_ok = rows < n_rows
    # flat position of (sample, row, 0) in the (n_samples, N, D) output
    out_row = (sample * n_rows + rows) * dim

    zero_rows = _to_acc(tl.zeros([ROWS], dtype=tl.float32), ACC_FP64)
    kl_acc = zero_rows
    lq_acc = zero_rows
    lp_acc = zero_rows
    for c0 in range(0, dim, BLOCK_D):
        cols = c0 + tl.arange(0, BLOCK_D).to(tl.int64)
        mask = row_ok[:, None] & (cols < dim)[None, :]
        mu = tl.load(mu_ptr + rows[:, None] * stride_mu_r + cols[None, :] * stride_mu_c,
                     mask=mask, other=0.0)
        lv = tl.load(lv_ptr + rows[:, None] * stride_lv_r + cols[None, :] * stride_lv_c,
                     mask=mask, other=0.0)
        mu = _to_acc(mu, ACC_FP64)
        lv = _to_acc(lv, ACC_FP64)
        sigma = tl.exp(0.5 * lv)
        if WANT_KL:
            kl_acc += tl.sum(tl.where(mask, mu * mu + sigma * sigma - 1.0 - lv, 0.0), axis=1)
        if WANT_Z or WANT_LP:
            flat = out_row[:, None] + cols[None, :]
            eps = _to_acc(tl.randn(seed, offset + flat), ACC_FP64)
            z = mu + sigma * eps
            if WANT_Z:
                tl.store(z_ptr + flat, z.to(z_ptr.dtype.element_ty), mask=mask)
            if WANT_LP:
                lq_acc += tl.sum(tl.where(mask, eps * eps + lv, 0.0), axis=1)
                lp_acc += tl.sum(tl.where(mask, z * z, 0.0), axis=1)

    if WANT_KL:
        tl.store(kl_ptr + rows, 0.5 * kl_acc, mask=row_ok & ((rows * 0 + sample) == 0))
    if WANT_LP:
        const = (zero_rows + dim) * _LOG_2PI
        tl.store(lq_ptr + sample * n_rows + rows, -0.5 * (lq_acc + const), mask=row_ok)
        tl.store(lp_ptr + sample * n_rows + rows, -0.5 * (lp_acc + const), mask=row_ok)


# --------------------------------------------------------------------------------------
# Backward kernel
# --------------------------------------------------------------------------------------
@triton.jit(do_not_specialize=["seed", "offset"])
def _latent_bwd_kernel(
    mu_ptr, lv_ptr, gz_ptr, gkl_ptr, gq_ptr, gp_ptr, gmu_ptr, glv_ptr,
    n_rows, dim, n_samples, seed, offset,
    stride_mu_r, stride_mu_c, stride_lv_r, stride_lv_c,
    stride_gz_s, stride_gz_r, stride_gz_c, stride_gkl,
    stride_gq_s, stride_gq_r, stride_gp_s, stride_gp_r,
    ROWS: tl.constexpr, BLOCK_D: tl.constexpr,
    HAS_GZ: tl.constexpr, HAS_GKL: tl.constexpr, HAS_GQ: tl.constexpr, HAS_GP: tl.constexpr,
    ACC_FP64: tl.constexpr,
):
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS).to(tl.int64)
    cols = tl.program_id(1).to(tl.int64) * BLOCK_D + tl.arange(0, BLOCK_D).to(tl.int64)
    row_ok = rows < n_rows
    mask = row_ok[:, None] & (cols < dim)[None, :]
    mu = tl.load(mu_ptr + rows[:, None] * stride_mu_r + cols[None, :] * stride_mu_c,
                 mask=mask, other=0.0)
    lv = tl.load(lv_ptr + rows[:, None] * stride_lv_r + cols[None, :] * stride_lv_c,
                 mask=mask, other=0.0)
    mu = _to_acc(mu, ACC_FP64)
    lv = _to_acc(lv, ACC_FP64)
    sigma = tl.exp(0.5 * lv)

    zero_tile = _to_acc(tl.zeros([ROWS, BLOCK_D], dtype=tl.float32), ACC_FP64)
    g_mu = zero_tile
    g_eps = zero_tile
    if HAS_GZ or HAS_GP:
        # int64 counters and pointers advanced once per sample: no 32-bit products
        flat = rows[:, None] * dim + cols[None, :]
        plane = (rows[:, None] * 0 + n_rows) * dim
        gz_ptrs = gz_ptr + rows[:, None] * stride_gz_r + cols[None, :] * stride_gz_c
        gp_ptrs = gp_ptr + rows * stride_gp_r
        for _ in range(0, n_samples):
            eps = _to_acc(tl.randn(seed, offset + flat), ACC_FP64)
            g = zero_tile
            if HAS_GZ:
                g = _to_acc(tl.load(gz_ptrs, mask=mask, other=0.0), ACC_FP64)
            if HAS_GP:
                gp = _to_acc(tl.load(gp_ptrs, mask=row_ok, other=0.0), ACC_FP64)
                g -= (mu + sigma * eps) * gp[:, None]
            g_mu += g
            g_eps += g * eps
            flat += plane
            gz_ptrs += stride_gz_s
            gp_ptrs += stride_gp_s
    g_lv = 0.5 * sigma * g_eps
    if HAS_GQ:
        gq_sum = _to_acc(tl.zeros([ROWS], dtype=tl.float32), ACC_FP64)
        gq_ptrs = gq_ptr + rows * stride_gq_r
        for _ in range(0, n_samples):
            gq_sum += _to_acc(tl.load(gq_ptrs, mask=row_ok, other=0.0), ACC_FP64)
            gq_ptrs += stride_gq_s
        g_lv -= 0.5 * gq_sum[:, None]
    if HAS_GKL:
        gkl = _to_acc(tl.load(gkl_ptr + rows * stride_gkl, mask=row_ok, other=0.0), ACC_FP64)
        g_mu += gkl[:, None] * mu
        g_lv += gkl[:, None] * 0.5 * (sigma * sigma - 1.0)
    out = rows[:, None] * dim + cols[None, :]
    tl.store(gmu_ptr + out, g_mu.to(gmu_ptr.dtype.element_ty), mask=mask)
    tl.store(glv_ptr + out, g_lv.to(glv_ptr.dtype.element_ty), mask=mask)


# --------------------------------------------------------------------------------------
# Launch helpers
# --------------------------------------------------------------------------------------
INTERPRET = type(_latent_fwd_kernel).__name__ == "InterpretedFunction"

# Elements per program and the widest column chunk. The interpreter pays about 1 ms per
# program instance, so it gets few, large tiles.
TILE = 1 << 16 if INTERPRET else 1024
MAX_BLOCK_D = 1024
NUM_WARPS = 4


def _launch_shape(n_rows: int, dim: int, tile: int | None, block_d: int | None):
    """(ROWS, BLOCK_D): powers of two with ROWS * BLOCK_D about ``tile`` elements."""
    block_d = block_d or min(triton.next_power_of_2(dim), MAX_BLOCK_D)
    rows = max(1, min((tile or TILE) // block_d, triton.next_power_of_2(n_rows)))
    return triton.next_power_of_2(rows), block_d


def _seed_arg(seed: int) -> int:
    """The folded 63-bit seed: Triton's Philox takes its low and high words as the key."""
    return reference.fold_seed(seed)


def latent_forward(mu2: Tensor, lv2: Tensor, n_samples: int, seed: int, want_z: bool,
                   want_kl: bool, want_lp: bool, *, offset: int = 0, tile: int | None = None,
                   block_d: int | None = None):
    """Launch the forward kernel on (N, D) views. Returns (z (S, N, D), kl (N,), log q (S, N),
    log p (S, N)), with None for outputs not wanted."""
    n, d = mu2.shape
    dev = mu2.device
    acc = reference.acc_dtype(mu2.dtype)
    z = torch.empty((n_samples, n, d), dtype=mu2.dtype, device=dev) if want_z else None
    kl = torch.empty(n, dtype=acc, device=dev) if want_kl else None
    lq = torch.empty((n_samples, n), dtype=acc, device=dev) if want_lp else None
    lp = torch.empty((n_samples, n), dtype=acc, device=dev) if want_lp else None
    rows, bd = _launch_shape(n, d, tile, block_d)
    n_prog_samples = n_samples if (want_z or want_lp) else 1
    grid = (triton.cdiv(n, rows) * n_prog_samples,)
    dummy = mu2
    _latent_fwd_kernel[grid](
        mu2, lv2, z if want_z else dummy, kl if want_kl else dummy,
        lq if want_lp else dummy, lp if want_lp else dummy,
        n, d, n_prog_samples, _seed_arg(seed), int(offset),
        mu2.stride(0), mu2.stride(1), lv2.stride(0), lv2.stride(1),
        ROWS=rows, BLOCK_D=bd, WANT_Z=want_z, WANT_KL=want_kl, WANT_LP=want_lp,
        ACC_FP64=acc == torch.float64, num_warps=NUM_WARPS)
    return z, kl, lq, lp


def latent_backward(mu2: Tensor, lv2: Tensor, n_samples: int, seed: int, g_z: Tensor | None,
                    g_kl: Tensor | None, g_q: Tensor | None, g_p: Tensor | None, *,
                    offset: int = 0, tile: int | None = None, block_d: int | None = None):
    """Launch the backward kernel. Grads are (S, N, D), (N,), (S, N), (S, N) or None.
    Returns contiguous (grad mu, grad logvar) of shape (N, D) in the input dtype."""
    n, d = mu2.shape
    g_mu = torch.empty((n, d), dtype=mu2.dtype, device=mu2.device)
    g_lv = torch.empty((n, d), dtype=lv2.dtype, device=lv2.device)
    rows, bd = _launch_shape(n, d, tile, block_d)
    grid = (triton.cdiv(n, rows), triton.cdiv(d, bd))
    dummy = mu2
    sz = g_z.stride() if g_z is not None else (0, 0, 0)
    skl = g_kl.stride(0) if g_kl is not None else 0
    sq = g_q.stride() if g_q is not None else (0, 0)
    sp = g_p.stride() if g_p is not None else (0, 0)
    _latent_bwd_kernel[grid](
        mu2, lv2, g_z if g_z is not None else dummy, g_kl if g_kl is not None else dummy,
        g_q if g_q is not None else dummy, g_p if g_p is not None else dummy, g_mu, g_lv,
        n, d, n_samples, _seed_arg(seed), int(offset),
        mu2.stride(0), mu2.stride(1), lv2.stride(0), lv2.stride(1),
        sz[0], sz[1], sz[2], skl, sq[0], sq[1], sp[0], sp[1],
        ROWS=rows, BLOCK_D=bd, HAS_GZ=g_z is not None, HAS_GKL=g_kl is not None,
        HAS_GQ=g_q is not None, HAS_GP=g_p is not None,
        ACC_FP64=reference.acc_dtype(mu2.dtype) == torch.float64, num_warps=NUM_WARPS)
    return g_mu, g_lv


# --------------------------------------------------------------------------------------
# Autograd wrapper and ops
# --------------------------------------------------------------------------------------
class LatentTriton(torch.autograd.Function):
    """(z, kl, log q, log p) for mu, logvar of shape (..., D); outputs chosen by flags.

    Forward returns, in order, those of z (S, N, D), kl (N,), log q (S, N), log p (S, N)
    that are wanted. Nothing but mu and logvar is saved: backward regenerates eps.
    """

    @staticmethod
    def forward(ctx, mu, logvar, n_samples, seed, want_z, want_kl, want_lp, offset=0,
                tile=None, block_d=None):
        ctx.set_materialize_grads(False)
        mu2, lv2 = reference.rows_view(mu), reference.rows_view(logvar)
        ctx.save_for_backward(mu, logvar)
        ctx.meta = (n_samples, seed, offset, tile, block_d, want_z, want_kl, want_lp)
        z, kl, lq, lp = latent_forward(mu2, lv2, n_samples, seed, want_z, want_kl, want_lp,
                                       offset=offset, tile=tile, block_d=block_d)
        return tuple(t for t in (z, kl, lq, lp) if t is not None)

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads):
        mu, logvar = ctx.saved_tensors
        n_samples, seed, offset, tile, block_d, want_z, want_kl, want_lp = ctx.meta
        mu2, lv2 = reference.rows_view(mu), reference.rows_view(logvar)
        n, d = mu2.shape
        grads = list(grads)
        g_z = grads.pop(0) if want_z else None
        g_kl = grads.pop(0) if want_kl else None
        g_q, g_p = (grads[0], grads[1]) if want_lp else (None, None)
        if g_z is not None:
            g_z = g_z.reshape(n_samples, n, d)
        g_mu, g_lv = latent_backward(mu2, lv2, n_samples, seed, g_z, g_kl, g_q, g_p,
                                     offset=offset, tile=tile, block_d=block_d)
        return (g_mu.view(mu.shape), g_lv.view(logvar.shape),
                None, None, None, None, None, None, None, None)


def _lead(mu: Tensor, n_samples: int) -> tuple[int, ...]:
    return (n_samples, *mu.shape[:-1]) if n_samples > 1 else tuple(mu.shape[:-1])


def reparameterize(mu: Tensor, logvar: Tensor, n_samples: int = 1, seed: int = 0,
                   with_log_probs: bool = False, *, offset: int = 0, tile: int | None = None,
                   block_d: int | None = None):
    """``kernels.reparameterize`` on the triton backend (inputs already validated)."""
    out = LatentTriton.apply(mu, logvar, n_samples, seed, True, False, with_log_probs, offset,
                             tile, block_d)
    z = out[0].view(reference.sample_shape(mu, n_samples))
    if not with_log_probs:
        return z
    lead = _lead(mu, n_samples)
    return z, out[1].view(lead), out[2].view(lead)


def gaussian_kl(mu: Tensor, logvar: Tensor, *, tile: int | None = None,
                block_d: int | None = None) -> Tensor:
    """``kernels.gaussian_kl`` on the triton backend: one pass, no noise."""
    (kl,) = LatentTriton.apply(mu, logvar, 1, 0, False, True, False, 0, tile, block_d)
    return kl.view(mu.shape[:-1])


def reparameterize_kl(mu: Tensor, logvar: Tensor, n_samples: int = 1, seed: int = 0, *,
                      offset: int = 0, tile: int | None = None,
                      block_d: int | None = None) -> tuple[Tensor, Tensor]:
    """``kernels.reparameterize_kl`` on the triton backend: z and kl from one read."""
    z, kl = LatentTriton.apply(mu, logvar, n_samples, seed, True, True, False, offset, tile,
                               block_d)
    return z.view(reference.sample_shape(mu, n_samples)), kl.view(mu.shape[:-1])

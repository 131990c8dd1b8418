"""Eager PyTorch reference for the Gaussian latent layer: the definition of correct.

Every other backend is tested against these functions. They are plain differentiable
PyTorch, so their gradients come from autograd.

Equations (Kingma & Welling 2014):
- reparameterization, eq. 10:      z = mu + exp(logvar / 2) * eps,  eps ~ N(0, I)
- KL to the prior, appendix B:     KL = 1/2 sum_j (mu_j^2 + exp(logvar_j) - 1 - logvar_j)
- log q(z|x) = -1/2 sum_j (eps_j^2 + logvar_j + log 2 pi)
- log p(z)   = -1/2 sum_j (z_j^2 + log 2 pi)

The noise is counter-based: eps at flat position ``i`` of the (n_samples, ..., D) sample
tensor is ``normal_from_counter(i, key(seed))``, a pure function of (seed, i), so

- every backend draws the same eps (the Triton kernels call ``tl.randn(seed, i)``, which
  this file reproduces: Philox-4x32-10 of Salmon et al. 2011, then Box-Muller exactly as in
  ``triton.language.random``);
- backward passes regenerate eps from the seed instead of storing it;
- block sizes, chunk sizes and thread counts never change eps.

Seeds are Python integers of any size and sign, folded to 63 bits (``fold_seed``); the
Philox key is the (low, high) pair of 32-bit words of the folded seed.
"""

from __future__ import annotations

import math
import numbers
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor

LOG_2PI = math.log(2.0 * math.pi)

# Philox-4x32 constants (Salmon, Moraes, Dror, Shaw 2011, "Parallel random numbers: as easy
# as 1, 2, 3"; the same values as Random123 and triton.language.random).
PHILOX_M0 = 0xD2511F53  # round multiplier applied to counter word 0
PHILOX_M1 = 0xCD9E8D57  # round multiplier applied to counter word 2
PHILOX_W0 = 0x9E3779B9  # key bump, word 0 (golden ratio)
PHILOX_W1 = 0xBB67AE85  # key bump, word 1 (sqrt(3) - 1)
PHILOX_ROUNDS = 10
MASK32 = 0xFFFF_FFFF
SEED_BITS = 63

# float32 constants of Triton's uint_to_uniform_float and pair_uniform_to_normal.
UNIFORM_SCALE = 4.6566127342e-10  # largest s with (2**31 - 1) * s < 1 in float32
UNIFORM_FLOOR = 1.0e-7            # u1 is clamped here before the logarithm
TWO_PI = 6.283185307179586

# Elements per chunk when the eager reference generates eps (bounds its int64 temporaries).
_CHUNK = {"cpu": 1 << 18, "cuda": 1 << 24}


def fold_seed(seed: int) -> int:
    """Fold any Python integer to the 63-bit seed used as the Philox key (``seed mod 2**63``)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__} {seed!r}")
    return int(seed) % (1 << SEED_BITS)


def philox_key(seed: int) -> tuple[int, int]:
    """The Philox key (k0, k1): low and high 32-bit words of ``fold_seed(seed)``."""
    s = fold_seed(seed)
    return s & MASK32, s >> 32


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: float64 for float64 inputs, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _mulhilo32(multiplier: int, x):
    """(high, low) 32-bit words of ``multiplier * x`` for 32-bit ``multiplier`` and ``x``.

    The multiplier is split into 16-bit halves so that every int64 product stays below
    2**48: no signed overflow anywhere, hence the same bits in eager ATen kernels, in
    inductor's C++ and on the GPU. ``x`` may be an int64 tensor or a Python int.
    """
    m_hi, m_lo = multiplier >> 16, multiplier & 0xFFFF
    p_hi = x * m_hi
    p_lo = x * m_lo
    high = (p_hi + (p_lo >> 16)) >> 16
    low = (((p_hi & 0xFFFF) << 16) + p_lo) & MASK32
    return high, low


def philox4x32(c0, c1, k0, k1, c2=0, c3=0, rounds: int = PHILOX_ROUNDS):
    """Philox-4x32 (Salmon et al. 2011, sec. 4.2) of counter (c0, c1, c2, c3) under key (k0, k1).

    Words are 32-bit values held in int64 tensors or Python ints. One round:
    (c0, c1, c2, c3) <- (hi(M1*c2) ^ c1 ^ k0, lo(M1*c2), hi(M0*c0) ^ c3 ^ k1, lo(M0*c0)),
    then the key is bumped by (W0, W1). Returns all four output words.
    """
    for _ in range(rounds):
        hi1, lo1 = _mulhilo32(PHILOX_M1, c2)
        hi0, lo0 = _mulhilo32(PHILOX_M0, c0)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + PHILOX_W0) & MASK32
        k1 = (k1 + PHILOX_W1) & MASK32
    return c0, c1, c2, c3


def uniform_from_bits(bits: Tensor) -> Tensor:
    """Map 32-bit words (int64 tensor) to float32 in [0, 1) as ``tl.rand`` does.

    The word is read as a signed int32 x; ``~x`` replaces negative x, and the result
    (in [0, 2**31)) is scaled by ``UNIFORM_SCALE`` in float32.
    """
    folded = torch.where(bits > 0x7FFF_FFFF, MASK32 - bits, bits)
    return folded.to(torch.float32) * UNIFORM_SCALE


def box_muller(u1: Tensor, u2: Tensor) -> Tensor:
    """Box & Muller (1958): sqrt(-2 log u1) * cos(2 pi u2), float32, with u1 >= 1e-7."""
    u1 = torch.clamp_min(u1, UNIFORM_FLOOR)
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(TWO_PI * u2)


def normal_from_counter(counter: Tensor, k0, k1) -> Tensor:
    """eps = ``tl.randn(seed, counter)``: one N(0, 1) float32 draw per int64 counter.

    Philox counter = (counter low word, counter high word, 0, 0); the first two output words
    become two uniforms, and Box-Muller turns them into one normal. ``k0``/``k1`` are the key
    words (Python ints, or 0-d int64 tensors inside a compiled graph).
    """
    r0, r1, _, _ = philox4x32(counter & MASK32, counter >> 32, k0, k1)
    return box_muller(uniform_from_bits(r0), uniform_from_bits(r1))


def standard_normal(seed: int, shape: tuple[int, ...], device: torch.device | str = "cpu",
                    dtype: torch.dtype = torch.float32, offset: int = 0) -> Tensor:
    """eps ~ N(0, I) of ``shape``; element at row-major flat position i uses counter offset + i.

    A pure function of (seed, offset + i). Generated in chunks to bound memory; the chunk
    size does not change the values. Inside ``draws_ahead`` it may come from that block's
    store: the same values, drawn earlier.
    """
    for block in reversed(_open_blocks()):  # the innermost block holding the seed serves it
        if seed in block:
            return block.take(seed, tuple(shape), torch.device(device), dtype, offset)
    return _standard_normal(seed, shape, device, dtype, offset)


class DrawsAhead:
    """The eps of the draws of coming steps, drawn before the steps ask for them: the
    trainer's lookahead (``vaebench.lookahead``).

    ``seeds``: the draws' seeds, in the order the steps will ask for them. ``draw(shape,
    device, dtype, offset)`` draws every seed's eps of that kind now, in any thread. Opened
    by ``draws_ahead``, the block serves the ``standard_normal`` calls for its seeds: a call
    gets the eps kept for its seed and arguments; a call for which none was kept draws it and,
    with the same arguments, the eps of every later seed (kept for their calls); a call
    repeated after its eps was taken draws it again. Every value comes from the very call
    that would have made it outside the block, so eps is the same to the bit
    (``tests/kernels/test_rng.py``); only the time of the draw moves. ``asked`` lists the
    (shape, device, dtype, offset) asked of the block, in order: what the next block's draws
    will be.
    """

    def __init__(self, seeds: Sequence[int]):
        self.seeds = list(seeds)
        self._index = {s: i for i, s in reversed(list(enumerate(self.seeds)))}  # first place
        self.asked: list[tuple] = []
        self.drawn: dict[tuple, Tensor] = {}  # drawn ahead, not yet taken
        self.done: set[tuple] = set()  # every key drawn ahead, taken or not

    def __contains__(self, seed: int) -> bool:
        return seed in self._index

    def draw(self, shape: tuple[int, ...], device: torch.device, dtype: torch.dtype,
             offset: int, first: int = 0) -> None:
        """Draw the eps of ``seeds[first:]`` for these arguments (those not drawn yet)."""
        rest = (tuple(shape), torch.device(device), dtype, offset)
        seeds = [s for s in dict.fromkeys(self.seeds[first:]) if (s, *rest) not in self.done]
        for s, eps in zip(seeds, _standard_normals(seeds, *rest), strict=True):
            self.drawn[(s, *rest)] = eps
            self.done.add((s, *rest))

    def take(self, seed, shape, device, dtype, offset) -> Tensor:
        rest = (shape, device, dtype, offset)
        if rest not in self.asked:
            self.asked.append(rest)
        key = (seed, *rest)
        if key in self.drawn:
            return self.drawn.pop(key)
        if key in self.done:  # taken already: drawn again, as outside the block
            return _standard_normal(seed, *rest)
        self.draw(*rest, first=self._index[seed])  # this draw and the later ones
        return self.drawn.pop(key)


_local = threading.local()  # each thread's open draws_ahead blocks, innermost last


def _open_blocks() -> list[DrawsAhead]:
    blocks = getattr(_local, "blocks", None)
    if blocks is None:
        blocks = _local.blocks = []
    return blocks


@contextmanager
def draws_ahead(block: DrawsAhead) -> Iterator[DrawsAhead]:
    """Open ``block`` in this thread: its eps serve this thread's ``standard_normal`` calls
    for its seeds until the block closes (``DrawsAhead``). A draw between two training steps
    finds the CPU's caches full of the step's weights; a block drawn in a row moves that cost
    off the steps (``vaebench.lookahead``)."""
    blocks = _open_blocks()
    blocks.append(block)
    try:
        yield block
    finally:
        blocks.remove(block)


def _standard_normal(seed: int, shape: tuple[int, ...], device: torch.device | str,
                     dtype: torch.dtype, offset: int) -> Tensor:
    """``standard_normal``, always drawn now."""
    k0, k1 = philox_key(seed)
    device = torch.device(device)
    numel = math.prod(shape)
    out = torch.empty(numel, dtype=torch.float32, device=device)
    chunk = _CHUNK.get(device.type, 1 << 20)
    for start in range(0, numel, chunk):
        stop = min(numel, start + chunk)
        if device.type == "cpu":  # the same uniforms from numba's compiled loop
            from kernels.philox_cpu import philox_uniforms

            out[start:stop] = box_muller(*philox_uniforms(offset + start, stop - start, k0, k1))
            continue
        counter = torch.arange(offset + start, offset + stop, dtype=torch.int64, device=device)
        out[start:stop] = normal_from_counter(counter, k0, k1)
    return out.view(shape).to(dtype)


def _standard_normals(seeds: Sequence[int], shape: tuple[int, ...], device: torch.device,
                      dtype: torch.dtype, offset: int) -> list[Tensor]:
    """``_standard_normal`` of each seed. On the CPU, when one chunk holds a draw, the seeds'
    uniforms come from one compiled call and go through Box-Muller together: torch's log, cos
    and sqrt give an element the same bits wherever it sits in the tensor
    (``tests/kernels/test_rng.py``), so each row is the seed's own draw."""
    numel = math.prod(shape)
    if device.type != "cpu" or numel > _CHUNK["cpu"] or len(seeds) < 2:
        return [_standard_normal(s, shape, device, dtype, offset) for s in seeds]
    from kernels.philox_cpu import philox_uniforms

    keys = list(zip(*(philox_key(s) for s in seeds), strict=True))
    eps = box_muller(*philox_uniforms(offset, numel, *keys)).to(dtype)
    return [row.view(shape) for row in eps]


def sample_shape(mu: Tensor, n_samples: int) -> tuple[int, ...]:
    """Shape of z: (n_samples, ..., D), or (..., D) when n_samples == 1."""
    return (n_samples, *mu.shape) if n_samples > 1 else tuple(mu.shape)


def reparameterize_with_eps(mu: Tensor, logvar: Tensor, eps: Tensor) -> Tensor:
    """z = mu + exp(logvar / 2) * eps (K&W 2014, eq. 10), broadcasting over sample dims."""
    return mu + torch.exp(0.5 * logvar) * eps


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) per row (K&W 2014, appendix B).

    Accumulates in float32 (float64 for float64 inputs).
    """
    acc = acc_dtype(mu.dtype)
    m = mu.to(acc)
    lv = logvar.to(acc)
    return 0.5 * (m * m + torch.exp(lv) - 1.0 - lv).sum(-1)


def log_q_from_eps(logvar: Tensor, eps: Tensor) -> Tensor:
    """log N(z; mu, diag exp(logvar)) per row, written through eps = (z - mu) / sigma."""
    return -0.5 * (eps * eps + logvar + LOG_2PI).sum(-1)


def log_q_at(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mu, diag exp(logvar)) per row, differentiated in mu and logvar at fixed z.

    z is detached: the gradient is the score grad_phi log q_phi(z|x) of the score-function
    (REINFORCE) estimator, grad E_q f(z) = E_q[f(z) grad_phi log q_phi(z|x)] (Williams 1992;
    Mohamed et al. 2020, sec. 4), with d/d mu = (z - mu) / sigma^2 and
    d/d logvar = ((z - mu)^2 / sigma^2 - 1) / 2 per coordinate. ``log_q_from_eps`` is the same
    value written through eps, whose d/d mu is 0 and d/d logvar -1/2 (eps held fixed): right
    for the pathwise (reparameterization) gradient, wrong for REINFORCE.
    z of shape (..., D) or (S, ..., D) broadcasts against mu, logvar of shape (..., D).
    """
    acc = acc_dtype(mu.dtype)
    diff = z.detach().to(acc) - mu.to(acc)
    lv = logvar.to(acc)
    return -0.5 * (diff * diff * torch.exp(-lv) + lv + LOG_2PI).sum(-1)


def log_p_standard(z: Tensor) -> Tensor:
    """log N(z; 0, I) per row."""
    return -0.5 * (z * z + LOG_2PI).sum(-1)


def reparameterize(mu: Tensor, logvar: Tensor, n_samples: int = 1, seed: int = 0,
                   with_log_probs: bool = False, *, offset: int = 0):
    """z (and optionally log q(z|x), log p(z)) with eps from ``standard_normal(seed, ...)``.

    z has the input dtype; log-probs are float32 (float64 for float64 inputs) and are
    computed from the unrounded z.
    """
    acc = acc_dtype(mu.dtype)
    eps = standard_normal(seed, (n_samples, *mu.shape), mu.device, acc, offset)
    if n_samples == 1:  # the sample dim goes before z is formed, so autograd never sees it
        eps = eps[0]
    m, lv = mu.to(acc), logvar.to(acc)
    z_acc = reparameterize_with_eps(m, lv, eps)
    z = z_acc.to(mu.dtype)
    if not with_log_probs:
        return z
    return z, log_q_from_eps(lv, eps), log_p_standard(z_acc)


def reparameterize_kl(mu: Tensor, logvar: Tensor, n_samples: int = 1, seed: int = 0, *,
                      offset: int = 0) -> tuple[Tensor, Tensor]:
    """(z, kl): ``reparameterize`` and ``gaussian_kl`` of the same inputs."""
    return reparameterize(mu, logvar, n_samples, seed, offset=offset), gaussian_kl(mu, logvar)


def rows_view(t: Tensor) -> Tensor:
    """``t`` of shape (..., D) as (N, D) with N the product of the leading dims.

    A view when the strides allow it (so non-contiguous inputs are not copied), else a copy.
    """
    d = t.shape[-1]
    n = t.numel() // d if d else math.prod(t.shape[:-1])
    return t.reshape(n, d)

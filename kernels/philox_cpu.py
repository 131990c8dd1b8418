"""Philox-4x32-10 uniforms on the CPU, compiled by numba: the eager path's noise source.

``reference.standard_normal`` turns counter ``i`` into two uniforms (Philox words 0 and 1,
read as ``tl.rand`` reads them) and one normal by Box-Muller. The Box-Muller step stays in
torch (its log and cos are torch's, so eps matches the torch and Triton paths to the bit);
this file computes the uniforms, which cost torch or numpy a dozen array operations per round.

One loop per counter, the whole state in registers:

- a product of two 32-bit words is exact in uint64 (no product exceeds 2**64), so the high and
  low words of a round's products take one multiply, one shift and one mask;
- the words are then folded and scaled exactly as ``reference.uniform_from_bits`` does: an
  integer below 2**31 converted to float32 (round to nearest) times the float32 scale, a
  product of two float32 values rounded once, as torch rounds it.

Bit-identical to ``reference.uniform_from_bits(reference.philox4x32(...))`` over the whole
64-bit counter range (``tests/kernels/test_rng.py``). Measured when it replaced the numpy
uint64 version (Intel Xeon, 2 cores, 2026-12-02): a whole 128 x 20 draw of eps (the training
step's) took 39 us against 208 us, and 5000 x 20 (an importance-sampled point) 0.29 ms
against 7.0 ms. Compiled once per machine: numba caches the machine code beside this file
(``__pycache__``, ignored by DVC and git).
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from torch import Tensor

from kernels.reference import (
    MASK32,
    PHILOX_M0,
    PHILOX_M1,
    PHILOX_ROUNDS,
    PHILOX_W0,
    PHILOX_W1,
    UNIFORM_SCALE,
)

_M0, _M1 = np.uint64(PHILOX_M0), np.uint64(PHILOX_M1)
_W0, _W1 = np.uint64(PHILOX_W0), np.uint64(PHILOX_W1)
_LOW, _SHIFT, _INT32_MAX = np.uint64(MASK32), np.uint64(32), np.uint64(0x7FFF_FFFF)
_SCALE = np.float32(UNIFORM_SCALE)


@numba.njit(cache=True, nogil=True, inline="always")
def philox_rounds(c0, c1, c2, c3, k0, k1):  # pragma: no cover - compiled, tested below
    """The four uint64-held 32-bit output words of Philox-4x32-10 (``reference.philox4x32``)
    for counter (c0, c1, c2, c3) under key (k0, k1)."""
    a0, a1 = k0, k1
    for _ in range(PHILOX_ROUNDS):
        p1 = _M1 * c2  # M1 multiplies word 2, M0 word 0 (reference.philox4x32)
        p0 = _M0 * c0
        c0, c1, c2, c3 = (p1 >> _SHIFT) ^ c1 ^ a0, p1 & _LOW, (p0 >> _SHIFT) ^ c3 ^ a1, p0 & _LOW
        a0 = (a0 + _W0) & _LOW
        a1 = (a1 + _W1) & _LOW
    return c0, c1, c2, c3


@numba.njit(cache=True, nogil=True)
def _uniforms_kernel(start, k0, k1, u0, u1):  # pragma: no cover - compiled, tested below
    """u0[i], u1[i] = the uniforms of Philox words 0 and 1 for counter (start + i, 0, 0).
    ``u0`` and ``u1`` may be 2-d: a row per key, ``k0`` and ``k1`` then holding the keys."""
    zero = np.uint64(0)
    for row in range(u0.shape[0]):
        a0, a1 = np.uint64(k0[row]), np.uint64(k1[row])
        for i in range(u0.shape[1]):
            counter = np.uint64(start) + np.uint64(i)
            c0, c1, _, _ = philox_rounds(counter & _LOW, counter >> _SHIFT, zero, zero, a0, a1)
            # the word as a signed int32 x, with ~x for negative x: 2**32 - 1 - w for w >= 2**31
            f0 = c0 if c0 <= _INT32_MAX else _LOW - c0
            f1 = c1 if c1 <= _INT32_MAX else _LOW - c1
            u0[row, i] = np.float32(f0) * _SCALE
            u1[row, i] = np.float32(f1) * _SCALE


def philox_uniforms(offset: int, n: int, k0, k1) -> tuple[Tensor, Tensor]:
    """Two float32 tensors of ``n`` uniforms in [0, 1): those of Philox words 0 and 1 for the
    counters offset .. offset + n - 1 under key (k0, k1). Counters must stay below 2**64.

    ``k0`` and ``k1`` may be sequences of keys: the tensors then have a row per key, drawn in
    one call (the trainer's lookahead draws a block of steps' eps so).
    """
    if offset < 0 or offset + n > 1 << 64:
        raise ValueError(f"Philox counters {offset}..{offset + n - 1} are outside 0..2**64 - 1")
    rows = np.atleast_1d(np.asarray(k0, np.uint64)), np.atleast_1d(np.asarray(k1, np.uint64))
    u0 = np.empty((len(rows[0]), n), np.float32)
    u1 = np.empty((len(rows[0]), n), np.float32)
    _uniforms_kernel(np.uint64(offset), *rows, u0, u1)
    if np.ndim(k0) == 0:
        u0, u1 = u0[0], u1[0]
    return torch.from_numpy(u0), torch.from_numpy(u1)

"""Exact Bernoulli draws from raw random bytes, compiled by numba: the training step's
dynamic binarization (``preprocess.philox_bernoulli_grey``) and the test set's fixed one
(``preprocess.bernoulli_grey``, levels = 256).

Given raw units r (bytes, or 32-bit words for more than 257 grey levels) and grey levels x in
0..n (n = levels - 1), the draw is [r % n < x], where a unit r >= limit = n * floor(R / n)
(R = 256 or 2**32) is replaced by a fresh unit, so that r % n is uniform on 0..n-1 and
P(1) = x / n exactly. For 8-bit data (n = 255) the replaced units are the bytes 255, one in
256. The compare makes one pass, written straight to float32 (a replaced unit is fixed
afterwards); for n = 255 the search for bytes 255 goes a 64-bit word at a time: a word holds
one iff its complement has a zero byte, the exact test ``(v - 0x01..01) & ~v & 0x80..80`` on
v = ~word (Anderson's "Bit Twiddling Hacks", "Determine if a word has a zero byte"). One word
in 32 holds one.

The units come from numpy's PCG64 (the fixed binarization: the caller draws the fresh bytes
and fixes those positions, ``preprocess._bernoulli_255``) or from Philox-4x32-10 keyed by the
step's seed (the dynamic one: ``philox_words``, and ``fix_philox_redraws`` for the fresh
units), a pure function of (seed, pixel). ``benchmarks.data_path`` times the whole
binarization against the one from numpy's bytes (``reports/benchmarks/data_path-<vendor>.md``).
Compiled once per machine: numba caches the machine code beside this file (``__pycache__``,
ignored by DVC and git).
"""

from __future__ import annotations

import numba
import numpy as np

from kernels.philox_cpu import philox_rounds

_ONES = np.uint64(0x0101_0101_0101_0101)
_HIGHS = np.uint64(0x8080_8080_8080_8080)
_LOW, _SHIFT = np.uint64(0xFFFF_FFFF), np.uint64(32)
REDRAW_STREAM = 1  # Philox counter word 2 of the fresh units; the first units have 0


@numba.njit(cache=True, nogil=True)
def compare_bytes(words, grey, out, redraw):  # pragma: no cover - compiled, tested
    """out[i] = float32(r[i] < grey[i]) for i < grey.size, r being ``words`` (uint64) read as
    little-endian bytes (8 * words.size >= grey.size); the positions i < grey.size with
    r[i] == 255 go to redraw[:count], ascending. Returns count."""
    raw = words.view(np.uint8)
    n = grey.size
    for i in range(n):
        out[i] = np.float32(raw[i] < grey[i])
    count = 0
    for w in range(words.size):
        v = ~words[w]
        if (v - _ONES) & ~v & _HIGHS:  # some byte of the word is 255
            for i in range(8 * w, min(8 * w + 8, n)):
                if raw[i] == 255:
                    redraw[count] = i
                    count += 1
    return count


@numba.njit(cache=True, nogil=True)
def philox_words(k0, k1, out):  # pragma: no cover - compiled, tested
    """out[4 i + q] = word q of Philox-4x32-10 for counter (i, 0, 0) (low and high words of
    the 64-bit i, then 0, 0) under key (k0, k1); ``out`` is uint32, its size a multiple of 4."""
    zero, a0, a1 = np.uint64(0), np.uint64(k0), np.uint64(k1)
    for i in range(out.size // 4):
        c = np.uint64(i)
        w0, w1, w2, w3 = philox_rounds(c & _LOW, c >> _SHIFT, zero, zero, a0, a1)
        out[4 * i] = w0
        out[4 * i + 1] = w1
        out[4 * i + 2] = w2
        out[4 * i + 3] = w3


@numba.njit(cache=True, nogil=True)
def compare_units(units, grey, n, limit, out, redraw):  # pragma: no cover - compiled, tested
    """out[i] = float32(units[i] % n < grey[i]) for i < grey.size; the positions with
    units[i] >= limit go to redraw[:count], ascending (their out is fixed afterwards).
    Returns count."""
    count = 0
    for i in range(grey.size):
        r = units[i]
        if r >= limit:
            redraw[count] = i
            count += 1
        out[i] = np.float32(r % n < grey[i])
    return count


@numba.njit(cache=True, nogil=True)
def fix_philox_redraws(at, grey, n, limit, k0, k1, scratch, out):  # pragma: no cover
    """For each position j in ``at``: r = the first unit below ``limit`` among the units of
    Philox counters (j, REDRAW_STREAM, t), t = 0, 1, ..., read in order (16 little-endian bytes
    a counter; a unit is one element of ``scratch``: 16 uint8 or 4 uint32);
    out[j] = float32(r % n < grey[j])."""
    a0, a1 = np.uint64(k0), np.uint64(k1)
    words = scratch.view(np.uint32)
    for j in at:
        c = np.uint64(j)
        r, t = limit, 0
        while r >= limit:
            w0, w1, w2, w3 = philox_rounds(c & _LOW, c >> _SHIFT, np.uint64(REDRAW_STREAM),
                                           np.uint64(t), a0, a1)
            words[0], words[1], words[2], words[3] = w0, w1, w2, w3
            for u in scratch:
                if u < limit:
                    r = u
                    break
            t += 1
        out[j] = np.float32(r % n < grey[j])

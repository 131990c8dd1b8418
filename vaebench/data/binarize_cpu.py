"""Exact 8-bit Bernoulli draws from raw random bytes, compiled by numba: the training step's
dynamic binarization (``preprocess.bernoulli_grey`` for levels = 256).

Given raw bytes r (from numpy's PCG64) and grey levels x in 0..255, the draw is [r < x], except
that a byte r = 255 must be replaced by a fresh draw from U{0..254}, in order, so that r is
uniform on 0..254 and P(r < x) = x / 255 exactly. numpy needs four array passes for this
(``r == 255``, ``flatnonzero``, ``r < x``, the float32 cast); this loop makes two:

- the compare, written straight to float32 (a byte 255 gives 0 there; it is fixed afterwards);
- the search for bytes 255, a 64-bit word at a time: a word holds one iff its complement has a
  zero byte, the exact test ``(v - 0x01..01) & ~v & 0x80..80`` on v = ~word (Anderson's "Bit
  Twiddling Hacks", "Determine if a word has a zero byte"). One word in 32 holds one.

The caller draws the fresh bytes and fixes those positions (``preprocess._bernoulli_255``).
Compiled once per machine: numba caches the machine code beside this file (``__pycache__``,
ignored by DVC and git).
"""

from __future__ import annotations

import numba
import numpy as np

_ONES = np.uint64(0x0101_0101_0101_0101)
_HIGHS = np.uint64(0x8080_8080_8080_8080)


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

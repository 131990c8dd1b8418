"""``benchmarks/draw_streams.py`` times a four-normals-per-call stream only after checking it:
its graph's source matches a float64 Box-Muller of ``kernels.reference.philox4x32``'s four
words, and a planted slip (a word dropped, a sine turned cosine) stops the benchmark."""

from __future__ import annotations

import pytest
import torch

from benchmarks import draw_streams


def test_the_randn4x_graph_matches_its_float64_reference():
    assert draw_streams.check(seed=5, numel=1027, compile=False) < 1e-5


def test_the_randn4x_stream_has_normal_moments():
    key = draw_streams.compiled._key(2, 0, torch.device("cpu"))
    eps = draw_streams.eps4x(40_003, key).double()
    assert abs(eps.mean().item()) < 6 / 40_003 ** 0.5
    assert abs(eps.var().item() - 1) < 6 * (2 / 40_003) ** 0.5
    pairs = eps[: 40_000].view(-1, 4)  # the two outputs of one Box-Muller pair are uncorrelated
    assert abs(torch.corrcoef(pairs[:, :2].T)[0, 1].item()) < 6 / 10_000 ** 0.5


def test_a_planted_slip_stops_the_check(monkeypatch):
    words = draw_streams.compiled.philox_words

    def two_words_twice(c0, c1, k0, k1):
        w = words(c0, c1, k0, k1)
        return w[0], w[1], w[0], w[1]  # words 2 and 3 replaced by 0 and 1

    monkeypatch.setattr(draw_streams.compiled, "philox_words", two_words_twice)
    with pytest.raises(SystemExit, match="off the float64 reference"):
        draw_streams.check(seed=5, numel=1027, compile=False)

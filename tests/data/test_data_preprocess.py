"""Preprocessing: scaling, dynamic/fixed binarization, dequantization and its log correction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate
from scipy.stats import beta

from vaebench.data import binarize_cpu
from vaebench.data import preprocess as pp

Z_STAR = 5.0  # Bonferroni-safe bound for the few hundred z-scores below


def levels_grid(levels: int, repeats: int) -> torch.Tensor:
    """Every grey level, ``repeats`` times: shape (repeats, levels), uint8."""
    return torch.arange(levels, dtype=torch.uint8).repeat(repeats, 1)


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_to_unit_is_x_over_levels_minus_one(levels):
    x = np.arange(levels, dtype=np.uint8)
    expected = np.arange(levels, dtype=np.float64) / (levels - 1)
    got = pp.to_unit(x, levels)
    assert got.dtype == np.float32 and np.allclose(got, expected, rtol=0, atol=1e-7)
    assert got[0] == 0.0 and got[-1] == 1.0
    t = pp.to_unit(torch.from_numpy(x), levels)
    assert t.dtype == torch.float32 and np.array_equal(t.numpy(), got)


def test_bad_inputs_are_named():
    with pytest.raises(TypeError, match="x must hold integer grey levels, got dtype float32"):
        pp.to_unit(np.zeros(3, np.float32), 256)
    with pytest.raises(ValueError, match=r"grey levels 0\.\.20, outside 0\.\.16 \(levels=17\)"):
        pp.to_unit(np.array([0, 20]), 17)
    with pytest.raises(ValueError, match="levels=1 is invalid"):
        pp.dynamic_binarize(torch.zeros(3, dtype=torch.uint8), 1, seed=0)
    with pytest.raises(TypeError, match="x must be a torch tensor, got ndarray"):
        pp.dequantize(np.zeros(3, np.uint8), 256)


@pytest.mark.parametrize("levels", [17, 256])
def test_dynamic_binarization_mean_and_freshness(levels):
    n = 4000
    x = levels_grid(levels, n)
    b1 = pp.dynamic_binarize(x, levels, seed=0)
    b2 = pp.dynamic_binarize(x, levels, seed=1)  # the trainer's next step: a new seed
    assert b1.dtype == torch.float32 and set(torch.unique(b1).tolist()) <= {0.0, 1.0}
    p = np.arange(levels) / (levels - 1)
    for b in (b1, b2):
        mean = b.double().mean(0).numpy()
        se = np.sqrt(np.clip(p * (1 - p), 1e-12, None) / n)
        assert np.all(np.abs(mean - p) <= Z_STAR * se + 1e-12)  # exact at p = 0 and p = 1
    # a fresh draw each call: the two binarizations disagree where 0 < p < 1
    interior = (x > 0) & (x < levels - 1)
    disagree = (b1 != b2)[interior].double().mean().item()
    expected = float(np.mean(2 * p[1:-1] * (1 - p[1:-1])))
    assert abs(disagree - expected) < 0.02
    # a pure function of (x, seed)
    assert torch.equal(pp.dynamic_binarize(x, levels, seed=0), b1)


def test_fixed_binarization_is_fixed_and_device_independent():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (500, 784), dtype=np.uint8)
    a = pp.fixed_binarize(x, 256, seed=9)
    assert np.array_equal(a, pp.fixed_binarize(x, 256, seed=9))
    assert not np.array_equal(a, pp.fixed_binarize(x, 256, seed=10))
    t = pp.fixed_binarize(torch.from_numpy(x), 256, seed=9)
    assert isinstance(t, torch.Tensor) and np.array_equal(t.numpy(), a)
    # its mean is x/255 up to binomial noise (pooled over pixels sharing a level)
    p = x / 255.0
    z = (a.sum() - p.sum()) / np.sqrt((p * (1 - p)).sum())
    assert abs(z) < Z_STAR
    assert a[x == 0].max() == 0.0 and a[x == 255].min() == 1.0


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_dequantize_stays_in_its_bin(levels):
    n = 3000
    x = levels_grid(levels, n)
    y = pp.dequantize(x, levels, torch.Generator().manual_seed(3))
    assert y.dtype == torch.float32
    y64 = y.double()
    assert (y64 >= 0).all() and (y64 < 1).all()
    assert torch.equal(torch.floor(y64 * levels), x.double())
    # the offset u = y * levels - x is U[0, 1): mean 1/2, variance 1/12
    u = (y64 * levels - x.double()).flatten().numpy()
    assert abs(u.mean() - 0.5) < Z_STAR * np.sqrt(1 / 12 / u.size)
    assert abs(u.var() - 1 / 12) < Z_STAR * np.sqrt(1 / 180 / u.size)


def test_dequantize_clamps_the_float32_rounding_edge(monkeypatch):
    """u just below 1 makes (255 + u)/256 round to exactly 1.0 in float32; it must stay in bin."""
    below_one = float(np.nextafter(np.float32(1), np.float32(0)))
    monkeypatch.setattr(torch, "rand", lambda shape, **kw: torch.full(shape, below_one))
    for levels in (2, 17, 256, 65536):
        x = torch.arange(levels, dtype=torch.int64) if levels < 65536 else torch.tensor([65535])
        y = pp.dequantize(x, levels).double()
        assert (y < 1).all() and torch.equal(torch.floor(y * levels), x.double())
    monkeypatch.setattr(torch, "rand", lambda shape, **kw: torch.zeros(shape))
    x = torch.arange(17)
    assert torch.equal(torch.floor(pp.dequantize(x, 17).double() * 17), x.double())


def test_bin_bounds_are_tight():
    for levels in (17, 256):
        lower, upper = pp._bin_bounds(levels)
        for x in range(levels):
            lo, hi = float(lower[x]), float(upper[x])
            assert x <= lo * levels and hi * levels < x + 1
            assert float(np.nextafter(lower[x], np.float32(-1))) * levels < x
            assert float(np.nextafter(upper[x], np.float32(2))) * levels >= x + 1


def test_dequantization_log_correction_bound():
    """log P(x) >= E_u log p((x + u)/L) - log L for a 1-D density p on [0, 1), with equality for
    the uniform density (Theis et al. 2016); P(x) is p's mass on [x/L, (x+1)/L)."""
    assert pp.dequantization_log_correction(784, 256) == pytest.approx(784 * math.log(256))
    assert pp.dequantization_log_correction(3 * 32 * 32, 256) / (3072 * math.log(2)) == 8.0
    levels = 17
    density = beta(2.0, 3.0)
    for x in range(levels):
        mass = density.cdf((x + 1) / levels) - density.cdf(x / levels)
        mean_log_density = integrate.quad(lambda u, x=x: density.logpdf((x + u) / levels), 0, 1)[0]
        bound = mean_log_density - pp.dequantization_log_correction(1, levels)
        assert math.log(mass) >= bound
    # uniform density: p = 1, P(x) = 1/L, the bound is an equality in D dimensions
    assert -pp.dequantization_log_correction(5, levels) == pytest.approx(5 * math.log(1 / levels))
    with pytest.raises(ValueError, match="dim=0 is invalid"):
        pp.dequantization_log_correction(0, 256)


SAMPLERS = {  # the exact Bernoulli samplers: the fixed binarization's and the dynamic one's
    "pcg64": lambda grey, levels, seed: pp.bernoulli_grey(grey, levels,
                                                          np.random.default_rng(seed)),
    "philox": pp.philox_bernoulli_grey,
}


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("levels", [256, 17, 2, 300, 130])
def test_bernoulli_grey_is_exact_at_the_top_levels(levels, sampler):
    """P(1) = x/(L-1) exactly: the top level never fails, the one below fails with 1/(L-1).

    For 8-bit data the uniform r on 0..254 comes from bytes with the 255s redrawn; keeping
    them would give P(r < 254) = 254/256 instead of 254/255, 28 standard errors away here.
    """
    draw = SAMPLERS[sampler]
    n = 200_000
    top = np.full(n, levels - 1)
    below = np.full(n, levels - 2)
    assert draw(top, levels, 3).min() == 1.0
    assert draw(np.zeros(n, np.int64), levels, 4).max() == 0.0
    p = (levels - 2) / (levels - 1)
    mean = float(draw(below, levels, 5).mean())
    assert abs(mean - p) <= Z_STAR * np.sqrt(p * (1 - p) / n) + 1e-12


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_bernoulli_grey_all_levels_chi_square(sampler):
    """Every interior level x of 8-bit data gives ones with probability x/255: the sum over
    levels of squared binomial z-scores is chi-square with 254 degrees of freedom."""
    from scipy import stats

    levels, n = 256, 20_000
    x = np.arange(1, levels - 1)
    draws = SAMPLERS[sampler](np.tile(x, (n, 1)), levels, 5)
    p = x / (levels - 1)
    z = (draws.sum(0) - n * p) / np.sqrt(n * p * (1 - p))
    assert stats.chi2.sf(float((z**2).sum()), df=len(x)) > 1e-4


@pytest.mark.parametrize("size", [100352, 100353, 100356, 13, 8, 5, 4, 1, 0])
def test_raw_words_are_generator_bytes_and_leave_the_same_state(size):
    """The fast path (raw 64-bit outputs) gives ``Generator.bytes``'s bytes and leaves the
    generator where ``bytes`` leaves it: the redraws after it are the same too."""
    fast, slow = np.random.default_rng(42), np.random.default_rng(42)
    got = pp._raw_words(fast, size)
    assert got.dtype == np.uint64 and got.size == -(-size // 8)
    assert got.view(np.uint8)[:size].tobytes() == slow.bytes(size)
    assert np.array_equal(fast.integers(0, 255, 64, dtype=np.uint8),
                          slow.integers(0, 255, 64, dtype=np.uint8))
    other = np.random.Generator(np.random.MT19937(42))  # another bit generator: bytes itself
    got = pp._raw_words(other, size).view(np.uint8)
    assert got[:size].tobytes() == np.random.Generator(np.random.MT19937(42)).bytes(size)
    assert not got[size:].any()  # zero padding: never taken for a 255


def _bernoulli_255_by_definition(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The 8-bit sampler as its docstring defines it, in plain numpy: raw bytes, each 255
    replaced in order by a draw of U{0..254}, compared with the grey levels."""
    r = np.frombuffer(rng.bytes(grey.size), np.uint8).copy()
    at = np.flatnonzero(r == 255)
    r[at] = rng.integers(0, 255, at.size, dtype=np.uint8)
    return (r < grey.reshape(-1)).astype(np.float32).reshape(grey.shape)


@pytest.mark.parametrize("size", [100352, 100353, 100356, 4099, 13, 8, 7, 1, 0])
@pytest.mark.parametrize("bit_generator", [np.random.PCG64, np.random.MT19937])
def test_compiled_8bit_sampler_is_the_definition(size, bit_generator):
    """The compiled compare-and-search (``binarize_cpu.compare_bytes``, a 64-bit word at a time,
    with a tail) gives the plain-numpy sampler's draws bit for bit, redraws included, and
    leaves the generator in the same state. Every byte value meets every grey level, and
    runs of 255 (whole words of them) are planted."""
    grey = np.random.default_rng(size).integers(0, 256, size).astype(np.uint8)
    fast, slow = (np.random.Generator(bit_generator(11)) for _ in range(2))
    got = pp.bernoulli_grey(grey, 256, fast)
    want = _bernoulli_255_by_definition(grey, slow)
    assert got.dtype == np.float32 and np.array_equal(got, want)
    assert np.array_equal(fast.integers(0, 2**63, 8), slow.integers(0, 2**63, 8))
    # every (byte, grey) pair, and whole words of 255s, with a ragged tail of 255s
    r = np.concatenate([np.repeat(np.arange(256), 256), np.full(5, 255)]).astype(np.uint8)
    g = np.concatenate([np.tile(np.arange(256), 256), np.arange(5)]).astype(np.uint8)
    words = np.zeros(-(-r.size // 8), np.uint64)
    words.view(np.uint8)[:r.size] = r
    out, redraw = np.empty(r.size, np.float32), np.empty(r.size, np.intp)
    count = binarize_cpu.compare_bytes(words, g, out, redraw)
    assert np.array_equal(redraw[:count], np.flatnonzero(r == 255))
    assert np.array_equal(out, (r < g).astype(np.float32))


def _philox_bernoulli_by_definition(grey: np.ndarray, levels: int, seed: int
                                    ) -> tuple[np.ndarray, int]:
    """The dynamic sampler as ``philox_bernoulli_grey``'s docstring defines it, from
    ``reference.philox4x32`` (int64 torch words) and a Python loop over the replaced units;
    also the number of pixels whose first replacement counter held no unit below the limit."""
    from kernels import reference

    n, flat = levels - 1, grey.reshape(-1).astype(np.int64)
    unit = np.uint8 if n <= 256 else np.uint32
    limit = (256 ** np.dtype(unit).itemsize // n) * n
    k0, k1 = reference.philox_key(seed)

    def units(counters, c2, t):  # each counter's units, a row per counter
        words = reference.philox4x32(counters & reference.MASK32, counters >> 32, k0, k1, c2, t)
        return torch.stack(words, -1).numpy().astype(np.uint32).view(unit)

    counters = torch.arange(-(-flat.size * np.dtype(unit).itemsize // 16), dtype=torch.int64)
    r = units(counters, 0, 0).reshape(-1)[:flat.size].astype(np.int64)
    left, second_tries = np.flatnonzero(r >= limit), 0
    for t in range(64):  # every replaced pixel's counter t at once; each takes its first unit
        if not left.size:
            break
        fresh = units(torch.from_numpy(left), 1, t)
        ok = fresh < limit
        done = ok.any(1)
        r[left[done]] = fresh[done, ok[done].argmax(1)]
        left = left[~done]
        second_tries += int(t == 0) * left.size
    return ((r % n) < flat).astype(np.float32).reshape(grey.shape), second_tries


@pytest.mark.parametrize("levels, shape", [(256, (128, 784)), (256, (3, 5)), (256, (1,)),
                                           (256, (0, 4)), (17, (40, 64)), (2, (9, 9)),
                                           (300, (33, 17)), (130, (4, 100_000))])
def test_dynamic_binarization_is_its_philox_definition(levels, shape):
    """``dynamic_binarize`` draws, bit for bit, what its definition draws: the first units
    of Philox counters (i, 0, 0), and the units replaced from counters (j, 1, t) in order.
    130 levels replace half the bytes; there some pixels need a second counter."""
    rng = np.random.default_rng(3)
    grey = rng.integers(0, levels, shape).astype(np.uint8 if levels <= 256 else np.int64)
    fast = pp.dynamic_binarize(torch.from_numpy(grey), levels, 9)
    slow, second_tries = _philox_bernoulli_by_definition(grey, levels, 9)
    assert fast.dtype == torch.float32 and tuple(fast.shape) == shape
    assert np.array_equal(fast.numpy(), slow)
    if levels == 130:
        assert second_tries > 0  # the loop over t ran

"""The counter-based noise: Philox known answers, the eps layout, determinism and statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

import kernels
from kernels import reference

M32 = 0xFFFF_FFFF

# Family-wise false-alarm rate of each statistical test below (Bonferroni over its checks);
# the seeds are fixed, so a pass is reproducible and alpha is the chance a random seed fails.
ALPHA = 1e-3


def philox_scalar(counter, key, rounds=10):
    """Philox-4x32 on Python ints with full-width products (Salmon et al. 2011, sec. 4.2)."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for _ in range(rounds):
        p0, p1 = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & M32, (p0 >> 32) ^ c3 ^ k1, p0 & M32
        k0, k1 = (k0 + 0x9E3779B9) & M32, (k1 + 0xBB67AE85) & M32
    return c0, c1, c2, c3


def tl_randn_scalar(seed: int, counter: int) -> float:
    """Model of ``tl.randn(seed, counter)`` from triton.language.random, one value at a time:
    key = 63-bit seed split in 32-bit words, Philox counter (lo, hi, 0, 0), int32 -> [0, 1)
    in float32, Box-Muller (cos branch) in float64."""
    s = seed % 2**63
    r0, r1, _, _ = philox_scalar((counter & M32, counter >> 32, 0, 0), (s & M32, s >> 32))

    def uniform(word):
        x = word - 2**32 if word >= 2**31 else word
        x = ~x if x < 0 else x
        return np.float32(x) * np.float32(4.6566127342e-10)

    u1 = max(float(uniform(r0)), float(np.float32(1e-7)))
    u2 = float(uniform(r1))
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


# Random123 1.14, examples/kat_vectors: philox4x32 with 10 rounds.
PHILOX_KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((M32, M32, M32, M32), (M32, M32), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter,key,expected", PHILOX_KAT)
def test_philox_known_answers(counter, key, expected):
    assert philox_scalar(counter, key) == expected
    words = [torch.tensor([c], dtype=torch.int64) for c in counter]
    got = reference.philox4x32(words[0], words[1], key[0], key[1], words[2], words[3])
    assert tuple(int(w.item()) for w in got) == expected


@pytest.mark.parametrize("key", [(0, 0), (M32, M32), (0xA4093822, 0x299F31D0), (7, 0)])
def test_numba_philox_uniforms_match_torch_bit_for_bit(key):
    """The CPU path (numba, exact uint64 products, one loop per counter) gives the uniforms of
    the int64 torch path (16-bit halves, then ``uniform_from_bits``) across the whole 64-bit
    counter range: runs of counters starting at 0, around 2**31, 2**32, 2**63, at random
    points, and ending at 2**64 - 1."""
    from kernels.philox_cpu import philox_uniforms

    rng = np.random.default_rng(11)
    starts = [0, 2**31 - 700, 2**32 - 700, 2**63 - 700, 2**64 - 1000,
              *(int(s) for s in rng.integers(0, 2**63, 4, dtype=np.uint64) * 2)]
    for start in starts:
        n = 1000 if start == 2**64 - 1000 else 1401  # odd: numba's vector loop and its tail
        counters = np.arange(n, dtype=np.uint64) + np.uint64(start)
        lo = torch.from_numpy((counters & np.uint64(M32)).astype(np.int64))
        hi = torch.from_numpy((counters >> np.uint64(32)).astype(np.int64))
        w0, w1, _, _ = reference.philox4x32(lo, hi, *key)
        u0, u1 = philox_uniforms(start, n, *key)
        assert torch.equal(u0, reference.uniform_from_bits(w0)), start
        assert torch.equal(u1, reference.uniform_from_bits(w1)), start
    with pytest.raises(ValueError, match="outside 0..2\\*\\*64 - 1"):
        philox_uniforms(2**64 - 10, 11, *key)
    if key == (0, 0):  # Random123's known answer for the zero counter, through the mapping
        expected = reference.uniform_from_bits(torch.tensor(PHILOX_KAT[0][2][:2]))
        assert torch.equal(torch.cat(philox_uniforms(0, 1, 0, 0)), expected)


@pytest.mark.parametrize("key", [(0, 0), (M32, M32), (0xA4093822, 0x299F31D0)])
def test_compiled_philox_words_match_the_reference_bit_for_bit(key):
    """``compiled.philox_words`` (wrapping int64 products, deferred masks) gives the four words of
    ``reference.philox4x32`` (no overflow anywhere) across the whole 64-bit counter range:
    in eager torch ops, and in inductor's C++ (vector loop and scalar tail: 4101 counters)."""
    from kernels import compiled

    rng = np.random.default_rng(12)
    counters = torch.from_numpy(np.concatenate([
        rng.integers(0, 2**63, 4096, dtype=np.int64),
        np.array([0, 1, 2**32 - 1, 2**32, 2**63 - 1], dtype=np.int64)]))
    lo, hi = counters & M32, counters >> 32
    expected = torch.stack(reference.philox4x32(lo, hi, *key))
    k = torch.tensor(key, dtype=torch.int64)

    def words(c0, c1, k):
        return torch.stack(compiled.philox_words(c0, c1, k[0], k[1])) & M32

    def uniforms(c0, c1, k):
        return torch.stack([compiled.uniform_from_word(w)
                            for w in compiled.philox_words(c0, c1, k[0], k[1])])

    assert torch.equal(words(lo, hi, k), expected)
    assert torch.equal(torch.compile(words, dynamic=True, fullgraph=True)(lo, hi, k), expected)
    expected_u = reference.uniform_from_bits(expected)
    assert torch.equal(uniforms(lo, hi, k), expected_u)
    assert torch.equal(torch.compile(uniforms, dynamic=True, fullgraph=True)(lo, hi, k),
                       expected_u)
    if key == (0, 0):  # Random123's known answer for the zero counter
        assert [int(w) for w in expected[:, -5]] == list(PHILOX_KAT[0][2])

@pytest.mark.parametrize("seed", [0, 1, 12345, 2**32 + 5, 2**63 - 1, -7])
def test_reference_normal_matches_scalar_model(seed):
    # counters around the 2**31 and 2**32 boundaries exercise the high Philox word
    for offset in (0, 2**31 - 3, 2**32 - 3, 2**40 + 11):
        eps = reference.standard_normal(seed, (6,), offset=offset)
        expected = [tl_randn_scalar(seed, offset + i) for i in range(6)]
        np.testing.assert_allclose(eps.double().numpy(), expected, rtol=0, atol=2e-5)


def test_uniform_mapping_of_edge_words():
    """int32 view, ~x for negatives, float32 scale: the words 0, 1, 2**31 - 1, 2**31, 2**32 - 1."""
    words = [0, 1, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1]
    got = reference.uniform_from_bits(torch.tensor(words, dtype=torch.int64))
    as_int32 = np.array(words, dtype=np.uint32).view(np.int32)
    folded = np.where(as_int32 < 0, ~as_int32, as_int32)
    expected = folded.astype(np.float32) * np.float32(4.6566127342e-10)
    assert np.array_equal(got.numpy(), expected)
    assert got[0] == got[-1] == 0.0 and got[1] == got[-2] > 0.0 and got.max() < 1.0
    from kernels import compiled  # the int32 form, with garbage above bit 31 as in Philox

    garbage = torch.tensor(words, dtype=torch.int64) + (0x5A5A5A5A << 32)
    assert np.array_equal(compiled.uniform_from_word(garbage).numpy(), expected)
    assert np.array_equal(torch.compile(compiled.uniform_from_word)(garbage).numpy(), expected)


# Counters whose first uniform (seed 0) is below 1e-6, found by scanning 2**25 counters with
# the reference: the Box-Muller tail and the clamp u1 >= 1e-7 (the last two are clamped).
TAIL_COUNTERS = [1767245, 4826271, 14883995, 17758991]


def test_tail_counters_match_scalar_model():
    for counter in TAIL_COUNTERS:
        word0, _, _, _ = philox_scalar((counter, 0, 0, 0), (0, 0))
        assert reference.uniform_from_bits(torch.tensor([word0])).item() < 1e-6
        eps = reference.standard_normal(0, (1,), offset=counter)
        assert eps.item() == pytest.approx(tl_randn_scalar(0, counter), abs=2e-5)


@pytest.mark.triton
def test_tail_counters_triton(device):
    from kernels import triton_latent

    zero = torch.zeros(1, 1, device=device)
    for counter in TAIL_COUNTERS:
        z = triton_latent.reparameterize(zero, zero, 1, 0, offset=counter)
        assert z.item() == pytest.approx(tl_randn_scalar(0, counter), abs=2e-5)


def test_seed_folding_and_types():
    assert reference.fold_seed(-1) == 2**63 - 1
    assert reference.fold_seed(2**63 + 4) == 4
    assert reference.philox_key(2**32 + 5) == (5, 1)
    a = reference.standard_normal(2**63 + 9, (16,))
    assert torch.equal(a, reference.standard_normal(9, (16,)))
    for bad in (1.5, "3", None, True):
        with pytest.raises(TypeError, match="seed"):
            reference.fold_seed(bad)


def test_draws_ahead_gives_each_draw_its_own_values_drawn_early(monkeypatch):
    """Inside ``draws_ahead``, the first draw of the announced seeds draws them all (same
    shape, device, dtype, offset); each call still gets, to the bit, what it gets outside the
    block, in any order, for any shape, announced or not."""
    seeds = [kernels.step_seed(5, t) for t in range(4)]
    shape = (1, 6, 3)
    want = {s: reference.standard_normal(s, shape, offset=7) for s in seeds}
    calls = []
    real = reference._standard_normal
    monkeypatch.setattr(reference, "_standard_normal",
                        lambda seed, *a: calls.append(seed) or real(seed, *a))
    monkeypatch.setattr(reference, "_standard_normals",  # seed by seed, each call recorded
                        lambda seeds, *a: [reference._standard_normal(s, *a) for s in seeds])
    block = reference.DrawsAhead(seeds)
    with reference.draws_ahead(block):
        assert torch.equal(reference.standard_normal(seeds[1], shape, offset=7), want[seeds[1]])
        assert calls == seeds[1:]  # this one and the later ones, drawn now
        assert torch.equal(reference.standard_normal(seeds[0], shape, offset=7), want[seeds[0]])
        other = reference.standard_normal(seeds[3], (2, 3), offset=7)  # another shape
        assert torch.equal(other, real(seeds[3], (2, 3), "cpu", torch.float32, 7))
        for s in seeds[2:]:
            assert torch.equal(reference.standard_normal(s, shape, offset=7), want[s])
        unannounced = reference.standard_normal(99, shape)
        assert torch.equal(unannounced, real(99, shape, "cpu", torch.float32, 0))
        again = reference.standard_normal(seeds[2], shape, offset=7)  # taken already: redrawn
        assert torch.equal(again, want[seeds[2]])
    assert calls == [*seeds[1:], seeds[0], seeds[3], 99, seeds[2]]  # none drawn twice ahead
    assert block.asked == [(shape, torch.device("cpu"), torch.float32, 7),
                           ((2, 3), torch.device("cpu"), torch.float32, 7)]
    assert not reference._open_blocks()  # the block is closed


@pytest.mark.parametrize("shape", [(1, 128, 20), (5, 128, 20), (3, 7), (1,), (33,), (0, 4)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_seeds_drawn_together_are_each_drawn_alone(shape, dtype):
    """A block's eps drawn in one call (one Box-Muller over every seed's row) are, to the bit,
    each seed's own draw: torch's log, cos and sqrt give an element the same bits wherever it
    sits in a tensor, tails and thread splits included."""
    seeds = [kernels.step_seed(3, t) for t in range(37)]
    together = reference._standard_normals(seeds, shape, torch.device("cpu"), dtype, 11)
    assert len(together) == len(seeds)
    for s, eps in zip(seeds, together, strict=True):
        alone = reference._standard_normal(s, shape, "cpu", dtype, 11)
        assert eps.dtype == dtype and eps.shape == alone.shape and torch.equal(eps, alone)


@pytest.mark.parametrize("backend", ["eager", "compile"])
def test_same_seed_bit_identical_other_seed_different(backend, inputs):
    mu, logvar = inputs((64, 16))
    z1 = kernels.reparameterize(mu, logvar, 3, seed=11, backend=backend)
    z2 = kernels.reparameterize(mu, logvar, 3, seed=11, backend=backend)
    z3 = kernels.reparameterize(mu, logvar, 3, seed=12, backend=backend)
    assert torch.equal(z1, z2)
    assert (z1 != z3).float().mean() > 0.999
    # the noise of two seeds is uncorrelated: |r| * sqrt(n) below the normal quantile
    e1, e3 = (z1 - mu) / (0.5 * logvar).exp(), (z3 - mu) / (0.5 * logvar).exp()
    r = torch.corrcoef(torch.stack([e1.flatten(), e3.flatten()]))[0, 1]
    assert abs(r.item()) * math.sqrt(e1.numel()) < stats.norm.ppf(1 - ALPHA / 2)


def _check_standard_normal(x: np.ndarray):
    """Mean, variance, lag-1 correlation (z-tests), K-S and D'Agostino K^2 at ALPHA overall."""
    n = x.size
    alpha_each = ALPHA / 5
    z_star = stats.norm.ppf(1 - alpha_each / 2)
    assert abs(x.mean()) * math.sqrt(n) < z_star, x.mean()
    assert abs(x.var() - 1.0) / math.sqrt(2.0 / n) < z_star, x.var()
    lag1 = np.corrcoef(x[:-1], x[1:])[0, 1]
    assert abs(lag1) * math.sqrt(n) < z_star, lag1
    assert stats.kstest(x, "norm").pvalue > alpha_each
    assert stats.normaltest(x).pvalue > alpha_each


def test_eps_statistics_eager():
    x = reference.standard_normal(2024, (1 << 20,), dtype=torch.float64).numpy()
    _check_standard_normal(x)


@pytest.mark.triton
def test_eps_statistics_triton(inputs):
    from kernels import triton_latent

    mu, logvar = inputs((4096, 64), torch.float64, seed=3)
    z = triton_latent.reparameterize(mu, logvar, 4, seed=77)
    eps = ((z - mu) / torch.exp(0.5 * logvar)).flatten().cpu().numpy()
    assert eps.size >= 10**6
    _check_standard_normal(eps)


def test_eps_is_a_function_of_flat_offset(inputs, monkeypatch):
    mu, logvar = inputs((2, 3, 5))
    z = kernels.reparameterize(mu, logvar, 4, seed=5, backend="eager")
    eps = reference.standard_normal(5, (4 * 30,), mu.device).view(4, 2, 3, 5)
    torch.testing.assert_close(z, mu + torch.exp(0.5 * logvar) * eps, rtol=0, atol=1e-6)
    # leading shape does not matter, only the flat position; sample 0 is the n_samples=1 draw
    z_flat = kernels.reparameterize(mu.reshape(6, 5), logvar.reshape(6, 5), 4, seed=5,
                                    backend="eager")
    assert torch.equal(z_flat.view(4, 2, 3, 5), z)
    assert torch.equal(kernels.reparameterize(mu, logvar, 1, seed=5, backend="eager"), z[0])
    # the eager generator's chunk size does not change eps
    monkeypatch.setattr(reference, "_CHUNK", {"cpu": 7, "cuda": 7})
    assert torch.equal(kernels.reparameterize(mu, logvar, 4, seed=5, backend="eager"), z)


@pytest.mark.triton
def test_triton_block_size_does_not_change_eps(inputs):
    from kernels import triton_latent

    mu, logvar = inputs((37, 19))
    ref = triton_latent.reparameterize(mu, logvar, 3, seed=8)
    for tile, block_d in ((64, 8), (1024, 32), (16, 16), (1 << 16, None)):
        z = triton_latent.reparameterize(mu, logvar, 3, seed=8, tile=tile, block_d=block_d)
        assert torch.equal(z, ref), (tile, block_d)


@pytest.mark.triton
def test_triton_eps_matches_eager_across_2_pow_32(inputs):
    from kernels import triton_latent

    mu, logvar = inputs((9, 13))
    offset = 2**32 - 50  # the flat counters cross into the high Philox word
    z_t = triton_latent.reparameterize(mu, logvar, 2, seed=2**40 + 3, offset=offset)
    z_e = reference.reparameterize(mu, logvar, 2, seed=2**40 + 3, offset=offset)
    torch.testing.assert_close(z_t, z_e, rtol=1e-6, atol=2e-6)
    z_other = triton_latent.reparameterize(mu, logvar, 2, seed=2**40 + 3)
    assert (z_other != z_t).all()


def test_compile_eps_matches_eager_across_2_pow_32(inputs):
    from kernels import compiled

    mu, logvar = inputs((9, 13))
    offset = 2**32 - 50
    z_c = compiled.reparameterize(mu, logvar, 2, seed=99, offset=offset)
    z_e = reference.reparameterize(mu, logvar, 2, seed=99, offset=offset)
    torch.testing.assert_close(z_c, z_e, rtol=1e-6, atol=2e-6)


def test_step_seed_distinct_for_consecutive_steps():
    seeds = [kernels.step_seed(7, t) for t in range(20000)]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**63 for s in seeds)
    assert kernels.step_seed(7, 3) == kernels.step_seed(7, 3)
    assert kernels.step_seed(7, 3, stream=1) != kernels.step_seed(7, 3, stream=0)
    assert kernels.step_seed(8, 3) != kernels.step_seed(7, 3)
    # consecutive steps draw unrelated eps: sum over 64 step pairs of n r^2 ~ chi2(64)
    n, pairs = 1 << 12, 64
    eps = [reference.standard_normal(kernels.step_seed(7, t), (n,), dtype=torch.float64)
           for t in range(pairs + 1)]
    chi2 = sum(n * torch.corrcoef(torch.stack([eps[t], eps[t + 1]]))[0, 1].item() ** 2
               for t in range(pairs))
    assert stats.chi2.sf(chi2, pairs) > ALPHA, chi2

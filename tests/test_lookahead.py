"""The trainer's lookahead (``vaebench.lookahead``): blocks, their draws ahead, and values the
same to the bit as drawn step by step."""

from __future__ import annotations

import pytest
import torch

import kernels
from kernels import reference
from vaebench.inputs import TRAIN_EPS_STREAM, TRAIN_INPUT_STREAM, model_inputs
from vaebench.lookahead import Lookahead
from vaebench.parallel import Shards


def test_the_blocks_cover_the_steps_once_and_a_bad_size_is_refused():
    with pytest.raises(ValueError, match="lookahead steps must be >= 1, got 0"):
        Lookahead(torch.zeros(4, 2), None, 2, "image", 256, "bernoulli", 0, Shards(), steps=0)
    for steps, sizes in [(8, [8, 5]), (64, [13]), (1, [1] * 13), (5, [5, 5, 3])]:
        ahead = Lookahead(_grey(), None, 3, "image", 256, "bernoulli", 0, Shards(), steps)
        seen, opened = [], []
        for [(_, _, eps_seed)] in ahead.epoch(torch.arange(40), 7):
            seen.append(eps_seed)
            block = reference._open_blocks()[-1]
            if not opened or opened[-1][0] is not block:
                opened.append([block, 0])
            opened[-1][1] += 1
        assert seen == [kernels.step_seed(0, 7 + b, TRAIN_EPS_STREAM) for b in range(13)]
        assert [n for _, n in opened] == sizes


def _grey(n=40, d=12):
    return torch.randint(0, 256, (n, d), generator=torch.Generator().manual_seed(3),
                         dtype=torch.uint8)


def _step_by_step(x, perm, bs, first_step, seed, shape):
    """What a loop with no lookahead feeds each step: its inputs, its eps."""
    out = []
    for b in range(len(perm) // bs):
        step = first_step + b
        xb = model_inputs(x.index_select(0, perm[b * bs:(b + 1) * bs]), "image", 256,
                          "bernoulli", kernels.step_seed(seed, step, TRAIN_INPUT_STREAM))
        eps = reference.standard_normal(kernels.step_seed(seed, step, TRAIN_EPS_STREAM), shape)
        out.append((xb, eps))
    return out


@pytest.mark.parametrize("steps", [4, 1, 64])
def test_every_step_gets_the_inputs_and_eps_it_gets_step_by_step(steps):
    x, bs, seed, shape = _grey(), 3, 11, (1, 3, 5)
    ahead = Lookahead(x, None, bs, "image", 256, "bernoulli", seed, Shards(), steps)
    first_step = 0
    for epoch in range(3):  # the eps kinds learnt in one epoch serve the next
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        want = _step_by_step(x, perm, bs, first_step, seed, shape)
        got = []
        for [(xb, yb, eps_seed)] in ahead.epoch(perm, first_step):
            got.append((xb, reference.standard_normal(eps_seed, shape)))
            assert yb is None
        assert len(got) == len(want) == ahead.steps_per_epoch(len(x)) == 13
        for (xb, eps), (xw, ew) in zip(got, want, strict=True):
            assert torch.equal(xb, xw) and torch.equal(eps, ew)
        first_step += len(got)
    assert not reference._open_blocks()


def test_a_block_draws_the_eps_the_steps_asked_for_before_its_first_step(monkeypatch):
    """From the second block on, every eps is drawn once, with the block's inputs, before its
    step asks; the first block's are drawn when its first step asks (no step had asked yet)."""
    draws = []
    real = reference._standard_normal
    monkeypatch.setattr(reference, "_standard_normal",
                        lambda seed, *a: draws.append(seed) or real(seed, *a))
    monkeypatch.setattr(reference, "_standard_normals",  # seed by seed, each draw recorded
                        lambda seeds, *a: [reference._standard_normal(s, *a) for s in seeds])
    ahead = Lookahead(_grey(), None, 3, "image", 256, "bernoulli", 5, Shards(), 4)
    seeds, drawn_before = [], []
    for [(_, _, eps_seed)] in ahead.epoch(torch.arange(40), 0):
        drawn_before.append(eps_seed in draws)
        reference.standard_normal(eps_seed, (1, 3, 5))
        seeds.append(eps_seed)
    # blocks: steps 0-3 | 4-7 | 8-11 | 12
    assert drawn_before == [False] + [True] * 3 + [True] * 9
    assert sorted(draws) == sorted(seeds)
    assert not reference._open_blocks()


def _block_buffers(ahead, perm, want, keep=None):
    """The address of each block's first batch (it starts the block's buffer), checking every
    batch's values; the batch at step ``keep`` is held to the end and checked again."""
    firsts, kept = [], None
    for b, [(xb, _, _)] in enumerate(ahead.epoch(perm, 0)):
        if b % ahead.steps == 0:
            firsts.append(xb.data_ptr())
        if b == keep:
            kept = xb
        assert torch.equal(xb, want[b][0])
    if keep is not None:
        assert torch.equal(kept, want[keep][0])
    return firsts


def test_binarized_blocks_reuse_two_buffers_and_never_overwrite_a_kept_batch():
    """A loop that drops each batch after its step (the trainer) gets its blocks' inputs in two
    buffers, taken in turn; a batch kept past its block keeps its buffer from reuse."""
    x, bs, seed = _grey(), 3, 11
    perm = torch.arange(len(x))
    want = _step_by_step(x, perm, bs, 0, seed, (1, 3, 5))
    ahead = Lookahead(x, None, bs, "image", 256, "bernoulli", seed, Shards(), 4)
    a, b, c, d = _block_buffers(ahead, perm, want)
    assert a == c and b == d and a != b
    ahead = Lookahead(x, None, bs, "image", 256, "bernoulli", seed, Shards(), 4)
    a, b, c, d = _block_buffers(ahead, perm, want, keep=1)  # the first buffer stays busy
    assert b == d and c not in (a, b)
    assert len(ahead._buffers.pool) == 2

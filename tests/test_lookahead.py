"""The trainer's lookahead (``vaebench.lookahead``): blocks, the worker's draws, and values
the same to the bit as drawn step by step."""

from __future__ import annotations

import threading

import pytest
import torch

import kernels
from kernels import reference
from vaebench.inputs import TRAIN_EPS_STREAM, TRAIN_INPUT_STREAM, model_inputs
from vaebench.lookahead import Lookahead, block_ranges
from vaebench.parallel import Shards


def test_block_ranges_cover_the_steps_once_with_a_short_first_block():
    assert block_ranges(20, 8) == [range(0, 1), range(1, 9), range(9, 17), range(17, 20)]
    assert block_ranges(100, 64) == [range(0, 8), range(8, 72), range(72, 100)]
    assert block_ranges(5, 64) == [range(0, 5)]
    assert block_ranges(3, 1) == [range(0, 1), range(1, 2), range(2, 3)]
    assert block_ranges(0, 64) == []
    with pytest.raises(ValueError, match="lookahead steps must be >= 1, got 0"):
        Lookahead(torch.zeros(4, 2), None, 2, "image", 256, "bernoulli", 0, Shards(), steps=0)


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


@pytest.mark.parametrize("steps,threaded", [(4, True), (4, False), (1, False), (64, True)])
def test_every_step_gets_the_inputs_and_eps_it_gets_step_by_step(steps, threaded):
    x, bs, seed, shape = _grey(), 3, 11, (1, 3, 5)
    ahead = Lookahead(x, None, bs, "image", 256, "bernoulli", seed, Shards(), steps, threaded)
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


def test_the_worker_draws_the_eps_the_steps_asked_for_before(monkeypatch):
    """From the third block on, every eps is drawn once, in the worker thread, before its step
    asks; the first two blocks' are drawn on the step's thread (no step had asked yet)."""
    draws = []
    real = reference._standard_normal
    monkeypatch.setattr(reference, "_standard_normal", lambda seed, *a: draws.append(
        (threading.current_thread().name, seed)) or real(seed, *a))
    ahead = Lookahead(_grey(), None, 3, "image", 256, "bernoulli", 5, Shards(), 4)
    seeds = []
    for [(_, _, eps_seed)] in ahead.epoch(torch.arange(40), 0):
        reference.standard_normal(eps_seed, (1, 3, 5))
        seeds.append(eps_seed)
    # blocks: steps 0 | 1-4 | 5-8 | 9-12
    assert sorted(draws) == sorted([("MainThread", s) for s in seeds[:5]]
                                   + [("vaebench-lookahead_0", s) for s in seeds[5:]])


def test_closing_an_epoch_early_leaves_no_worker_running():
    ahead = Lookahead(_grey(400), None, 3, "image", 256, "bernoulli", 5, Shards(), 8)
    before = threading.active_count()
    batches = ahead.epoch(torch.arange(400), 0)
    for _ in range(3):  # the worker is drawing the next block
        next(batches)
    assert threading.active_count() == before + 1
    batches.close()  # early stopping, a diverged loss: the trainer leaves the epoch
    assert threading.active_count() == before
    assert not reference._open_blocks()

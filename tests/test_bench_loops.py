"""The training benchmark's GEMM floor counts the GEMMs a training step really runs."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.loops import BATCH, PlainVAE, gemm_flops_per_step, plain_loss, step_gemms


def test_gemm_floor_has_the_flops_of_a_training_step():
    """torch's FLOP counter over one forward + backward of the 784-400-20 VAE counts exactly
    the GEMMs of ``step_gemms`` (the first layer's input gradient is never computed)."""
    torch.manual_seed(0)
    model = PlainVAE()
    x = torch.bernoulli(torch.full((BATCH, 784), 0.3))
    with FlopCounterMode(display=False) as counter:
        logits, mu, logvar = model(x)
        plain_loss(logits, x, mu, logvar).mean().backward()
    assert counter.get_total_flops() == gemm_flops_per_step()
    assert len(step_gemms()) == 11  # 4 forward, 4 weight gradients, 3 input gradients


def test_paired_ratio_against_scipy_its_verdicts_and_the_order():
    """The paired ratio is the geometric mean of per-repeat ratios of steady epochs (first
    epoch of each run dropped), with scipy's Student-t interval on the log scale; a constant
    ratio gives a zero-width interval, and the verdict reads the whole interval."""
    import math

    import numpy as np
    from scipy import stats

    from benchmarks.loops import interval_verdict, shuffled
    from benchmarks.train_throughput import paired

    base = [[9.0, 2.0, 2.2], [9.0, 3.0, 3.0], [9.0, 2.5, 2.7]]
    loop = [[1.0, 2.3, 2.3], [1.0, 3.1, 3.5], [1.0, 2.9, 2.9]]
    logs = np.log([2.3 / 2.1, 3.3 / 3.0, 2.9 / 2.6])
    lo, hi = stats.t.interval(0.95, 2, loc=logs.mean(), scale=stats.sem(logs))
    iv = paired(loop, base)
    assert math.isclose(iv["ratio"], math.exp(logs.mean()), rel_tol=1e-12)
    assert math.isclose(iv["low"], math.exp(lo), rel_tol=1e-12)
    assert math.isclose(iv["high"], math.exp(hi), rel_tol=1e-12) and iv["n"] == 3
    exact = paired([[1.0, 2.2 * r[1], 2.2 * r[2]] for r in base], base)
    assert math.isclose(exact["low"], 2.2) and math.isclose(exact["high"], 2.2)
    assert interval_verdict({"low": 1.0, "high": 1.1}, 1.1) == "met"
    assert interval_verdict({"low": 1.05, "high": 1.15}, 1.1) == "undecided"
    assert interval_verdict({"low": 1.11, "high": 1.2}, 1.1) == "missed"
    # a speed-up must reach its target: the same intervals, read the other way
    assert interval_verdict({"low": 2.0, "high": 2.4}, 2.0, at_least=True) == "met"
    assert interval_verdict({"low": 1.9, "high": 2.4}, 2.0, at_least=True) == "undecided"
    assert interval_verdict({"low": 1.5, "high": 1.99}, 2.0, at_least=True) == "missed"
    # every repeat's order is a permutation, and the orders differ from repeat to repeat
    names = [f"loop {i}" for i in range(6)]
    orders = [shuffled(names, r) for r in range(4)]
    assert all(sorted(o) == names for o in orders) and len({tuple(o) for o in orders}) > 1

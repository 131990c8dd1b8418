"""Probes of a shared machine's state, each timed apart from the work it is set beside.

A shared VM's speed drifts between hours and days, and switches between states within a run:
a ratio of times taken apart means something only where the probes beside them agree.

- ``gemm_probe_us``: the machine's speed right now, one 128 x 784 x 400 GEMM's median time;
- ``copy_bandwidth_gbs``: its memory bandwidth right now, a copy larger than the last-level
  cache;
- ``adam_step_us``: the optimizer's share of a training step, from the caches.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from benchmarks.loops import BATCH, SIZES


def gemm_probe_us(calls: int = 200) -> float:
    """Median microseconds of one ``x @ W.T`` of the training step's shape (128 x 784 x 400,
    float32, torch's current threads) over ``calls`` calls after 20 warm-up calls."""
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(BATCH, SIZES[0], generator=gen), torch.randn(SIZES[1], SIZES[0],
                                                                    generator=gen)
    times = []
    for i in range(calls + 20):
        t0 = time.perf_counter()
        x @ w.T
        if i >= 20:
            times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e6


def copy_bandwidth_gbs(mib: int = 64, calls: int = 5) -> float:
    """The machine's memory bandwidth right now: GB/s (read plus written) of the median of
    ``calls`` copies of a ``mib`` MiB float32 tensor (by default twice the size of a 32 MiB
    last-level cache). A shared host switches between states; this probe, measured apart from
    the epochs it is set beside, tells them apart without using their times. Which state is
    the slower one is read off the epochs, not assumed from the probe."""
    src = torch.ones(mib * 2**18)
    dst = torch.empty_like(src)
    dst.copy_(src)  # first touch
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - t0)
    return 2 * src.numel() * 4 / float(np.median(times)) / 1e9


def adam_step_us(calls: int = 20) -> float:
    """Median microseconds of one fused Adam step over parameters of the 784-400-20 VAE's
    shapes (its weights, Adam's two moments and the gradients: about 10 MB, within a 32 MiB
    last-level cache), after one warm-up step: the optimizer's share of a training step, timed
    apart from it. Set beside the copy probe, it says whether a state of the machine slows the
    work that runs from the caches."""
    d, h, k = SIZES
    gen = torch.Generator().manual_seed(0)
    shapes = [(h, d), (h,), (2 * k, h), (2 * k,), (h, k), (h,), (d, h), (d,)]
    params = [nn.Parameter(torch.randn(s, generator=gen) * 0.01) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)
    opt = torch.optim.Adam(params, lr=1e-3, fused=True)
    opt.step()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e6

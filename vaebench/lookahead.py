"""The trainer's lookahead: the inputs and eps of a block of coming steps, drawn in a row
before the first of them.

A training step needs its minibatch's model inputs (the exact dynamic binarization of
``vaebench.inputs.model_inputs``, or dequantization) and its eps (``kernels.reference``'s
Philox normals). Both are pure functions of the step's seeds, so they can be drawn at any
time and come out the same to the bit. Drawn between two steps they cost more than their own
time: the draw finds the CPU's caches full of the step's weights, and the step then finds them
full of the draw's buffers. So the steps of an epoch come in blocks; a block's inputs, and its
eps of every kind the steps of earlier blocks asked for (``kernels.reference.DrawsAhead``),
are drawn together when its first step comes. How much this saves is measured, not assumed:
``benchmarks.step_costs`` times the step with its inputs drawn step by step and in blocks
(``reports/benchmarks/step_costs-<vendor>.md``).

A block's binarized inputs (26 MB for 64 steps of Fashion-MNIST) are written to buffers kept
from block to block (``Buffers``): memory the process has just been given costs a page fault
at its first touch, which doubled the time of the binarization's compare pass (70 us against
45 us per 128 x 784 batch, AMD EPYC, 2026-12-05).

A worker thread drawing the next block while one trains was built, fixed (its torch ops on one
thread, else libgomp throttles every team's spin-wait) and measured on whole epochs: no gain
(AMD EPYC, 2026-12-05, commit d2dcd0c and the closing note of that session), so the blocks are
drawn on the step's thread.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterator

import numpy as np
import torch

import kernels
from kernels.reference import DrawsAhead, draws_ahead
from vaebench.inputs import TRAIN_EPS_STREAM, TRAIN_INPUT_STREAM, binarizes_into, model_inputs
from vaebench.parallel import Shards

LOOKAHEAD_STEPS = 64  # steps per block; 64 steps of 128 x 784 float32 inputs hold 26 MB
KEPT_BUFFERS = 2  # a block's, and the one before it, whose last batch the caller may still hold

Batch = tuple[torch.Tensor, torch.Tensor | None, int]  # model inputs, labels, eps seed
Block = tuple[list[list[Batch]], DrawsAhead]  # each step's shard batches; the block's eps


class Buffers:
    """float32 buffers for the blocks' inputs, kept and reused. A buffer is cut into batches
    again only when no batch cut from it before is alive (each batch is a numpy view of it,
    watched by a weak reference), so a batch a caller keeps is never overwritten. At most
    ``KEPT_BUFFERS`` are kept; past that a busy pool gives a buffer of its own, freed with its
    batches."""

    def __init__(self, numel: int):
        self.numel = numel
        self.pool: list[tuple[np.ndarray, list[weakref.ref]]] = []

    def block(self) -> Callable[[tuple[int, ...]], torch.Tensor]:
        """A function cutting a block's batches, of the shapes asked, one after another from a
        buffer no live batch uses."""
        buf, batches = next(((buf, batches) for buf, batches in self.pool
                             if all(ref() is None for ref in batches)), (None, None))
        if buf is None:
            buf, batches = np.empty(self.numel, np.float32), []
            if len(self.pool) < KEPT_BUFFERS:
                self.pool.append((buf, batches))
        batches.clear()
        used = 0

        def cut(shape: tuple[int, ...]) -> torch.Tensor:
            nonlocal used
            view = buf[used:used + math.prod(shape)].reshape(shape)
            used += view.size
            batches.append(weakref.ref(view))
            return torch.from_numpy(view)

        return cut


class Lookahead:
    """The training steps' inputs (``x``, labels ``y``) and eps seeds, drawn a block ahead.

    ``steps``: the steps per block (1: each step's inputs and eps are drawn just before it).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor | None, batch_size: int, kind: str,
                 levels: int | None, likelihood: str, seed: int, shards: Shards,
                 steps: int = LOOKAHEAD_STEPS):
        if steps < 1:
            raise ValueError(f"lookahead steps must be >= 1, got {steps}")
        self.x, self.y, self.batch_size, self.shards = x, y, batch_size, shards
        self.kind, self.levels, self.likelihood, self.seed = kind, levels, likelihood, seed
        self.steps = steps
        self._asked: list[tuple] = []  # the eps draws the steps asked for, in the blocks so far
        self._buffers = (Buffers(steps * batch_size * math.prod(x.shape[1:]))
                         if binarizes_into(kind, likelihood, x.device) else None)

    def steps_per_epoch(self, n: int) -> int:
        """Steps in an epoch of ``n`` points: the ragged last batch is dropped, so that every
        step sees ``batch_size`` points."""
        return n // self.batch_size

    def epoch(self, perm: torch.Tensor, first_step: int) -> Iterator[list[Batch]]:
        """One epoch's steps in the order of ``perm``; for each, the (inputs, labels, eps seed)
        of this process's shards. ``first_step``: the global index of the epoch's first step."""
        total = self.steps_per_epoch(len(perm))
        for first in range(0, total, self.steps):
            steps = range(first, min(first + self.steps, total))
            batches, eps = self._block(perm, first_step, steps)
            with draws_ahead(eps):
                yield from batches
            self._asked.extend(kind for kind in eps.asked if kind not in self._asked)
            del batches  # its buffer is free for the block after next, once the caller drops it

    def _block(self, perm: torch.Tensor, first_step: int, steps: range) -> Block:
        """The model inputs and eps seeds of ``steps``, and their eps of the kinds asked so
        far."""
        batches = []
        cut = None if self._buffers is None else self._buffers.block()
        for b in steps:
            idx, step = perm[b * self.batch_size:(b + 1) * self.batch_size], first_step + b
            idx = idx.to(self.x.device)
            shard_batches = []
            for r in self.shards.ranks:
                rows = self.shards.rows(idx, r)
                out = None if cut is None else cut((len(rows), *self.x.shape[1:]))
                xb = model_inputs(self.x.index_select(0, rows), self.kind, self.levels,
                                  self.likelihood,
                                  kernels.step_seed(self.seed, step,
                                                    self.shards.stream(TRAIN_INPUT_STREAM, r)),
                                  check=False, out=out)
                shard_batches.append(
                    (xb, None if self.y is None else self.y.index_select(0, rows),
                     kernels.step_seed(self.seed, step, self.shards.stream(TRAIN_EPS_STREAM, r))))
            batches.append(shard_batches)
        eps = DrawsAhead([eps_seed for shard_batches in batches for *_, eps_seed in shard_batches])
        for kind in self._asked:
            eps.draw(*kind)
        return batches, eps

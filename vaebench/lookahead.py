"""The trainer's lookahead: the inputs and eps of coming steps, drawn in a worker thread while
the steps before them train.

A training step needs its minibatch's model inputs (the exact dynamic binarization of
``vaebench.inputs.model_inputs``, or dequantization) and its eps (``kernels.reference``'s
Philox normals). Both are pure functions of the step's seeds, so they can be drawn at any
time, in any thread, and come out the same to the bit. Drawn between two steps, on the step's
own thread, they cost more than their own time: the draw finds the CPU's caches full of the
step's weights, and the step then finds them full of the draw's buffers. So the steps of an
epoch are cut into blocks; while one block's steps train, a worker thread draws the next
block's inputs and eps (``kernels.reference.DrawsAhead``: every eps each step asked for in the
blocks before, the same shape, device, dtype and offset for the block's seeds). The first
block of an epoch is short (``block_ranges``): its steps wait for it. How much this saves
is measured, not assumed: ``benchmarks.step_costs`` times the step with its inputs drawn step
by step, in blocks on the step's thread, and in blocks by the worker
(``reports/benchmarks/step_costs-<vendor>.md``).

What the worker runs is the very calls a step would run (the tests compare the trained weights
with a step-by-step loop's, to the bit: ``tests/test_lookahead.py``), with no shared state: the
noise of each call comes from its own seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait

import torch

import kernels
from kernels.reference import DrawsAhead, draws_ahead
from vaebench.inputs import TRAIN_EPS_STREAM, TRAIN_INPUT_STREAM, model_inputs
from vaebench.parallel import Shards

LOOKAHEAD_STEPS = 64  # steps per block; 64 steps of 128 x 784 float32 inputs hold 26 MB

Batch = tuple[torch.Tensor, torch.Tensor | None, int]  # model inputs, labels, eps seed
Block = tuple[list[list[Batch]], DrawsAhead]  # each step's shard batches; the block's eps


def block_ranges(steps: int, size: int) -> list[range]:
    """The steps 0..steps-1 cut into blocks: the first of ``size // 8`` steps (at least 1; the
    epoch's steps wait for it), then blocks of ``size``."""
    if steps <= 0:
        return []
    first = min(steps, max(1, size // 8))
    return [range(0, first), *(range(a, min(a + size, steps)) for a in range(first, steps, size))]


def _one_thread() -> None:
    """The worker's torch ops run on its own thread alone, never in an OpenMP team of their
    own: with more OpenMP threads alive than cores, libgomp cuts every team's spin-wait short,
    and each parallel region of the training steps then waits for its threads to wake up (an
    epoch took 1.5x as long, AMD EPYC, 2026-12-05). The thread counts of ATen's OpenMP are per
    thread; ``Lookahead.epoch`` restores the process-wide default this call changes."""
    torch.get_num_threads()  # this thread's count set up now, so that it stays at 1
    torch.set_num_threads(1)


class Lookahead:
    """The training steps' inputs (``x``, labels ``y``) and eps seeds, drawn a block ahead.

    ``steps``: the steps per block (1: each step's inputs and eps are drawn just before it);
    ``threaded``: a worker thread draws each block while the block before trains (False: the
    block is drawn on the step's thread when its first step comes).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor | None, batch_size: int, kind: str,
                 levels: int | None, likelihood: str, seed: int, shards: Shards,
                 steps: int = LOOKAHEAD_STEPS, threaded: bool = True):
        if steps < 1:
            raise ValueError(f"lookahead steps must be >= 1, got {steps}")
        self.x, self.y, self.batch_size, self.shards = x, y, batch_size, shards
        self.kind, self.levels, self.likelihood, self.seed = kind, levels, likelihood, seed
        self.steps, self.threaded = steps, threaded
        self._asked: list[tuple] = []  # the eps draws the steps asked for, in the blocks so far
        self._coming: Future | None = None  # the block the worker draws

    def steps_per_epoch(self, n: int) -> int:
        """Steps in an epoch of ``n`` points: the ragged last batch is dropped, so that every
        step sees ``batch_size`` points."""
        return n // self.batch_size

    def epoch(self, perm: torch.Tensor, first_step: int) -> Iterator[list[Batch]]:
        """One epoch's steps in the order of ``perm``; for each, the (inputs, labels, eps seed)
        of this process's shards. ``first_step``: the global index of the epoch's first step."""
        ranges = block_ranges(self.steps_per_epoch(len(perm)), self.steps)
        if not self.threaded or not ranges:
            for steps in ranges:
                yield from self._run(self._block(perm, first_step, steps, tuple(self._asked)))
            return
        threads = torch.get_num_threads()
        try:
            with ThreadPoolExecutor(1, thread_name_prefix="vaebench-lookahead",
                                    initializer=_one_thread) as worker:
                self._coming = worker.submit(self._block, perm, first_step, ranges[0], ())
                for i in range(len(ranges)):
                    block = self._coming.result()
                    self._coming = None
                    if i + 1 < len(ranges):  # drawn while this block trains
                        self._coming = worker.submit(self._block, perm, first_step,
                                                     ranges[i + 1], tuple(self._asked))
                    yield from self._run(block)
        finally:
            torch.set_num_threads(threads)  # the default for new threads, which _one_thread set

    def wait(self) -> None:
        """Return once the worker has drawn the coming block: a benchmark that runs several
        trainers by turns calls it at the end of a turn, so that no draw runs in another's."""
        if self._coming is not None:
            wait([self._coming])

    def _block(self, perm: torch.Tensor, first_step: int, steps: range,
               asked: tuple[tuple, ...]) -> Block:
        """The model inputs and eps seeds of ``steps``, and their eps of the kinds ``asked``."""
        batches = []
        for b in steps:
            idx, step = perm[b * self.batch_size:(b + 1) * self.batch_size], first_step + b
            idx = idx.to(self.x.device)
            batches.append([
                (model_inputs(self.x.index_select(0, rows), self.kind, self.levels,
                              self.likelihood,
                              kernels.step_seed(self.seed, step,
                                                self.shards.stream(TRAIN_INPUT_STREAM, r)),
                              check=False),
                 None if self.y is None else self.y.index_select(0, rows),
                 kernels.step_seed(self.seed, step, self.shards.stream(TRAIN_EPS_STREAM, r)))
                for r in self.shards.ranks for rows in [self.shards.rows(idx, r)]])
        eps = DrawsAhead([eps_seed for shard_batches in batches for *_, eps_seed in shard_batches])
        for kind in asked:
            eps.draw(*kind)
        return batches, eps

    def _run(self, block: Block) -> Iterator[list[Batch]]:
        batches, eps = block
        with draws_ahead(eps):
            yield from batches
        self._asked.extend(kind for kind in eps.asked if kind not in self._asked)

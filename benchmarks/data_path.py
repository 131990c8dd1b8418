"""The trainer's data path, part by part: each new part against the one it replaced, in one run.

A block of the trainer's lookahead (``vaebench.lookahead``) draws the model inputs and eps of
64 steps in a row. Three parts of that draw changed together; each is timed here against what
it replaced, on the same batches (Fashion-MNIST, 128 x 784, grey levels 0..255):

- ``binarize``: one block's exact dynamic binarization, ``preprocess.philox_bernoulli_grey``
  (Philox-4x32 bytes), against ``preprocess.bernoulli_grey`` with ``numpy.random.default_rng``
  (numpy's PCG64 bytes, which the training step used before and the fixed binarization of the
  test sets still uses). Both write to fresh memory, as before the kept buffers.
- ``fresh memory``: the Philox binarization of a block into fresh arrays, against the same
  into buffers kept from block to block (``lookahead.Buffers``): fresh memory costs a page
  fault at its first touch.
- ``eps``: one block's eps, 64 seeds of 1 x 128 x 20, drawn seed by seed
  (``reference._standard_normal`` each), against ``reference._standard_normals`` (one compiled
  call and one Box-Muller for all); the values are checked equal to the bit first.

The variants take turns, a block each, in a fresh seeded order every round (the Philox
into fresh arrays once, serving both pairs it is in); the ratio
(old over new) is paired round by round: the geometric mean with its 95% Student-t interval.
Run: ``python -m benchmarks.data_path``; writes ``reports/benchmarks/data_path-<vendor>.{json,md}``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import typer

from benchmarks.loops import BATCH, SIZES, fashion_mnist_study, paired_ratio, per_cpu

ROOT = Path(__file__).resolve().parents[1]
STEPS = 64  # a block of the lookahead (vaebench.lookahead.LOOKAHEAD_STEPS)
VARIANTS = {  # each way of drawing a block that is timed, once per round
    "pcg64": "numpy PCG64 bytes (bernoulli_grey), into fresh arrays",
    "philox": "Philox-4x32 bytes (philox_bernoulli_grey), into fresh arrays",
    "philox kept": "Philox-4x32 bytes, into buffers kept from block to block",
    "eps alone": "eps seed by seed (_standard_normal each)",
    "eps together": "eps together (_standard_normals)",
}
PAIRS = {  # part: (the variant it replaced, the variant now); "philox" serves two pairs
    "binarize": ("pcg64", "philox"),
    "fresh memory": ("philox", "philox kept"),
    "eps": ("eps alone", "eps together"),
}


def _block_variants(grey: list[np.ndarray], seeds: list[int], kept: list[np.ndarray]
                    ) -> dict[str, Callable[[], None]]:
    """Each variant of ``VARIANTS``, drawing one block. ``kept``: the buffers kept from block
    to block, one per step."""
    from kernels import reference
    from vaebench.data import preprocess

    shape, cpu = (1, BATCH, SIZES[2]), torch.device("cpu")
    together = reference._standard_normals(seeds, shape, cpu, torch.float32, 0)
    for s, eps in zip(seeds, together, strict=True):  # the same values, to the bit
        if not torch.equal(eps, reference._standard_normal(s, shape, cpu, torch.float32, 0)):
            raise AssertionError(f"eps of seed {s} drawn together differs from its own draw")
    return {
        "pcg64": lambda: [preprocess.bernoulli_grey(g, 256, np.random.default_rng(s))
                          for g, s in zip(grey, seeds, strict=True)],
        "philox": lambda: [preprocess.philox_bernoulli_grey(g, 256, s)
                           for g, s in zip(grey, seeds, strict=True)],
        "philox kept": lambda: [preprocess.philox_bernoulli_grey(g, 256, s, out=o)
                                for g, s, o in zip(grey, seeds, kept, strict=True)],
        "eps alone": lambda: [reference._standard_normal(s, shape, cpu, torch.float32, 0)
                              for s in seeds],
        "eps together": lambda: reference._standard_normals(seeds, shape, cpu, torch.float32, 0),
    }


def main(rounds: int = 200, seed: int = 0, out: Path = ROOT / "reports" / "benchmarks") -> None:
    import kernels
    from vaebench.io import atomic_write_json, atomic_write_text
    from vaebench.machine import machine_info

    bundle, _ = fashion_mnist_study(ROOT, 1)
    x = np.ascontiguousarray(bundle.x_train)
    rng = np.random.default_rng(seed)
    times: dict[str, list[float]] = {}
    kept = [np.zeros((BATCH, x.shape[1]), np.float32) for _ in range(STEPS)]  # touched once
    for r in range(-1, rounds):  # round -1: warm-up (numba's compile or cache load), untimed
        rows = rng.permutation(len(x))[:STEPS * BATCH].reshape(STEPS, BATCH)
        grey = [x[idx] for idx in rows]
        seeds = [kernels.step_seed(seed, r * STEPS + b) for b in range(STEPS)]
        variants = _block_variants(grey, seeds, kept)
        for name in rng.permutation(list(variants)):
            t0 = time.perf_counter()
            variants[name]()
            if r >= 0:
                times.setdefault(name, []).append(time.perf_counter() - t0)
    machine = machine_info(ROOT)
    result = {"date": dt.datetime.now().isoformat(timespec="seconds"), "device": machine["cpu"],
              "machine": machine, "rounds": rounds, "steps": STEPS,
              "block_seconds": times,
              "median_us_per_step": {k: 1e6 * float(np.median(v)) / STEPS
                                     for k, v in times.items()},
              "old_over_new": {p: paired_ratio(times[old], times[new])
                               for p, (old, new) in PAIRS.items()}}
    name = per_cpu("data_path")
    atomic_write_json(out / f"{name}.json", result)
    atomic_write_text(out / f"{name}.md", render(result))
    typer.echo(render(result))


def render(result: dict) -> str:
    med = result["median_us_per_step"]
    rows = [f"| {p} | {VARIANTS[old]} | {med[old]:.1f} | {VARIANTS[new]} | {med[new]:.1f} | "
            f"{iv['ratio']:.2f} [{iv['low']:.2f}, {iv['high']:.2f}] |"
            for p, (old, new) in PAIRS.items() for iv in [result["old_over_new"][p]]]
    return "\n".join([
        "# The trainer's data path, part by part: each new part against the one it replaced",
        "",
        f"{result['date']}, {result['device']}, {result['machine']['torch_threads']} threads, "
        f"torch {result['machine']['torch']}. Fashion-MNIST, blocks of {result['steps']} steps "
        f"of {BATCH} x 784 grey levels (binarization) and of 1 x {BATCH} x {SIZES[2]} eps; "
        f"{result['rounds']} rounds, each on fresh batches and seeds, every variant drawing one "
        "block in a fresh seeded order (`python -m benchmarks.data_path`).",
        "",
        "| part | before | µs per step | now | µs per step | before / now [95% interval] |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "µs per step: the median block's time over its steps. Ratio: paired round by round, the "
        "geometric mean with its Student-t interval on the log scale. The eps drawn together "
        "were checked equal to each seed's own draw, to the bit, before timing.",
        "",
    ])


if __name__ == "__main__":
    typer.run(main)

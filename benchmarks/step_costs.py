"""What each part of vaebench's training step costs, against the minimal loop, in one process.

The training benchmark (``benchmarks.train_throughput``) times whole epochs; this one takes the
step apart. Each variant is vaebench's step with one part swapped for the minimal loop's:

- ``trainer``: the trainer's own step (``vaebench.lookahead.Lookahead``: inputs and eps
  drawn a block of ``LOOKAHEAD_STEPS`` ahead, before the block's first step; the objective
  and its gradient from the backward pass written out, ``vaebench.fused_step.elbo_step``, as
  the trainer takes them for this VAE; fused Adam; the step's stats kept), in vaebench's GEMM
  library and in aten's;
- ``autograd``: the same step with the model's objective and autograd's backward (the
  trainer's step before ``fused_step``), in both libraries;
- ``step by step``: the trainer's step, every input and eps drawn just before its step (the
  trainer before the lookahead);
- ``pre-binarized``: inputs gathered from one binarization in memory, as the minimal loop's
  (Philox eps drawn a block ahead, stats kept);
- ``no stats``: the trainer's step without keeping its statistics;
- ``torch.randn``: the trainer's inputs, eps from ``torch.randn`` fed to the objective
  (``loops.vaebench_elbo``, autograd, no stats);
- ``bare``: inputs gathered from one binarization in memory, eps from ``torch.randn``, no stats,
  autograd: vaebench's model and Adam alone, fed as the minimal loop is;

and ``minimal``, the minimal loop's step (``benchmarks.loops.PlainVAE``, aten GEMMs). A
shared machine's speed drifts within seconds, so the variants take turns, a block of steps
each, in a fresh seeded order every round; each variant's time over the minimal loop's is the
geometric mean over groups of rounds, with its Student-t interval. Validation, checkpoints
and the first steps (warm-up) are left out: this is the step alone.
Run: ``python -m benchmarks.step_costs``; writes ``reports/benchmarks/step_costs-<vendor>.{json,md}``.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import typer

from benchmarks.loops import BATCH, SIZES, MinimalLoop, fashion_mnist_study, paired_ratio, per_cpu

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "minimal": "the minimal loop's step (PlainVAE, pre-binarized, torch.randn, fused Adam; aten)",
    "trainer": ("vaebench's trainer step (inputs and eps drawn a block ahead, the backward pass "
                "written out: `vaebench.fused_step`)"),
    "trainer, aten": "the trainer step with `study.gemm: aten`, the minimal loop's GEMMs",
    "autograd": "the trainer step on autograd (the model's objective and `backward()`)",
    "autograd, aten": "the same with `study.gemm: aten`",
    "step by step": "the trainer step, every input and eps drawn just before its step",
    "pre-binarized": "the trainer step on inputs binarized once in memory",
    "no stats": "the trainer step keeping no statistics",
    "torch.randn": "the autograd step with eps from torch.randn (and no stats)",
    "bare": ("vaebench's model and Adam alone: pre-binarized inputs, torch.randn, no stats, "
             "autograd"),
}
ATEN = ("minimal", "trainer, aten", "autograd, aten")  # the variants run in aten
AUTOGRAD = ("autograd", "autograd, aten", "torch.randn", "bare")  # the others step by hand


def _vaebench_step(spec, bundle, variant: str, x_bin: torch.Tensor, seed: int
                   ) -> Callable[[], None]:
    """One step of vaebench's training per call, as ``variant`` says (see the module).
    ``seed``: its seed streams, one per variant, so that no variant's eps is drawn in
    another's block."""
    from benchmarks.loops import vaebench_elbo
    from vaebench.fused_step import elbo_step_unchecked as elbo_step  # as the trainer steps
    from vaebench.inputs import seeded_generator
    from vaebench.lookahead import LOOKAHEAD_STEPS, Lookahead
    from vaebench.models import build_model
    from vaebench.nets.linear import set_gemm
    from vaebench.parallel import Shards
    from vaebench.train import data_info

    cfg = spec.train
    torch.manual_seed(spec.seed)
    set_gemm(spec.study.gemm)
    model = build_model(spec.model, cfg, data_info(bundle), backend=spec.study.backend)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, eps=cfg.adam_eps,
                           betas=tuple(cfg.adam_betas), fused=True)
    x = torch.from_numpy(np.ascontiguousarray(bundle.x_train))
    gen = seeded_generator(seed)
    # pre-binarized: the trainer's batches gathered from x_bin, which model_inputs passes
    # through as it passes continuous data; eps seeds and their draws as the trainer's
    source, kind = ((x_bin, "continuous") if variant in ("bare", "pre-binarized") else
                    (x, bundle.kind))
    batches = Lookahead(source, None, cfg.batch_size, kind, bundle.levels, model.likelihood,
                        seed, Shards(), steps=1 if variant == "step by step" else LOOKAHEAD_STEPS)
    state = {"step": 0, "batches": iter(()), "stats": []}

    def next_batch():
        try:
            return next(state["batches"])[0]
        except StopIteration:  # a new epoch
            state["stats"] = []
            state["batches"] = batches.epoch(torch.randperm(len(x), generator=gen), state["step"])
            return next(state["batches"])[0]

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        xb, _, eps_seed = next_batch()
        by_hand = variant not in AUTOGRAD
        if variant in ("bare", "torch.randn"):
            obj, stats = vaebench_elbo(model, xb, torch.randn(len(xb), cfg.latent_dim)), {}
        elif by_hand:
            obj, stats = elbo_step(model, xb, None, eps_seed)
        else:
            obj, stats = model.objective(xb, None, eps_seed)
        loss = -obj.mean()
        if not math.isfinite(loss.item()):
            raise RuntimeError(f"loss is {loss.item()} at step {state['step']}")
        if not by_hand:  # elbo_step has set every .grad
            loss.backward()
        if stats and variant != "no stats":  # kept for the epoch's end, as by the trainer
            state["stats"].append({k: v.detach() for k, v in stats.items()})
        opt.step()
        state["step"] += 1

    return step


def _minimal_step(bundle, seed: int) -> Callable[[], None]:
    """One step of the minimal loop per call (``MinimalLoop.step``), its batches in the order
    of a fresh permutation every epoch, as ``MinimalLoop.epoch`` takes them."""
    loop = MinimalLoop(bundle.x_train, bundle.levels, seed)
    steps = len(loop.x) // BATCH
    state = {"b": 0, "perm": torch.randperm(len(loop.x))}

    def step() -> None:
        if state["b"] == steps:
            state["b"], state["perm"] = 0, torch.randperm(len(loop.x))
        b = state["b"]
        loop.step(loop.x.index_select(0, state["perm"][b * BATCH:(b + 1) * BATCH]))
        state["b"] += 1

    return step


def group_ratios(blocks: dict[str, list[float]], group: int) -> dict[str, dict[str, float]]:
    """Each variant's time over the minimal loop's, summed over ``group`` consecutive rounds
    and paired group by group (``loops.paired_ratio``)."""
    n = len(blocks["minimal"]) // group * group

    def sums(v):
        return np.asarray(v[:n]).reshape(-1, group).sum(axis=1).tolist()

    return {k: paired_ratio(sums(v), sums(blocks["minimal"])) for k, v in blocks.items()}


def main(rounds: int = 100, block: int = 43, group: int = 10, warm: int = 20, seed: int = 0,
         out: Path = ROOT / "reports" / "benchmarks") -> None:
    from vaebench.cells import Cell, run_spec
    from vaebench.io import atomic_write_json, atomic_write_text
    from vaebench.machine import machine_info

    bundle, params = fashion_mnist_study(ROOT, 1)
    spec = run_spec(params, Cell("vae", "fashion-mnist", seed))
    x_bin = torch.bernoulli(torch.from_numpy(np.ascontiguousarray(bundle.x_train)).float()
                            / (bundle.levels - 1))
    from vaebench.nets.linear import resolve_gemm, set_gemm

    gemms = {k: "aten" if k in ATEN else spec.study.gemm
             for k in VARIANTS}
    runs = {k: (_minimal_step(bundle, seed) if k == "minimal" else
                _vaebench_step(spec, bundle, k, x_bin, seed + i))
            for i, k in enumerate(VARIANTS)}
    blocks: dict[str, list[float]] = {k: [] for k in VARIANTS}
    rng = np.random.default_rng(seed)
    for r in range(-1, rounds):  # round -1: each variant's warm-up, untimed
        for k in rng.permutation(list(VARIANTS)):
            set_gemm(gemms[k])  # process-wide; read by each Linear call
            t0 = time.perf_counter()
            for _ in range(block if r >= 0 else warm):
                runs[k]()
            if r >= 0:
                blocks[k].append(time.perf_counter() - t0)

    machine = machine_info(ROOT, gemm=resolve_gemm(spec.study.gemm))
    per_step = {k: float(np.median(v)) / block for k, v in blocks.items()}
    result = {"date": dt.datetime.now().isoformat(timespec="seconds"), "device": machine["cpu"],
              "machine": machine, "rounds": rounds, "block": block, "group": group,
              "block_seconds": blocks, "median_step_us": {k: 1e6 * v for k, v in per_step.items()},
              "over_minimal": group_ratios(blocks, group)}
    name = per_cpu("step_costs")
    atomic_write_json(out / f"{name}.json", result)
    atomic_write_text(out / f"{name}.md", render(result))
    typer.echo(render(result))


def render(result: dict) -> str:
    ratio = result["over_minimal"]
    rows = [f"| {VARIANTS[k]} | {result['median_step_us'][k]:.0f} | {ratio[k]['ratio']:.3f} "
            f"[{ratio[k]['low']:.3f}, {ratio[k]['high']:.3f}] |"
            for k in VARIANTS if k in ratio]  # the table's order, not the json's sorted keys
    return "\n".join([
        "# vaebench's training step, part by part, against the minimal loop's",
        "",
        f"{result['date']}, {result['device']}, {result['machine']['torch_threads']} threads, "
        f"torch {result['machine']['torch']}, vaebench's GEMM library "
        f"`{result['machine'].get('gemm')}` (the minimal loop's: aten). "
        f"Fashion-MNIST, 784-{SIZES[1]}-{SIZES[2]} MLP VAE, batch {BATCH}. {result['rounds']} "
        f"rounds; in each, every variant trains {result['block']} steps, in a fresh seeded "
        "order (`python -m benchmarks.step_costs`).",
        "",
        "| step | median µs per step | x minimal step [95% interval] |",
        "|---|---|---|",
        *rows,
        "",
        f"Ratio: the variant's time over the minimal loop's, summed over {result['group']} "
        "rounds at a time and paired group by group, as the geometric mean over the groups "
        "with its 95% Student-t interval on the log scale. The step alone: no validation, no "
        "checkpoint, no epoch-end averaging.",
        "",
    ])


if __name__ == "__main__":
    typer.run(main)

"""Training throughput: vaebench's loop against its floors and a plain DataLoader loop, one run.

Every loop trains the same 784-400-20 MLP VAE (Bernoulli decoder, binarized Fashion-MNIST,
Adam lr 1e-3, batch 128) for the same number of epochs on the same CPU, interleaved repeat
by repeat so that drift in a shared machine's speed falls on all of them alike:

- vaebench's trainer (``vaebench.train.train``), with its GEMM library as configured and with
  ``study.gemm: aten`` (the BLAS behind ``nn.Linear``); its epoch is timed twice: training
  steps only, and whole (validation and checkpoint included); and once more, for the
  1.1x target, with an epoch of the minimal loop after each of its epochs, paired epoch by
  epoch (``run_epoch_paired``), with each GEMM library (the minimal loop's is aten, so the
  aten pair measures vaebench's own overhead and the other adds the choice of library);
- the minimal eager step loop (``benchmarks.loops.run_minimal``): the framework's own floor;
  the same loop with model and loss under ``torch.compile`` (does compiling the step pay?);
- vaebench's own step in a bare loop (``benchmarks.loops.run_vaebench_compiled``), eager and
  with model and objective under ``torch.compile``: would compiling the trainer's step pay,
  warm-up included? And eager with its backward pass written out (``vaebench.fused_step``):
  does leaving autograd out pay, and how near does it come to the GEMM floor?
- the GEMM floor: the step's GEMMs alone, an epoch's worth, in each library;
- pytorch/examples' loop: a per-item ``Dataset`` (uint8 image -> PIL -> float tensor,
  binarized per item) behind ``DataLoader(shuffle=True)``.

The loops that report a test ELBO do so on the same fixed binarization of the test set.
Afterwards torch.profiler splits an epoch of vaebench's loop and of the minimal loop by kind
of work. Run: ``make bench-train`` (or ``python -m benchmarks.train_throughput --epochs 3``).
Writes ``reports/benchmarks/train_throughput-<vendor>.{json,md}`` (``-amd``, ``-intel``); the
ratios, verdicts and the table come from ``benchmarks.train_report``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer
from torch.utils.data import DataLoader, Dataset

from benchmarks.loops import (
    BATCH,
    MinimalLoop,
    PlainVAE,
    fashion_mnist_study,
    gemm_calls,
    gemm_floor_epoch,
    gemm_flops_per_step,
    per_cpu,
    plain_loss,
    profile_breakdown,
    run_minimal,
    run_vaebench_compiled,
    shuffled,
    step_gemms,
)
from benchmarks.probes import adam_step_us, copy_bandwidth_gbs
from benchmarks.train_report import (
    EPOCH_PAIRS,
    FLOOR_PAIRS,
    LABELS,
    TARGETS,
    ratios,
    render,
    steady,
)

ROOT = Path(__file__).resolve().parents[1]
app = typer.Typer(add_completion=False)


class PerItem(Dataset):
    """One image at a time, the way torchvision's FashionMNIST with ``ToTensor()`` hands it over
    in pytorch/examples: a PIL image per item, converted to a float tensor in [0, 1], then (so
    that both loops optimize the same likelihood) binarized per item."""

    def __init__(self, x: np.ndarray):
        self.x = x.reshape(-1, 28, 28)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        from PIL import Image

        img = Image.fromarray(self.x[i], mode="L")
        t = torch.from_numpy(np.array(img, np.uint8, copy=True)).view(1, 28, 28)
        t = t.float().div(255).view(-1)
        return torch.bernoulli(t)


def gemm_microseconds(repeats: int = 300) -> dict[str, dict[str, float]]:
    """Median microseconds per call of each GEMM of the step (``loops.step_gemms``), in aten
    and, where this torch has it, in oneDNN at every size, the small ones included that
    vaebench's Linear keeps in aten (``ONEDNN_MIN_MACS``): the measurement behind that
    threshold. Keys: "<name> (M x K x N)"."""
    from vaebench.nets.linear import onednn_available

    names = [f"{name} ({m} x {k} x {n})" for name, m, k, n in step_gemms()]
    libs = ["aten"] + (["onednn"] if onednn_available() else [])
    cases = {lib: dict(zip(names, gemm_calls(lib, min_macs=0), strict=True)) for lib in libs}
    out: dict[str, dict[str, float]] = {lib: {} for lib in cases}
    for _ in range(3):  # interleave the libraries; keep each case's best median
        for lib, fns in cases.items():
            for name, fn in fns.items():
                for _ in range(20):
                    fn()
                ts = []
                for _ in range(repeats // 3):
                    t0 = time.perf_counter()
                    fn()
                    ts.append(time.perf_counter() - t0)
                med = float(np.median(ts)) * 1e6
                out[lib][name] = min(out[lib].get(name, math.inf), med)
    return out


def run_baseline(x_train: np.ndarray, x_test: torch.Tensor, epochs: int, seed: int
                 ) -> tuple[list[float], float]:
    """pytorch/examples' loop: seconds per epoch and the test ELBO after training."""
    torch.manual_seed(seed)
    base = PlainVAE()
    opt = torch.optim.Adam(base.parameters(), lr=1e-3)
    loader = DataLoader(PerItem(x_train), batch_size=128, shuffle=True)
    seconds = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for xb in loader:
            logits, mu, logvar = base(xb)
            loss = plain_loss(logits, xb, mu, logvar).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        seconds.append(time.perf_counter() - t0)
    with torch.no_grad():
        torch.manual_seed(seed + 1)
        logits, mu, logvar = base(x_test)
        elbo = float(-plain_loss(logits, x_test, mu, logvar).mean())
    return seconds, elbo


def run_vaebench(spec, bundle, x_test: torch.Tensor, seed: int, tmp: Path
                 ) -> tuple[list[float], list[float], float, str]:
    """vaebench's trainer on ``spec``: seconds per epoch, training steps only and whole
    (validation and checkpoint included; the first from the call), and the test ELBO."""
    from vaebench.nets.linear import current_gemm
    from vaebench.tracking import NullTracker
    from vaebench.train import train

    steps: list[float] = []
    walls: list[float] = [time.perf_counter()]

    def mark(state) -> None:
        steps.append(state.seconds)
        walls.append(time.perf_counter())

    ckpt = tmp / "checkpoint.pt"
    if ckpt.exists():
        ckpt.unlink()
    model, _ = train(spec, bundle, tmp, NullTracker(), "bench", progress=False, on_epoch=mark)
    with torch.no_grad():
        _, stats = model.objective(x_test, None, seed + 1)
    return (np.diff([0.0, *steps]).tolist(), np.diff(walls).tolist(),
            float(stats["elbo"].mean()), current_gemm())


def run_epoch_paired(spec, bundle, seed: int, tmp: Path, floor_lib: str
                     ) -> tuple[list[float], list[float], list[float], list[float], list[float]]:
    """vaebench's trainer on ``spec`` with, after each of its epochs (from ``on_epoch``, after
    validation and checkpoint), one epoch of the minimal loop, one epoch of the GEMM floor in
    ``floor_lib`` (the trainer's own library), a copy-bandwidth probe and an Adam-step probe:
    the seconds of each whole vaebench epoch, of the minimal and floor epochs beside it, the
    GB/s and the Adam step's microseconds. A shared machine's speed drifts within a minute;
    epochs side by side see the same speed, so their ratio, pooled over epochs, carries the
    least of the drift (``epoch_pairs.epoch_paired``), and the probes tell the machine's
    states apart (``epoch_pairs.by_bandwidth``)."""
    from vaebench.tracking import NullTracker
    from vaebench.train import train

    minimal = MinimalLoop(bundle.x_train, bundle.levels, seed)
    n_steps = len(bundle.x_train) // BATCH
    mine: list[float] = []
    theirs: list[float] = []
    floor: list[float] = []
    gbs: list[float] = []
    adam_us: list[float] = []
    start = [time.perf_counter()]

    def mark(state) -> None:
        mine.append(time.perf_counter() - start[0])
        theirs.append(minimal.epoch())
        floor.append(gemm_floor_epoch(floor_lib, n_steps))
        gbs.append(copy_bandwidth_gbs())
        adam_us.append(adam_step_us())
        start[0] = time.perf_counter()

    ckpt = tmp / "checkpoint.pt"
    if ckpt.exists():
        ckpt.unlink()
    train(spec, bundle, tmp, NullTracker(), "bench", progress=False, on_epoch=mark)
    return mine, theirs, floor, gbs, adam_us


FRESH_PROCESS = """
import sys, torch
from pathlib import Path
from benchmarks.loops import fashion_mnist_study, run_vaebench_compiled
from vaebench.cells import Cell, run_spec
if int(sys.argv[3]):
    torch.set_num_threads(int(sys.argv[3]))
bundle, params = fashion_mnist_study(Path(sys.argv[1]), 1)
spec = run_spec(params, Cell("vae", "fashion-mnist", 0))
run_vaebench_compiled(spec, bundle, 1, 0, compiled=bool(int(sys.argv[2])))
"""


def fresh_process_seconds(compiled: bool, threads: int) -> float:
    """Wall seconds of a new Python process that loads the data and trains vaebench's loop
    (``run_vaebench_compiled``) for one epoch, eager or compiled: what a train stage pays
    before its first step, imports and (compiled) dynamo's tracing and inductor's cache load
    included (the cache as ``TORCHINDUCTOR_CACHE_DIR`` finds it)."""
    import subprocess
    import sys

    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(ROOT), str(int(compiled)),
                    str(threads)], check=True, cwd=ROOT)
    return time.perf_counter() - t0


def minimal_elbo(model, x_test: torch.Tensor, seed: int) -> float:
    with torch.no_grad():
        torch.manual_seed(seed + 1)
        logits, mu, logvar = model(x_test)
        return float(-plain_loss(logits, x_test, mu, logvar).mean())


@app.command()
def main(epochs: int = 3, repeats: int = 6, seed: int = 0,
         paired_epochs: int = typer.Option(8, min=2, help="epochs of each epoch-paired run "
                                           "(its first is left out of the pairs)"),
         out: Path = ROOT / "reports" / "benchmarks",
         threads: int = typer.Option(0, help="torch threads (0: torch's default)"),
         rerender: Annotated[Path | None, typer.Option(
             help="measure nothing: recompute the ratios of this train_throughput-*.json and "
                  "rewrite it and its .md")] = None) -> None:
    from vaebench.io import atomic_write_json, atomic_write_text

    if rerender is not None:
        result = json.loads(rerender.read_text())
        result.update(ratios(result))
        atomic_write_json(rerender, result)
        atomic_write_text(rerender.with_suffix(".md"),
                          render(result, result["gemm"]["vaebench"], seed))
        return
    if threads:
        torch.set_num_threads(threads)
    load_start = os.getloadavg()[0]
    from vaebench.cells import Cell, run_spec
    from vaebench.config import load_params
    from vaebench.inputs import fixed_inputs
    from vaebench.machine import machine_info
    from vaebench.nets.linear import onednn_available, resolve_gemm

    bundle, params = fashion_mnist_study(ROOT, epochs)
    cell = Cell("vae", "fashion-mnist", seed)
    auto = resolve_gemm("auto")
    other = "onednn" if auto == "aten" else "aten"
    paired = params.model_copy(update={"train": {**params.train, "vae": {
        **params.train["vae"], "epochs": paired_epochs}}})
    specs = {"vaebench": run_spec(params, cell), "vaebench paired": run_spec(paired, cell)}
    if other == "aten" or onednn_available():  # the GEMM library 'auto' did not pick
        gemm = {"study": params.study.model_copy(update={"gemm": other})}
        specs["vaebench other"] = run_spec(params.model_copy(update=gemm), cell)
        specs["vaebench paired other"] = run_spec(paired.model_copy(update=gemm), cell)
    x_test = fixed_inputs(bundle, bundle.x_test, "bernoulli")
    tmp = ROOT / ".cache" / "bench-train"
    n_steps = len(bundle.x_train) // 128
    libs = ["aten"] + (["onednn"] if onednn_available() else [])

    seconds: dict[str, list[list[float]]] = {k: [] for k in LABELS}
    elbos: dict[str, float] = {}
    gemms: dict[str, str] = {}
    copy_gbs: dict[str, list[list[float]]] = {}  # beside each epoch-paired run's epochs
    adam_us: dict[str, list[list[float]]] = {}
    def vaebench(name: str) -> None:
        steps, whole, elbos[name], gemms[name] = run_vaebench(specs[name], bundle, x_test,
                                                              seed, tmp)
        seconds[name].append(whole)
        seconds[f"{name} steps"].append(steps)

    def minimal(name: str, dynamic: bool = False, compiled: bool = False) -> None:
        s, model = run_minimal(bundle.x_train, bundle.levels, epochs, seed, dynamic=dynamic,
                               compiled=compiled)
        seconds[name].append(s)
        elbos[name] = minimal_elbo(model, x_test, seed)

    def vaebench_loop(name: str, compiled: bool, by_hand: bool = False) -> None:
        s, model = run_vaebench_compiled(specs["vaebench"], bundle, epochs, seed, compiled,
                                         by_hand)
        seconds[name].append(s)
        with torch.no_grad():
            elbos[name] = float(model.objective(x_test, None, seed + 1)[1]["elbo"].mean())

    def vaebench_paired(name: str) -> None:
        lib = resolve_gemm(specs[name].study.gemm)
        mine, theirs, floor, gbs, adam = run_epoch_paired(specs[name], bundle, seed, tmp, lib)
        seconds[name].append(mine)
        seconds[EPOCH_PAIRS[name]].append(theirs)
        seconds[FLOOR_PAIRS[name]].append(floor)
        copy_gbs.setdefault(name, []).append(gbs)
        adam_us.setdefault(name, []).append(adam)

    def dataloader() -> None:
        s, elbos["dataloader"] = run_baseline(bundle.x_train, x_test, epochs, seed)
        seconds["dataloader"].append(s)

    def gemm_floor(lib: str) -> None:
        seconds[f"gemm floor {lib}"].append([gemm_floor_epoch(lib, n_steps)
                                             for _ in range(epochs)])

    runs = {"vaebench": lambda: vaebench("vaebench"),
            "minimal": lambda: minimal("minimal"),
            "minimal dynamic": lambda: minimal("minimal dynamic", dynamic=True),
            "minimal compiled": lambda: minimal("minimal compiled", compiled=True),
            "vaebench loop eager": lambda: vaebench_loop("vaebench loop eager", False),
            "vaebench loop compiled": lambda: vaebench_loop("vaebench loop compiled", True),
            "vaebench loop by hand": lambda: vaebench_loop("vaebench loop by hand", False, True),
            "vaebench paired": lambda: vaebench_paired("vaebench paired"),
            "dataloader": dataloader,
            **{f"gemm floor {lib}": lambda lib=lib: gemm_floor(lib) for lib in libs}}
    if "vaebench other" in specs:
        runs["vaebench other"] = lambda: vaebench("vaebench other")
        runs["vaebench paired other"] = lambda: vaebench_paired("vaebench paired other")
    for repeat in range(repeats):  # one run of every loop, in a fresh order each repeat
        for name in shuffled(list(runs), seed + repeat):
            runs[name]()
    seconds = {k: v for k, v in seconds.items() if v}
    med = {k: steady(v) for k, v in seconds.items()}
    fresh: dict[str, list[float]] = {"eager": [], "compiled": []}
    for repeat in range(repeats):  # after the loops above: inductor's cache is warm
        for mode in shuffled(list(fresh), seed + repeat):
            fresh[mode].append(fresh_process_seconds(mode == "compiled", threads))
    breakdown = {
        "vaebench": profile_breakdown(lambda: run_vaebench(specs["vaebench"], bundle, x_test,
                                                           seed, tmp)),
        "minimal": profile_breakdown(lambda: run_minimal(bundle.x_train, bundle.levels,
                                                         epochs, seed)),
    }
    gemm_us = gemm_microseconds()
    machine = machine_info(ROOT, gemm=gemms.get("vaebench"))
    result = {
        "date": dt.date.today().isoformat(), "device": machine["cpu"], "machine": machine,
        "threads": torch.get_num_threads(), "torch": torch.__version__, "epochs": epochs,
        "paired_epochs": paired_epochs, "repeats": repeats, "n_train": len(bundle.x_train),
        "steps_per_epoch": n_steps,
        "backend": specs["vaebench"].study.backend, "gemm": gemms, "gemm_other": other,
        "epoch_seconds": seconds, "steady_epoch_seconds": med, "test_elbo": elbos,
        "gemm_floor_gflops": {f"gemm floor {lib}": gemm_flops_per_step() * n_steps
                              / med[f"gemm floor {lib}"] / 1e9 for lib in libs},
        "targets": TARGETS, "breakdown_seconds": breakdown, "order": "shuffled",
        "load_average": [load_start, os.getloadavg()[0]],
        "gemm_microseconds": gemm_us,
        "copy_gbs_paired": copy_gbs,
        "adam_us_paired": adam_us,
        "fresh_process_one_epoch_seconds": fresh,
        "study_epochs": {"vae-fashion-mnist": run_spec(load_params(ROOT / "params.yaml"), cell)
                         .train.total_epochs(len(bundle.x_train))},
    }
    name = per_cpu("train_throughput")
    atomic_write_json(out / f"{name}.json", result)  # the measurements first, then ratios
    result.update(ratios(result))
    atomic_write_json(out / f"{name}.json", result)
    md = render(result, gemms.get("vaebench", "auto"), seed)
    atomic_write_text(out / f"{name}.md", md)
    typer.echo(md)


if __name__ == "__main__":
    app()

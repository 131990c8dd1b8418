"""Importance-sampled NLL: vaebench's evaluation against a straightforward batched PyTorch one.

One 784-400-20 VAE, trained for a few epochs by vaebench's trainer on Fashion-MNIST, is
evaluated on the first ``points`` test points (binarized once) with L_K (Burda et al. 2016,
eq. 8), K = ``k`` samples per point, by:

- ``straightforward``: what a user would write: encode once, then per chunk of ``k_chunk``
  samples draw eps with ``torch.randn``, run the decoder once on all (sample, point) rows,
  and sum ``binary_cross_entropy_with_logits`` and two ``Normal.log_prob``; the decoder is an
  ``nn.Sequential`` of ``nn.Linear`` layers holding the same weights;
- ``vaebench.evaluate.importance_log_weights``: the plain reference path on the model's own
  ``terms`` (the evaluate stage checks the fast path against it on every run);
- ``vaebench.importance.importance_log_weights`` (what the evaluate stage runs) with the
  model's backend ``eager`` and ``compile`` (the same draws as the evaluate stage's), and
  with ``compile`` and the GEMM library forced to ``aten`` (the BLAS the straightforward
  evaluation's ``nn.Linear`` uses: the speed-up without oneDNN, as on CPUs where MKL is as
  fast).

They run interleaved, ``repeats`` times; the table gives median seconds, the speed-up over
the straightforward evaluation, and each L_K with its standard error over points.
Run: ``python -m benchmarks.is_nll``. Writes ``reports/benchmarks/is_nll-<vendor>.{json,md}``
(``-amd``, ``-intel``).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import typer
from torch import nn
from torch.distributions import Normal

from benchmarks.loops import (
    fashion_mnist_study,
    interval_verdict,
    paired_ratio,
    per_cpu,
    shuffled,
)

ROOT = Path(__file__).resolve().parents[1]
app = typer.Typer(add_completion=False)
TARGET = 2.0  # vaebench's fast evaluation over the straightforward one, at least


@torch.no_grad()
def straightforward_log_weights(encoder: nn.Module, decoder: nn.Module, x: torch.Tensor,
                                k: int, k_chunk: int) -> torch.Tensor:
    """log w (K, N): torch.randn noise, one decoder pass per chunk of samples."""
    mu, logvar = encoder(x).chunk(2, dim=-1)
    std = torch.exp(0.5 * logvar)
    rows = []
    for k0 in range(0, k, k_chunk):
        kk = min(k_chunk, k - k0)
        z = mu + std * torch.randn(kk, *mu.shape)
        logits = decoder(z)
        log_px = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits),
                                                     reduction="none").sum(-1)
        log_pz = Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_qz = Normal(mu, std).log_prob(z).sum(-1)
        rows.append(log_px + log_pz - log_qz)
    return torch.cat(rows)


def plain_copy(model) -> tuple[nn.Module, nn.Module]:
    """The model's encoder and decoder as nn.Sequential of nn.Linear with the same weights."""
    def copy(net: nn.Sequential) -> nn.Sequential:
        layers = []
        for layer in net:
            if isinstance(layer, nn.Linear):
                new = nn.Linear(layer.in_features, layer.out_features)
                new.load_state_dict(layer.state_dict())
                layers.append(new)
            else:
                layers.append(layer)
        return nn.Sequential(*layers)

    return copy(model.encoder.net).eval(), copy(model.decoder.net).eval()


def bound(log_w: torch.Tensor) -> tuple[float, float]:
    """Mean L_K over points and its standard error over points."""
    per_point = torch.logsumexp(log_w.double(), 0) - math.log(len(log_w))
    return float(per_point.mean()), float(per_point.std() / math.sqrt(per_point.numel()))


@app.command()
def main(k: int = 500, points: int = 500, k_chunk: int = 100, bs: int = 500, repeats: int = 5,
         train_epochs: int = 2, seed: int = 0,
         out: Path = ROOT / "reports" / "benchmarks",
         threads: int = typer.Option(0, help="torch threads (0: torch's default)")) -> None:
    if threads:
        torch.set_num_threads(threads)
    load_start = os.getloadavg()[0]
    from vaebench import evaluate, importance
    from vaebench.cells import Cell, run_spec
    from vaebench.inputs import fixed_inputs
    from vaebench.io import atomic_write_json, atomic_write_text
    from vaebench.machine import machine_info
    from vaebench.nets.linear import current_gemm, set_gemm
    from vaebench.tracking import NullTracker
    from vaebench.train import train

    bundle, params = fashion_mnist_study(ROOT, train_epochs)
    spec = run_spec(params, Cell("vae", "fashion-mnist", seed))
    tmp = ROOT / ".cache" / "bench-is"
    (tmp / "checkpoint.pt").unlink(missing_ok=True)
    model, _ = train(spec, bundle, tmp, NullTracker(), "bench-is", progress=False)
    model.eval()
    x = fixed_inputs(bundle, bundle.x_test, "bernoulli")[:points]
    encoder, decoder = plain_copy(model)

    gemm = current_gemm()

    def run_fast(backend: str, lib: str = gemm):
        def fn():
            model.backend = backend
            set_gemm(lib)
            try:
                return importance.importance_log_weights(model, x, None, k, seed, bs, k_chunk)
            finally:
                set_gemm(gemm)
        return fn

    def run_evaluate():
        model.backend = spec.study.backend
        return evaluate.importance_log_weights(model, x, None, k, seed, bs, k_chunk)

    torch.manual_seed(seed)
    loops = {
        "straightforward": lambda: straightforward_log_weights(encoder, decoder, x, k, k_chunk),
        "evaluate": run_evaluate,
        "importance eager": run_fast("eager"),
        "importance compile": run_fast("compile"),
        "importance compile aten": run_fast("compile", "aten"),
    }
    run_fast("compile")()  # compiles the compile backend's graphs before any timing
    seconds: dict[str, list[float]] = {name: [] for name in loops}
    bounds: dict[str, tuple[float, float]] = {}
    for repeat in range(repeats):  # every evaluation once, in a fresh order each repeat
        for name in shuffled(list(loops), seed + repeat):
            t0 = time.perf_counter()
            log_w = loops[name]()
            seconds[name].append(time.perf_counter() - t0)
            bounds[name] = bound(log_w)
    med = {name: float(np.median(v)) for name, v in seconds.items()}
    # the straightforward evaluation's time over each one's, repeat by repeat, with an interval
    speedup = {name: paired_ratio(seconds["straightforward"], v) for name, v in seconds.items()}
    machine = machine_info(ROOT, gemm=gemm)
    result = {"date": dt.date.today().isoformat(), "device": machine["cpu"], "machine": machine,
              "threads": torch.get_num_threads(), "k": k, "points": points, "k_chunk": k_chunk,
              "study_backend": spec.study.backend, "gemm": gemm, "seconds": seconds,
              "median_seconds": med, "speedup": speedup, "L_K": bounds, "target": TARGET,
              "train_epochs": train_epochs,
              "load_average": [load_start, os.getloadavg()[0]]}
    report = per_cpu("is_nll")
    atomic_write_json(out / f"{report}.json", result)
    md = render(result)
    atomic_write_text(out / f"{report}.md", md)
    typer.echo(md)


def render(r: dict) -> str:
    """The page of one run (``reports/benchmarks/is_nll-<vendor>.md``), from its json."""
    labels = {
        "straightforward": "straightforward batched PyTorch (torch.randn, one decoder pass per "
                           f"chunk of {r['k_chunk']} samples, nn.Linear, BCE with logits)",
        "evaluate": f"vaebench.evaluate.importance_log_weights (backend `{r['study_backend']}`)",
        "importance eager": "vaebench.importance.importance_log_weights, backend `eager`",
        "importance compile": "vaebench.importance.importance_log_weights, backend `compile`",
        "importance compile aten": "the same with `study.gemm: aten` (nn.Linear's BLAS, as the "
                                   "straightforward evaluation)",
    }
    rows = []
    for name in (n for n in labels if n in r["seconds"]):
        up, (lk, se) = r["speedup"][name], r["L_K"][name]
        mark = (f" ({interval_verdict(up, r['target'], at_least=True)})"
                if name.startswith("importance") else "")
        rows.append(f"| {labels[name]} | {r['median_seconds'][name]:.2f} | {up['ratio']:.2f} "
                    f"[{up['low']:.2f}, {up['high']:.2f}]{mark} | "
                    f"{', '.join(f'{t:.2f}' for t in r['seconds'][name])} | "
                    f"{-lk:.2f} +- {se:.2f} |")
    load, machine = r["load_average"], r["machine"]
    return "\n".join([
        "# Importance-sampled NLL: vaebench against a straightforward batched evaluation",
        "",
        f"{r['date']}, {machine['cpu']}, {r['threads']} threads, torch {machine['torch']}, "
        f"GEMM library `{r['gemm']}`, load average {load[0]:.1f} at the start and "
        f"{load[1]:.1f} at the end (2 cores, shared). 784-400-20 VAE trained "
        f"{r['train_epochs']} epochs by vaebench on Fashion-MNIST; NLL = -L_K with K = "
        f"{r['k']} on the first {r['points']} test points (binarized once); "
        f"{len(r['seconds']['straightforward'])} runs of each evaluation, interleaved in a "
        "fresh seeded order each repeat. Target: at least "
        f"{r['target']:g}x the straightforward evaluation. Speed-up: the straightforward "
        "evaluation's time over this one's, repeat by repeat, as the geometric mean with its "
        "95% Student-t interval on the log scale; met when the whole interval lies at or above "
        "the target, missed when it lies below, undecided otherwise.",
        "",
        "| evaluation | median s | speed-up | seconds, run by run | NLL (nats) +- SE over "
        "points |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "The vaebench evaluations draw the same eps (Philox, per sample-chunk and point-batch "
        "seeds: the common random numbers behind every L_k); the straightforward one draws "
        "its own, so its NLL differs by Monte Carlo noise only.",
        "",
    ])

if __name__ == "__main__":
    app()

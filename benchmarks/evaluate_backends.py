"""The evaluate stage with each latent backend, on the user's footing: the stage's own command
(``python -m pipelines.evaluate MODEL DATASET --seed 0``) in a fresh process, timed whole
(imports, data, the model checks, the IS NLL at ``evaluate.iw_k``, MI, pictures), for one cell
of the default study trained at its real length.

- ``eager``: the study's default backend;
- ``compile, cold cache``: a fresh inductor cache, as the first stage of a study pays;
- ``compile, warm cache``: the cache an earlier stage left (every stage of a study shares
  ``.cache/inductor``: ``pipelines.common`` sets ``TORCHINDUCTOR_CACHE_DIR``), warmed once
  before the timing.

The modes run in a fresh seeded order each repeat; compile's speed-up is eager's time over its
own, paired repeat by repeat, with a 95% t-interval (``benchmarks.loops``): compile pays for
the stage where the whole interval lies above 1. Run:

    python -m benchmarks.evaluate_backends --cell vae-fashion-mnist --repeats 3

Writes ``reports/benchmarks/evaluate_backends-<vendor>.{json,md}``.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import sys
import tempfile
from pathlib import Path

import typer
import yaml

from benchmarks.loops import interval_verdict, paired_ratio, per_cpu, shuffled
from benchmarks.probes import gemm_probe_us
from benchmarks.services import ROOT, scratch_project, timed_run

OUT = ROOT / "reports" / "benchmarks"
MODES = ("eager", "compile, cold cache", "compile, warm cache")
STAGE_TIMEOUT_S = 3600  # a stage runs minutes; past an hour it has hung (reported, not awaited)
app = typer.Typer(add_completion=False)


def one_cell(params_text: str, model: str, dataset: str) -> str:
    """The default study cut to ``model`` on ``dataset``, seed 0, no linear cells; epochs,
    sizes and the evaluate block unchanged."""
    raw = yaml.safe_load(params_text)
    for key, value, valid in (("models", model, raw["study"]["models"]),
                              ("datasets", dataset, raw["study"]["datasets"])):
        if value not in valid:
            sys.exit(f"error: {key[:-1]} {value!r} is not in the study; valid choices: "
                     + ", ".join(valid))
    raw["study"].update(models=[model], datasets=[dataset], seeds=[0], linear=[])
    return yaml.safe_dump(raw, sort_keys=False)


def with_backend(params_text: str, backend: str) -> str:
    raw = yaml.safe_load(params_text)
    raw["study"]["backend"] = backend
    return yaml.safe_dump(raw, sort_keys=False)


def speedups(seconds: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Each compile mode's speed-up over eager (eager's time over its own), paired repeat by
    repeat, with its interval and the verdict against 1 (pays, does not pay, undecided)."""
    out = {}
    for mode in MODES[1:]:
        iv = paired_ratio(seconds["eager"], seconds[mode])
        verdict = interval_verdict(iv, 1.0, at_least=True)
        out[mode] = {**iv, "verdict": {"met": "pays", "missed": "does not pay"}.get(verdict,
                                                                                   verdict)}
    return out


def render(result: dict) -> str:
    rows = [f"| {mode} | {statistics.median(result['seconds'][mode]):.1f} | "
            + (f"{result['speedup'][mode]['ratio']:.2f} [{result['speedup'][mode]['low']:.2f}, "
               f"{result['speedup'][mode]['high']:.2f}], {result['speedup'][mode]['verdict']}"
               if mode in result["speedup"] else "1.00")
            + " | " + ", ".join(f"{t:.1f}" for t in result["seconds"][mode]) + " |"
            for mode in MODES]
    return "\n".join([
        "# The evaluate stage with each latent backend", "",
        f"{result['date']}, {result['device']}, {result['cores']} cores, torch "
        f"{result['torch']}, load average {result['load_average'][0]:.1f} at the start and "
        f"{result['load_average'][1]:.1f} at the end; GEMM probe (one 128 x 784 x 400 GEMM, "
        f"median) {', '.join(f'{p:.0f}' for p in result['gemm_probe_us'])} us, one per "
        "repeat. Made by `python -m benchmarks.evaluate_backends` (benchmarks/"
        "evaluate_backends.py).", "",
        f"The stage `evaluate@{result['cell']}-0` of `{result['params']}`, cut to that cell "
        f"(trained at that study's length; IS NLL with K = {result['iw_k']} on "
        f"{result['iw_points']} test points, "
        "and every other metric and check of the stage), run as its own command in a fresh "
        f"process, timed whole; {result['repeats']} repeats, the modes in a fresh seeded "
        "order each repeat. Cold cache: a fresh inductor cache directory. Warm cache: one "
        "that an earlier run of the stage filled, as the stages of a study share "
        "`.cache/inductor`.", "",
        "| backend | median s | speed-up over eager, paired [95% interval], verdict | "
        "seconds, run by run |",
        "|---|---|---|---|", *rows, "",
        "Speed-up: eager's time over this mode's, repeat by repeat, as the geometric mean with "
        "its 95% Student-t interval on the log scale; compile pays for the stage when the "
        "whole interval lies above 1, does not when it lies below, and is undecided otherwise.",
        ""])


@app.command()
def main(cell: str = "vae-fashion-mnist", repeats: int = 3, seed: int = 0,
         params: str = typer.Option("params.yaml", help="the study whose cell is timed "
                                    "(presets/tiny.yaml: a smoke run)"),
         out: Path = OUT) -> None:
    from vaebench.io import atomic_write_json, atomic_write_text
    from vaebench.machine import cpu_model

    model, _, dataset = cell.partition("-")
    base = one_cell((ROOT / params).read_text(), model, dataset)
    load_start = os.getloadavg()[0]
    seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
    probes: list[float] = []
    with tempfile.TemporaryDirectory(prefix="vaebench-eval-backends-") as tmp:
        work, warm = Path(tmp) / "project", Path(tmp) / "inductor-warm"
        work.mkdir()
        env = scratch_project(work, base)
        timed_run(["dvc", "repro", f"train@{cell}-0"], work, env, STAGE_TIMEOUT_S)
        stage = [sys.executable, "-m", "pipelines.evaluate", model, dataset, "--seed", "0",
                 "--no-track"]

        def evaluate(mode: str, label: str) -> float:
            backend = "eager" if mode == "eager" else "compile"
            (work / "params.yaml").write_text(with_backend(base, backend))
            cache = warm if mode != "compile, cold cache" else Path(tempfile.mkdtemp(dir=tmp))
            print(f"{label}: {mode} ...", flush=True)  # a hang shows where it is
            return timed_run(stage, work, {**env, "TORCHINDUCTOR_CACHE_DIR": str(cache)},
                             STAGE_TIMEOUT_S)

        evaluate("compile, warm cache", "warm-up")  # fills the warm cache; not timed
        for repeat in range(repeats):
            probes.append(gemm_probe_us())
            for mode in shuffled(list(MODES), seed + repeat):
                seconds[mode].append(evaluate(mode, f"repeat {repeat}"))
                print(f"repeat {repeat}: {mode} {seconds[mode][-1]:.1f} s", flush=True)
    import torch

    raw = yaml.safe_load(base)
    result = {"date": dt.date.today().isoformat(), "device": cpu_model(), "params": params,
              "cores": os.cpu_count(), "torch": torch.__version__, "cell": cell,
              "iw_k": raw["evaluate"]["iw_k"], "iw_points": raw["evaluate"]["iw_points"],
              "repeats": repeats, "seconds": seconds, "speedup": speedups(seconds),
              "gemm_probe_us": probes, "load_average": [load_start, os.getloadavg()[0]]}
    name = per_cpu("evaluate_backends")
    atomic_write_json(out / f"{name}.json", result)
    atomic_write_text(out / f"{name}.md", render(result))


if __name__ == "__main__":
    app()

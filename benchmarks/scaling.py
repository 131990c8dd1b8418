"""Scaling out, measured on this machine: DVC's queue against one `dvc repro`, Ray's overhead
per task, and MLflow's time per logged metric on PostgreSQL against SQLite.

    python -m benchmarks.scaling queue      # a small study as queued experiments on 2 workers vs dvc repro
    python -m benchmarks.scaling ray        # a Ray task's round trip, and the sweep's task vs direct
    python -m benchmarks.scaling tracking   # ms per logged metric: SQLite, PostgreSQL, a server on each
    python -m benchmarks.scaling report     # reports/benchmarks/scaling.md from scaling.json

Each part adds its results, with the date, the CPU and the load average, to
reports/benchmarks/scaling.json and rewrites scaling.md. Repeats are interleaved and medians
reported: the machine is shared and noisy.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import typer

from benchmarks.probes import gemm_probe_us
from benchmarks.scaling_report import MODES, STORES, render
from benchmarks.services import (
    ROOT,
    Postgres,
    mlflow_server,
    scratch_code_digest,
    scratch_project,
    timed_run,
)
from vaebench.io import atomic_write_json, atomic_write_text, read_json
from vaebench.machine import cpu_model
from vaebench.queue import stop_workers

OUT = ROOT / "reports" / "benchmarks"
app = typer.Typer(add_completion=False, no_args_is_help=True)


def _stamp() -> dict:
    return {"date": dt.date.today().isoformat(), "cpu": cpu_model(), "cores": os.cpu_count(),
            "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()]}


def _save(part: str, result: dict) -> None:
    path = OUT / "scaling.json"
    results = read_json(path) if path.exists() else {}
    results[part] = {**_stamp(), **result}
    atomic_write_json(path, results)
    write_report(results)


HALF_TIMEOUT_S = 6 * 3600  # the whole study on a slow day is under 4 h; past 6 it has hung


# -- DVC's queue -------------------------------------------------------------------------------
def reduced_study(params: str) -> str:
    """``params`` (presets/tiny.yaml) cut to the vae on digits (2 epochs) and the beta sweep at
    beta 1.0, every seed kept: 2 runs per seed, a stage in seconds on an idle machine."""
    import yaml

    raw = yaml.safe_load((ROOT / params).read_text())
    raw["study"].update(models=["vae"], datasets=["digits"], linear=[])
    raw["train"]["vae"]["epochs"] = 2
    raw["sweep"]["betas"] = [1.0]
    return yaml.safe_dump(raw, sort_keys=False)


def study_slice(params: str, datasets: list[str]) -> str:
    """``params`` unchanged (epochs, sizes, seeds) but for the grid's datasets, cut to
    ``datasets``, and no linear cells: a slice of the study whose stages are full length."""
    import yaml

    raw = yaml.safe_load((ROOT / params).read_text())
    unknown = [d for d in datasets if d not in raw["study"]["datasets"]]
    if unknown:
        sys.exit(f"error: dataset(s) {', '.join(unknown)} not in {params}; valid choices: "
                 + ", ".join(raw["study"]["datasets"]))
    raw["study"].update(datasets=datasets, linear=[])
    return yaml.safe_dump(raw, sort_keys=False)


HALVES = {"both": MODES, "repro": MODES[:1], "queue": MODES[1:]}
SETUP = ("params", "reduced", "datasets", "targets", "seeds", "stages")  # what a pair must share


def check_same_setup(saved: dict, new: dict) -> None:
    """Raise unless ``saved`` and ``new`` (queue parts, or ``new`` a bare setup) measured the
    same setup (``SETUP``), so that a half of one may be paired with a half of the other."""
    differs = [k for k in SETUP if saved.get(k) != new.get(k)]
    if differs:
        raise ValueError(f"the saved part measured another setup ({', '.join(differs)} "
                         "differ); measure both halves (--half both) or move scaling.json's "
                         "part aside")


def merge_half(saved: dict | None, new: dict, modes: tuple[str, ...]) -> dict:
    """``new`` (a queue part measuring ``modes``) with the other half kept from ``saved``, the
    part scaling.json holds, when it measured the same setup (``SETUP``). Each mode keeps its
    own stamp (``half_stamps``: date, CPU, load, commit, code digest), so that a pair measured
    in two sessions says so, and is only paired where CPU and code agree
    (``scaling_report.pairing``)."""
    if saved is None or set(modes) == set(MODES):
        return new
    check_same_setup(saved, new)
    merged = {**new, "seconds": dict(new["seconds"]), "gemm_probe_us": dict(new["gemm_probe_us"]),
              "half_stamps": dict(new["half_stamps"])}
    for mode in MODES:
        if mode not in modes:
            merged["seconds"][mode] = saved["seconds"].get(mode, [])
            merged["gemm_probe_us"][mode] = saved.get("gemm_probe_us", {}).get(mode, [])
            stamp = saved.get("half_stamps", {}).get(mode)
            if stamp is None and merged["seconds"][mode]:  # saved before halves had stamps
                stamp = {k: saved[k] for k in ("date", "cpu", "cores", "load_average_1_5_15")}
            if stamp is not None:
                merged["half_stamps"][mode] = stamp
    merged["repeats"] = min(len(v) for v in merged["seconds"].values())
    merged["median_seconds"] = {k: statistics.median(v) for k, v in merged["seconds"].items()
                                if v}
    return merged


@app.command()
def queue(params: str = "presets/tiny.yaml", repeats: int = 2, reduce: bool = True,
          targets: str = "evaluate evaluate_sweep",
          datasets: str = typer.Option("", help="with --no-reduce: keep only these grid "
                                       "datasets (comma-separated) and no linear cells; saved "
                                       "as its own part, queue_slice; with --no-reduce and no "
                                       "datasets, the whole study is saved as queue_whole"),
          half: str = typer.Option("both", help="both, repro or queue: with one half, the "
                                   "other is kept from scaling.json when it measured the same "
                                   "setup, so that a pair too long for one sitting is "
                                   "measured in two")) -> None:
    """The study of ``params`` as one queued experiment per seed on 2 workers (1 torch thread
    each), against one `dvc repro` of all seeds (torch's default threads), each from a cold
    start in a fresh copy; both reproduce ``targets`` (the runs; the report is left out)."""
    import yaml

    from vaebench.machine import git_commit

    if half not in HALVES:
        sys.exit(f"error: --half {half!r} is not one of: {', '.join(HALVES)}")
    kept = [d.strip() for d in datasets.split(",") if d.strip()]
    text = (reduced_study(params) if reduce else study_slice(params, kept) if kept
            else (ROOT / params).read_text())
    seeds = yaml.safe_load(text)["study"]["seeds"]
    stages = targets.split()
    modes = HALVES[half]
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    probes: dict[str, list[float]] = {mode: [] for mode in modes}
    stamps: dict[str, dict] = {}
    part = "queue" if reduce else "queue_slice" if kept else "queue_whole"
    saved = read_json(OUT / "scaling.json").get(part) if (OUT / "scaling.json").exists() else None
    setup = {"params": params, "reduced": reduce, "datasets": kept, "targets": stages,
             "seeds": seeds, "stages": _stage_count(text, stages)}
    if half != "both" and saved is not None:
        try:  # refused before hours are spent, not after
            check_same_setup(saved, setup)
        except ValueError as err:
            sys.exit(f"error: --half {half} into {part}: {err}")
    for _ in range(repeats):
        for mode in modes:
            probes[mode].append(gemm_probe_us())  # the machine's speed as this half starts
            stamps[mode] = {**_stamp(), "commit": git_commit(ROOT),
                            "code_digest": scratch_code_digest(text)}
            # the queue's workers linger a few seconds after it empties, writing to .dvc/tmp
            with tempfile.TemporaryDirectory(prefix="vaebench-scaling-",
                                             ignore_cleanup_errors=True) as tmp:
                work = Path(tmp)
                env = scratch_project(work, text)
                if mode == "dvc repro":
                    times[mode].append(timed_run(["dvc", "repro", *stages], work, env,
                                                 HALF_TIMEOUT_S))
                else:
                    t0 = time.perf_counter()
                    for seed in seeds:  # one experiment per seed, as a user splits a study
                        timed_run(["dvc", "exp", "run", "--queue", "-S",
                                   f"study.seeds=[{seed}]", *stages], work, env, 600)
                    timed_run([sys.executable, "-m", "vaebench.cli", "queue", "-j", "2"], work,
                              env, HALF_TIMEOUT_S)
                    times[mode].append(time.perf_counter() - t0)
                    stop_workers(work)  # vaebench queue has ended them; a failed run may not
            print(mode, f"{times[mode][-1]:.1f} s", flush=True)
            # saved after every half: a session cut short keeps what it measured
            _save(part, merge_half(saved, {
                **setup, "repeats": min(len(v) for v in times.values()), "seconds": times,
                "gemm_probe_us": probes, "half_stamps": stamps,
                "median_seconds": {k: statistics.median(v) for k, v in times.items() if v}},
                modes))


GROUP_OF_TARGET = {"evaluate": "grid", "evaluate_sweep": "sweep", "evaluate_linear": "linear"}


def _stage_count(text: str, targets: list[str]) -> int:
    """How many train and evaluate stages ``targets`` reproduce for this params text."""
    import yaml

    from vaebench.cells import cells
    from vaebench.config import parse_params

    groups = {GROUP_OF_TARGET[t] for t in targets if t in GROUP_OF_TARGET}
    return 2 * sum(c.group in groups for c in cells(parse_params(yaml.safe_load(text))))


# -- Ray ---------------------------------------------------------------------------------------
@app.command()
def ray(tasks: int = 40) -> None:
    """A no-op task's round trip on a local Ray instance (2 CPUs), and the sweep's task
    (``vaebench.sweep.run_stages``) running `true` through Ray against calling it directly."""
    import ray as ray_

    from vaebench.sweep import Stage, run_stages

    ray_.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        noop = ray_.remote(num_cpus=1)(lambda: None)
        stage_task = ray_.remote(num_cpus=1)(run_stages)
        with tempfile.TemporaryDirectory() as tmp:
            stage = [Stage("noop", "true")]
            for _ in range(5):  # start the workers and import the module there
                ray_.get([noop.remote(), stage_task.remote(tmp, stage, None, 0.0, {})])
            rtt, via_ray, direct = [], [], []
            for _ in range(tasks):  # interleaved, one at a time: latency, not throughput
                t0 = time.perf_counter()
                ray_.get(noop.remote())
                rtt.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                ray_.get(stage_task.remote(tmp, stage, None, 0.0, {}))
                via_ray.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                run_stages(tmp, stage, None, 0.0, {})
                direct.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ray_.get([noop.remote() for _ in range(tasks)])
            batch = (time.perf_counter() - t0) / tasks
            floor = []  # the least a stage costs: starting Python and importing torch
            for _ in range(5):
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-c", "import torch"], check=True)
                floor.append(time.perf_counter() - t0)
    finally:
        ray_.shutdown()
    ms = {"noop_round_trip": statistics.median(rtt) * 1e3,
          "sweep_task_via_ray": statistics.median(via_ray) * 1e3,
          "sweep_task_direct": statistics.median(direct) * 1e3,
          "noop_per_task_in_a_batch": batch * 1e3}
    ms["sweep_task_overhead"] = ms["sweep_task_via_ray"] - ms["sweep_task_direct"]
    ms["python_import_torch"] = statistics.median(floor) * 1e3
    _save("ray", {"ray": ray_.__version__, "tasks": tasks, "median_ms": ms})


# -- MLflow stores -----------------------------------------------------------------------------
def _time_logging(uri: str, root: Path, calls: int, per_call: int) -> float:
    """Seconds per logged metric: ``calls`` log_metrics calls of ``per_call`` metrics each."""
    from vaebench.tracking import MLflowTracker

    tracker = MLflowTracker("scaling-bench", root, tracking_uri=uri)
    tracker.start(f"bench-{per_call}", {}, {})
    row = {f"m{i}": float(i) for i in range(per_call)}
    t0 = time.perf_counter()
    for step in range(calls):
        tracker.log_metrics(row, step=step)
    seconds = time.perf_counter() - t0
    tracker.end("FINISHED")
    return seconds / (calls * per_call)


@app.command()
def tracking(calls: int = 100, repeats: int = 3) -> None:
    """ms per logged metric, one metric per call and an epoch's row of 8 per call, on: a SQLite
    file, PostgreSQL, and an `mlflow server` on each (over HTTP)."""
    with tempfile.TemporaryDirectory(prefix="vaebench-stores-") as tmp, Postgres() as pg:
        tmp_ = Path(tmp)
        (tmp_ / "art-pg").mkdir()
        (tmp_ / "art-sqlite").mkdir()
        stores = {STORES[0]: f"sqlite:///{tmp_}/direct.db",
                  STORES[1]: pg.create_database("direct")}
        with mlflow_server(pg.create_database("served"), tmp_ / "art-pg") as pg_url, \
                mlflow_server(f"sqlite:///{tmp_}/served.db", tmp_ / "art-sqlite") as lite_url:
            stores.update({STORES[2]: lite_url, STORES[3]: pg_url})
            for uri in stores.values():  # create the schemas and warm the connections
                _time_logging(uri, tmp_, 5, 1)
            per: dict[str, dict[str, list[float]]] = {
                name: {"1 per call": [], "8 per call": []} for name in stores}
            for _ in range(repeats):
                for name, uri in stores.items():
                    for n in (1, 8):
                        per[name][f"{n} per call"].append(
                            _time_logging(uri, tmp_, calls, n) * 1e3)
                print({k: {m: f"{v[-1]:.2f}" for m, v in d.items()} for k, d in per.items()},
                      flush=True)
    import mlflow

    med = {k: {m: statistics.median(v) for m, v in d.items()} for k, d in per.items()}
    _save("tracking", {"mlflow": mlflow.__version__, "calls": calls, "repeats": repeats,
                       "ms_per_metric": per, "median_ms_per_metric": med})


def write_report(results: dict) -> None:
    atomic_write_text(OUT / "scaling.md", render(results))


@app.command()
def report() -> None:
    write_report(read_json(OUT / "scaling.json"))


if __name__ == "__main__":
    app()

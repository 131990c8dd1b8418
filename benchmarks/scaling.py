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

from benchmarks.loops import gemm_probe_us, paired_ratio
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
STORES = ("SQLite file", "PostgreSQL", "server on SQLite", "server on PostgreSQL")
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


MODES = ("dvc repro", "queue, 2 workers")
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
    in two sessions says so, and is only paired where CPU and code agree (``_pairing``)."""
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


# -- the report --------------------------------------------------------------------------------
def _spread(values: list[float]) -> str:
    """median [min, max]"""
    return (f"{statistics.median(values):.2f} [{min(values):.2f}, {max(values):.2f}]"
            if len(values) > 1 else f"{values[0]:.2f}")


def _where(r: dict) -> str:
    load = ", ".join(str(x) for x in r["load_average_1_5_15"])
    return f"{r['date']}, {r['cpu']}, {r['cores']} cores, load average {load} (1/5/15 min)"


def _pairing(r: dict) -> tuple[bool, str]:
    """Whether the two halves of a queue part may be paired, and a sentence saying how they
    were measured: in one sitting, or in two on the same CPU model and the same code and
    parameters (``half_stamps``); halves on different CPUs or code are never paired."""
    stamps = r.get("half_stamps", {})
    if not all(stamps.get(mode) for mode in MODES):
        return True, ""  # one sitting (or one half only)
    a, b = (stamps[mode] for mode in MODES)
    if a["cpu"] != b["cpu"]:
        return False, f"the halves ran on different CPUs ({a['cpu']}; {b['cpu']})"
    if a.get("code_digest") is None or a.get("code_digest") != b.get("code_digest"):
        return False, ("the halves ran different code or parameters (scratch-copy digests "
                       f"{str(a.get('code_digest'))[:12]}, {str(b.get('code_digest'))[:12]})")
    if (a["date"], a.get("commit")) == (b["date"], b.get("commit")):
        return True, ""
    return True, (f"The halves ran in two sittings, `dvc repro` on {a['date']} (commit "
                  f"{str(a.get('commit'))[:7]}, load average {a['load_average_1_5_15'][0]}) and "
                  f"the queue on {b['date']} (commit {str(b.get('commit'))[:7]}, load average "
                  f"{b['load_average_1_5_15'][0]}), on the same CPU model with the same code "
                  f"and parameters (`scratch_code_digest` {a['code_digest'][:12]}); their GEMM "
                  "probes tell whether the machine ran at the same speed.")


def _verdict(pairs: list[tuple[float, float]], probes: dict) -> str:
    """What the paired ratios dvc repro / queue allow one to say: from two repeats up, their
    geometric mean with its 95% interval and a verdict (the queue is faster when the whole
    interval lies above 1, slower when below); from one repeat, no verdict, and how far the
    halves' GEMM probes (the machine's speed as each started) lie apart. One sentence, its
    full stop left to the caller."""
    if len(pairs) >= 2:
        iv = paired_ratio([a for a, _ in pairs], [b for _, b in pairs])
        verdict = ("the queue is faster" if iv["low"] > 1 else "the queue is slower"
                   if iv["high"] < 1 else "undecided")
        return (f" Paired over {iv['n']} repeats: {iv['ratio']:.2f} [{iv['low']:.2f}, "
                f"{iv['high']:.2f}] (geometric mean, 95% interval): {verdict}")
    first = [v[0] for v in (probes.get(mode) for mode in MODES) if v]
    drift = ("" if len(first) < 2 else f"; the halves' GEMM probes lie "
             f"{abs(first[0] / first[1] - 1):.0%} apart ({first[0]:.0f} and {first[1]:.0f} us)")
    return f" One repeat per half: a single ratio without an interval, so no verdict is drawn{drift}"


def _queue_section(r: dict) -> list[str]:
    """A queue part of scaling.json as markdown; a part cut short (a half without its pair)
    shows what was measured and says the pair is missing."""
    probes = r.get("gemm_probe_us", {})
    seconds = {mode: r["seconds"].get(mode, []) for mode in MODES}
    rows = [f"| {k} | " + (f"{r['median_seconds'][k]:.1f}" if v else "not measured")
            + " | " + ", ".join(f"{t:.1f}" for t in v)
            + (" | " + ", ".join(f"{p:.0f}" for p in probes.get(k, [])) if probes else "")
            + " |" for k, v in seconds.items()]
    pairable, how = _pairing(r)
    pairs = list(zip(*seconds.values(), strict=False)) if pairable else []  # both halves
    if r.get("reduced"):
        what = (f"`{r['params']}` cut to the vae on digits (2 epochs) and the beta sweep at beta "
                "1.0 (`benchmarks.scaling.reduced_study`), stages "
                f"`{' '.join(r['targets'])}` and what they need (not the report): a miniature, "
                "not the default study")
        title = "## The study on DVC's queue: a miniature"
    else:
        what = (f"`{r['params']}` at its full epochs, sizes and seeds"
                + (f", the grid cut to {', '.join(r['datasets'])} and no linear cells "
                   "(`benchmarks.scaling.study_slice`)" if r.get("datasets") else "")
                + f": stages `{' '.join(r['targets'])}` and what they need, "
                f"{r.get('stages', '?')} train and evaluate stages")
        title = ("## The study on DVC's queue: full-length stages" if r.get("datasets") else
                 "## The whole default study on DVC's queue")
    return [title, "", _where(r) + ".", "",
            what + ". From a cold start in a fresh copy each time: one `dvc repro` (torch's "
            "default threads), against one experiment per seed "
            f"({', '.join(str(s) for s in r['seeds'])}) queued with `dvc exp run --queue "
            "-S study.seeds=[k]` and run by `vaebench queue -j 2` (1 torch thread per "
            f"worker); {max(len(v) for v in seconds.values())} repeat(s), interleaved; tracking off.", "",
            "| how | median wall time (s) | each repeat (s) |"
            + (" GEMM probe as the half started (us) |" if probes else ""),
            "|---|---|---|" + ("---|" if probes else ""), *rows, "",
            *([] if not probes else [
                "GEMM probe: the median time of one 128 x 784 x 400 GEMM just before each half "
                "(`benchmarks.loops.gemm_probe_us`); two halves compare only where their probes "
                "agree, the machine being a shared VM whose speed drifts.", ""]),
            *([how, ""] if pairable and how else []),
            ("Ratio dvc repro / queue, repeat by repeat: "
             f"{', '.join(f'{a / b:.2f}' for a, b in pairs)}.{_verdict(pairs, probes)}" if pairs else
             f"**No ratio: {how}**" if not pairable else
             "**No ratio: the pair is incomplete** (a half is missing: measure it with "
             "`--half repro` or `--half queue`)")
            + ". On 2 cores the queue can at most halve the wall time, and it pays for its own "
            "costs: each experiment prepares its data, validates and reports on its own, and "
            "the workers' setup (celery, a git copy per experiment) costs seconds"
            + (f"; {len(r['seeds'])} experiments on 2 workers leave one core idle while the "
               "last runs alone on one thread" if len(r["seeds"]) % 2 else "") + ".", ""]


def write_report(results: dict) -> None:
    lines = ["# Scaling out: DVC's queue, Ray, MLflow on PostgreSQL", "",
             "Made by `python -m benchmarks.scaling queue|ray|tracking` "
             "(benchmarks/scaling.py); the numbers are in scaling.json. The machine is shared "
             "with other jobs: the load average is written beside each part.", ""]
    for part in ("queue_whole", "queue_slice", "queue"):
        if part in results:
            lines += _queue_section(results[part])
    if "ray" in results:
        r = results["ray"]
        ms = r["median_ms"]
        lines += ["## Ray's overhead per task", "", _where(r) + f"; Ray {r['ray']}, a local "
                  f"instance with 2 CPUs; medians of {r['tasks']} tasks, one at a time.", "",
                  "| what | median (ms) |", "|---|---|",
                  f"| a no-op task's round trip (submit, run, get) | {ms['noop_round_trip']:.1f} |",
                  f"| a no-op task, in a batch of {r['tasks']} (per task) | "
                  f"{ms['noop_per_task_in_a_batch']:.1f} |",
                  f"| the sweep's task running `true`, through Ray | "
                  f"{ms['sweep_task_via_ray']:.1f} |",
                  f"| the same, called directly | {ms['sweep_task_direct']:.1f} |",
                  f"| **Ray's overhead per sweep task** | **{ms['sweep_task_overhead']:.1f}** |",
                  f"| for scale: starting Python and importing torch, the least any stage "
                  f"costs | {ms['python_import_torch']:.0f} |",
                  "", f"Ray adds {ms['sweep_task_overhead']:.0f} ms to a task whose stage "
                  f"alone costs at least {ms['python_import_torch']:.0f} ms "
                  f"({100 * ms['sweep_task_overhead'] / ms['python_import_torch']:.1f}%); a "
                  "train or evaluate stage runs for seconds to minutes on top.", ""]
    if "tracking" in results:
        r = results["tracking"]
        med = r["median_ms_per_metric"]
        per = r["ms_per_metric"]

        def paired(store: str, mode: str) -> str:  # against the SQLite file, round by round
            return _spread([a / b for a, b in zip(per[store][mode], per["SQLite file"][mode],
                                                  strict=True)])

        rows = [f"| {k} | {v['1 per call']:.1f} | {v['8 per call']:.1f} | "
                f"{paired(k, '1 per call')} | {paired(k, '8 per call')} |"
                for k, v in sorted(med.items(), key=lambda kv: STORES.index(kv[0]))]
        lines += ["## MLflow: time per logged metric", "", _where(r) + f"; MLflow {r['mlflow']}"
                  f", PostgreSQL on loopback; {r['calls']} `log_metrics` calls per measurement "
                  f"through `vaebench.tracking.MLflowTracker`, {r['repeats']} repeats, "
                  "interleaved; medians.", "",
                  "| store | ms per metric, 1 per call | ms per metric, 8 per call (an epoch's "
                  "row) | relative to the SQLite file, 1 per call | relative, 8 per call |",
                  "|---|---|---|---|---|", *rows, "",
                  "Relative: the store's time over the SQLite file's in the same round, median "
                  "[min, max] over the rounds. A stage logs one row of ~8 metrics per epoch, on a "
                  "background thread (`BackgroundTracker`), off the training loop.", ""]
    atomic_write_text(OUT / "scaling.md", "\n".join(lines))


@app.command()
def report() -> None:
    write_report(read_json(OUT / "scaling.json"))


if __name__ == "__main__":
    app()

"""DVC's own cost per stage, with the default study's lock file written two ways.

DVC keeps ``dvc.lock`` as YAML and edits it with ruamel's round-trip (pure Python) parser: it
reads and rewrites the whole file around every stage it runs, and reads it again for ``dvc
status``. So the lock's size is a cost paid per stage. Two layouts of the same study:

- ``per file``: every stage lists each project source file it runs (~25 to ~35 entries), as
  ``dvc.yaml`` did up to ``--old``;
- ``per stage``: every stage lists one file, ``runs/code/<stage>.txt``, written by the ``code``
  stage (``pipelines/code.py``), as from ``--new`` on.

Measured in one run, in a fresh seeded order each repeat (``benchmarks.loops.shuffled``):

- ``lock rewrite``: DVC's own ``modify_yaml`` round trip of that ``dvc.lock``, unmodified, in
  this process: what ``dvc repro`` pays around each stage it runs;
- ``one-stage repro``: ``dvc repro -s -f validate`` in an export of that commit, the whole
  command, beside ``python -m pipelines.validate`` alone (the stage's own work, the same code in
  both): what a user pays to rerun one stage.

The ratio per file / per stage is paired repeat by repeat, with a 95% t-interval. Run:

    python -m benchmarks.dvc_overhead --old a554416^ --new a554416 --repeats 5

Writes ``reports/benchmarks/dvc_overhead-<vendor>.{json,md}``.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import typer

from benchmarks.loops import paired_ratio, per_cpu, shuffled
from benchmarks.services import ROOT, commit_tree, project_env, timed_run

OUT = ROOT / "reports" / "benchmarks"
LAYOUTS = ("per file", "per stage")
TIMEOUT_S = 600
app = typer.Typer(add_completion=False)


def export(rev: str, dest: Path) -> str:
    """The tree of ``rev`` in ``dest``, as a one-commit git repository; its full hash."""
    full = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=ROOT,
                          capture_output=True, text=True)
    if full.returncode != 0:
        sys.exit(f"error: {rev!r} is not a commit of {ROOT}")
    tree = subprocess.run(["git", "archive", full.stdout.strip()], cwd=ROOT, check=True,
                          capture_output=True).stdout
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(tree)) as tar:
        tar.extractall(dest, filter="data")
    commit_tree(dest, project_env(dest), f"export of {rev}")
    return full.stdout.strip()


def lock_rewrite_s(lock: Path) -> float:
    """One round trip of ``lock`` through DVC's ``modify_yaml``, as around each stage."""
    from dvc.utils.serialize import modify_yaml

    t0 = time.perf_counter()
    with modify_yaml(lock):
        pass
    return time.perf_counter() - t0


def lock_stats(lock: Path) -> dict[str, int]:
    import yaml

    stages = yaml.load(lock.read_text(), Loader=yaml.CSafeLoader)["stages"]
    return {"bytes": lock.stat().st_size, "stages": len(stages),
            "deps": sum(len(s.get("deps", [])) for s in stages.values())}


def summary(seconds: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Per measure: the per-file layout's time over the per-stage one's, paired."""
    return {what: paired_ratio(seconds[f"{what}, per file"], seconds[f"{what}, per stage"])
            for what in ("lock rewrite", "one-stage repro")}


def render(r: dict) -> str:
    def row(what: str, layout: str) -> str:
        key = f"{what}, {layout}"
        return (f"| {what} | {layout} | {statistics.median(r['seconds'][key]):.2f} | "
                + ", ".join(f"{t:.2f}" for t in r["seconds"][key]) + " |")

    ratio = {k: f"{v['ratio']:.2f} [{v['low']:.2f}, {v['high']:.2f}]"
             for k, v in r["ratio"].items()}
    own = statistics.median(r["seconds"]["the stage alone"])
    lock = {lay: r["lock"][lay] for lay in LAYOUTS}
    return "\n".join([
        "# DVC's own cost per stage: the lock file per source file or per stage", "",
        f"{r['date']}, {r['device']}, {r['cores']} cores, DVC {r['dvc']}, load average "
        f"{r['load_average'][0]:.1f} at the start and {r['load_average'][1]:.1f} at the end. "
        "Made by `python -m benchmarks.dvc_overhead` (benchmarks/dvc_overhead.py).", "",
        f"The default study's `dvc.lock` at {r['old'][:7]} (per file: "
        f"{lock['per file']['deps']} dependencies over {lock['per file']['stages']} entries, "
        f"{lock['per file']['bytes'] // 1000} kB) and at {r['new'][:7]} (per stage: "
        f"{lock['per stage']['deps']} dependencies over {lock['per stage']['stages']} entries, "
        f"{lock['per stage']['bytes'] // 1000} kB); {r['repeats']} repeats, the measurements in "
        "a fresh seeded order each repeat.", "",
        "| measure | layout | median s | seconds, repeat by repeat |", "|---|---|---|---|",
        row("lock rewrite", "per file"), row("lock rewrite", "per stage"),
        row("one-stage repro", "per file"), row("one-stage repro", "per stage"),
        f"| the stage alone | | {own:.2f} | "
        + ", ".join(f"{t:.2f}" for t in r["seconds"]["the stage alone"]) + " |", "",
        f"- Lock rewrite, per file over per stage: **{ratio['lock rewrite']}**: DVC's "
        "`modify_yaml` round trip of the whole lock, which `dvc repro` runs around every stage "
        "(more in a study's later stages, whose lock has grown).",
        f"- One-stage repro (`dvc repro -s -f validate`), per file over per stage: "
        f"**{ratio['one-stage repro']}**; the stage's own command takes {own:.2f} s of it.", "",
        "Ratios: the per-file layout's time over the per-stage one's, repeat by repeat, as "
        "the geometric mean with its 95% Student-t interval on the log scale.", ""])


@app.command()
def main(old: str = typer.Option("a554416^", help="a commit with the per-file lock"),
         new: str = typer.Option("HEAD", help="a commit with the per-stage lock"),
         repeats: int = 5, seed: int = 0, out: Path = OUT) -> None:
    import dvc

    from vaebench.io import atomic_write_json, atomic_write_text
    from vaebench.machine import cpu_model

    if repeats < 2:
        sys.exit(f"error: --repeats {repeats}: an interval needs at least 2")
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="vaebench-dvc-overhead-") as tmp:
        trees = {"per file": Path(tmp) / "per-file", "per stage": Path(tmp) / "per-stage"}
        revs = {lay: export(rev, trees[lay]) for lay, rev in zip(LAYOUTS, (old, new),
                                                                 strict=True)}
        env = {lay: project_env(trees[lay], PYTHONPATH=str(trees[lay])) for lay in LAYOUTS}
        locks = {lay: trees[lay] / "dvc.lock" for lay in LAYOUTS}
        timed_run(["dvc", "repro", "-q", "-s", "validate"], trees["per stage"],
                  env["per stage"], TIMEOUT_S)  # warm-up: bytecode, the OS's file cache
        jobs = {
            **{f"lock rewrite, {lay}": (lambda lay=lay: lock_rewrite_s(locks[lay]))
               for lay in LAYOUTS},
            **{f"one-stage repro, {lay}": (lambda lay=lay: timed_run(
                ["dvc", "repro", "-q", "-s", "-f", "validate"], trees[lay], env[lay],
                TIMEOUT_S)) for lay in LAYOUTS},
            "the stage alone": lambda: timed_run(
                [sys.executable, "-m", "pipelines.validate"], trees["per stage"],
                env["per stage"], TIMEOUT_S)}
        seconds: dict[str, list[float]] = {name: [] for name in jobs}
        for repeat in range(repeats):
            for name in shuffled(list(jobs), seed + repeat):
                seconds[name].append(jobs[name]())
                print(f"repeat {repeat}: {name} {seconds[name][-1]:.2f} s", flush=True)
        lock = {lay: lock_stats(locks[lay]) for lay in LAYOUTS}
    result = {"date": dt.date.today().isoformat(), "device": cpu_model(),
              "cores": os.cpu_count(), "dvc": dvc.__version__, "old": revs["per file"],
              "new": revs["per stage"], "repeats": repeats, "lock": lock, "seconds": seconds,
              "ratio": summary(seconds), "load_average": [load_start, os.getloadavg()[0]]}
    name = per_cpu("dvc_overhead")
    atomic_write_json(out / f"{name}.json", result)
    atomic_write_text(out / f"{name}.md", render(result))


if __name__ == "__main__":
    app()

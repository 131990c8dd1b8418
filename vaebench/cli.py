"""`vaebench`: the study's stages for people who don't use DVC.

    vaebench data digits
    vaebench train vae digits --seed 0
    vaebench evaluate vae digits --seed 0
    vaebench report
    vaebench paper presets/paper-fmnist.yaml   # a published protocol, beside its number
    vaebench study            # every stage of params.yaml, in order (no caching)
    vaebench queue -j 2       # DVC's queued experiments on 2 workers (vaebench/queue.py)
    vaebench sweep --ray ADDR # every run's train and evaluate as Ray tasks (vaebench/sweep.py)
"""

from __future__ import annotations

import time

import typer

from pipelines import data as data_stage
from pipelines import evaluate as evaluate_stage
from pipelines import paper as paper_stage
from pipelines import train as train_stage

app = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=True)
app.command("data", help="Prepare one dataset into data/<name>/.")(data_stage.main)
app.command("train", help="Train one (model, dataset) cell.")(train_stage.main)
app.command("evaluate", help="Evaluate one trained cell.")(evaluate_stage.main)
app.command("paper", help="Run a paper preset and compare it with its published number.")(
    paper_stage.run)


@app.command("report", help="Tables, figures, the theory verdict and reports/index.html.")
def report(params_file: str = typer.Option("params.yaml", "--params")) -> None:
    from pipelines import report as report_stage

    report_stage.main(params_file=params_file)


@app.command("study", help="Run every stage of the study in order, without DVC's caching.")
def study(params_file: str = typer.Option("params.yaml", "--params")) -> None:
    from pipelines import validate as validate_stage
    from pipelines.common import params_or_exit
    from vaebench.cells import cells

    params = params_or_exit(params_file)
    validate_stage.main(params_file=params_file)
    for name in params.data:
        data_stage.main(name=name, params_file=params_file)
    for cell in cells(params):
        beta = None if cell.beta is None else str(cell.beta)
        train_stage.main(model=cell.model, dataset=cell.dataset, seed=cell.seed, beta=beta,
                         latent_dim=cell.latent_dim, params_file=params_file, track=True,
                         progress=True)
        evaluate_stage.main(model=cell.model, dataset=cell.dataset, seed=cell.seed, beta=beta,
                            latent_dim=cell.latent_dim, params_file=params_file, track=True)
    report(params_file=params_file)


@app.command("verify", help="Rerun chosen runs of the committed study and compare every metric "
                             "with reports/runs.csv within its errors.")
def verify(cells: str = typer.Option(",".join(("vae-digits", "linear-linear-gaussian-z4")),
                                     help="comma-separated cells to rerun"),
           seeds: str = typer.Option("", help="comma-separated seeds (default: the first)"),
           alpha: float = typer.Option(0.01, help="family-wise false-alarm rate"),
           params_file: str = typer.Option("params.yaml", "--params"),
           reports: str = typer.Option("reports", help="the committed reports folder"),
           against: str = typer.Option("", help="instead of rerunning: another machine's "
                                       "runs.csv, compared with this machine's finished study "
                                       "(runs/), every run"),
           this: str = typer.Option("", help="with --against: this study's runs.csv instead "
                                    "of runs/ (two finished studies, neither rerun)"),
           against_label: str = typer.Option("", help="with --against: what made that file "
                                             "(machine, commit), for --out"),
           this_label: str = typer.Option("", help="with --against: what made this study "
                                          "(default: the date, CPU, GEMM library and commit)"),
           keep: str = typer.Option("", help="with --against: also write this study's runs "
                                    "as a runs.csv here, for a later comparison"),
           out: str = typer.Option("", help="with --against: also write the comparison as "
                                   "markdown here")) -> None:
    import time
    from pathlib import Path

    from pipelines.common import ROOT, fail, guarded
    from vaebench import verify as v
    from vaebench.config import load_params

    started = time.time()
    names = [c.strip() for c in cells.split(",") if c.strip()]
    chosen_seeds = [int(s) for s in seeds.split(",") if s.strip()] or None
    if against:
        rows = guarded(lambda: v.against(ROOT, ROOT / params_file, Path(against), alpha,
                                         Path(this) if this else None))
    else:
        rows = guarded(lambda: v.verify(ROOT, ROOT / params_file, ROOT / reports, names,
                                        chosen_seeds, alpha))
    typer.echo(v.table(rows))
    if against and keep:
        from vaebench.io import atomic_write_text
        from vaebench.report import read_runs
        from vaebench.report.aggregate import runs_frame

        study = runs_frame(read_runs(ROOT / "runs", v.cells(load_params(ROOT / params_file))))
        atomic_write_text(Path(keep), study.to_csv(index=False))
    if against and out:
        import datetime as dt

        from vaebench.io import atomic_write_text
        from vaebench.machine import cpu_model, git_commit
        from vaebench.nets.linear import resolve_gemm

        mine = (this_label or this or
                f"{dt.date.today().isoformat()}, {cpu_model()}, GEMM library "
                f"`{resolve_gemm(load_params(ROOT / params_file).study.gemm)}`, runs/ of commit "
                f"{git_commit(ROOT)}")
        extra = " ".join([*([f"--this {this}"] if this else []),
                          *([f"--this-label '{this_label}'"] if this_label else []),
                          *([f"--against-label '{against_label}'"] if against_label else [])])
        atomic_write_text(Path(out), v.markdown(rows, {
            "this": mine, "this_file": this, "other": against_label or against,
            "other_file": against, "command_extra": extra}, alpha))
    bad = [r for r in rows if not r.passed]
    identical = all(r.rerun == r.committed for r in rows)
    summary = (f"{len(rows)} metrics of {len({r.run for r in rows})} run(s): "
               + ("bitwise identical" if identical else f"{len(rows) - len(bad)} agree within "
                  "their errors") + f" ({time.time() - started:.0f} s)")
    if bad:
        fail(f"{len(bad)} of {len(rows)} metrics differ beyond their errors: "
             + ", ".join(f"{r.metric} [{r.run}]" for r in bad), code=1)
    typer.echo(summary)


@app.command("queue", help="Run DVC's queued experiments (`dvc exp run --queue`) on N workers, "
                              "each with cores // N torch threads, and wait for them.")
def queue(jobs: int = typer.Option(2, "-j", "--jobs", help="queue workers to start"),
          wait: bool = typer.Option(True, help="wait until the queue is empty")) -> None:
    from pathlib import Path

    from pipelines.common import ROOT, fail
    from vaebench import queue as q

    root = Path(ROOT)
    try:
        before = {e.rev for e in q.entries(root) if e.status in q.ACTIVE}
        share = q.start_workers(root, jobs)
        typer.echo(f"started {jobs} queue worker(s), {share} torch thread(s) each, for "
                   f"{len(before)} experiment(s)")
        if not wait:
            return
        t0 = time.perf_counter()
        done = [e for e in q.wait(root) if e.rev in before]
        q.stop_workers(root)  # the queue is empty: no worker outlives the command
    except q.QueueError as err:
        fail(str(err))
        return
    for e in done:
        typer.echo(f"{e.name}: {e.status}")
    typer.echo(f"queue done in {time.perf_counter() - t0:.1f} s; compare with `dvc exp show`")
    failed = [e.name for e in done if e.status != "Success"]
    if failed:
        fail(f"{len(failed)} experiment(s) did not succeed: {', '.join(failed)}; see "
             f"`dvc queue logs NAME`", code=1)


@app.command("sweep", help="Run the study's stale stages on a Ray cluster, one task per run "
                              "(train, then evaluate), and record them with `dvc commit`.")
def sweep(ray_address: str = typer.Option(..., "--ray", help="the cluster: HOST:PORT of its "
                                          "head, ray://HOST:PORT, auto, or local"),
          cpus: int = typer.Option(1, min=1, help="CPUs per task (its torch threads)"),
          gpus: int = typer.Option(0, min=0, max=1, help="GPUs per task"),
          force: bool = typer.Option(False, help="run every stage, stale or not"),
          lock_wait: float = typer.Option(0.0, min=0.0, help="seconds to wait for a run "
                                          "another sweep is writing (0: refuse it)")
          ) -> None:
    import os
    import sys
    from pathlib import Path

    from pipelines.common import ROOT, fail, params_or_exit
    from vaebench.sweep import SweepError
    from vaebench.sweep import sweep as run_sweep

    params = params_or_exit("params.yaml")  # the file dvc.yaml's stages read
    t0 = time.perf_counter()
    try:
        report = run_sweep(Path(ROOT), params, ray_address, cpus=cpus, gpus=gpus, force=force,
                           lock_wait_s=lock_wait, echo=typer.echo)
    except SweepError as err:
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr, flush=True)
        os._exit(2)  # a Ray client left waiting on a dead address would hold the exit
    typer.echo(f"sweep done in {time.perf_counter() - t0:.1f} s: {len(report['recorded'])} "
               "stage(s) recorded in dvc.lock; `dvc repro` runs what is left (the gradient "
               "study and the report)")
    problems = report["refused"] + report["failed"]
    for line in problems:
        typer.echo(line, err=True)
    if problems:
        fail(f"{len(report['refused'])} run(s) refused, {len(report['failed'])} failed "
             "(above); the others are recorded", code=1)


if __name__ == "__main__":
    app()

"""DVC stage `train@<model>-<dataset>-<seed>`: train one run, checkpoint every epoch, log to MLflow.

Writes runs/<cell>/seed<k>/train/{checkpoint.pt, train.json}. Rerun after a crash, it resumes;
rerun after it finished (``dvc repro -f``), it trains afresh.
"""

from __future__ import annotations

import sys
import time

import typer

from pipelines.common import (
    ROOT,
    RUNS,
    cell_or_exit,
    dataset_checksum,
    fail,
    guarded,
    load_bundle,
    params_or_exit,
    setup_torch,
    tracker_for,
    tracking_file,
)
from vaebench.io import read_json

app = typer.Typer(add_completion=False)


@app.command()
def main(model: str, dataset: str,
         seed: int = typer.Option(..., help="the training seed, one of study.seeds"),
         beta: str = typer.Option(None, help="a beta of sweep.betas (the beta sweep)"),
         params_file: str = typer.Option("params.yaml", "--params"),
         track: bool = typer.Option(True, help="log to MLflow"),
         progress: bool = typer.Option(True, help="show a progress bar")) -> None:
    from vaebench.config import run_spec

    started = time.time()
    params = params_or_exit(params_file)
    cell = cell_or_exit(params, model, dataset, seed, beta)
    spec = guarded(lambda: run_spec(params, cell))
    tracker = tracker_for(params, track)  # an unreachable store fails here, before any work
    if spec.defaults:
        where = "sweep.train" if cell.group == "sweep" else f"train.{cell.model}"
        typer.echo(f"{cell.run}: {where} defaults used: "
                   + ", ".join(f"{k}={v!r}" for k, v in spec.defaults.items()), err=True)
    bundle = guarded(lambda: load_bundle(dataset))
    setup_torch(params)

    import kernels
    from vaebench.io import atomic_write_json
    from vaebench.machine import machine_info
    from vaebench.nets.linear import resolve_gemm
    from vaebench.tracking import flatten, run_tags
    from vaebench.train import TrainingDiverged, train

    out = RUNS / cell.run / "train"
    checksum = dataset_checksum(bundle)
    fingerprint = spec.fingerprint(checksum)
    resume_id = None
    tracked = tracking_file(cell)
    if tracked.exists():
        prev = read_json(tracked)
        if prev.get("fingerprint") == fingerprint and prev.get("finished") is False:
            resume_id = prev.get("run_id")  # an interrupted run: continue its MLflow run
    backend = kernels.resolve_backend(params.study.backend)
    gemm = resolve_gemm(params.study.gemm)
    run_params = flatten({"model": spec.model, "dataset": spec.dataset, "seed": spec.seed,
                          "backend": backend, "gemm": gemm, "train": spec.train.model_dump(),
                          "data": spec.data})
    run_params["defaults_used"] = ", ".join(spec.defaults) or "none"
    mlflow_run: dict[str, str] = {}

    def record(run_id: str, finished: bool = False) -> None:
        mlflow_run["id"] = run_id
        atomic_write_json(tracked, {"run_id": run_id, "fingerprint": fingerprint,
                                    "experiment": params.study.name, "finished": finished})

    tracker.start(cell.run, run_params, run_tags(ROOT, checksum, backend, cell, gemm),
                  resume_id=resume_id, on_run=record)
    try:
        _, state = train(spec, bundle, out, tracker, fingerprint,
                         progress=progress and sys.stderr.isatty())
    except TrainingDiverged as err:
        tracker.end("FAILED")
        fail(str(err), code=1)
    except BaseException:
        tracker.end("FAILED")
        raise
    atomic_write_json(out / "train.json", {
        "run": cell.run, "cell": cell.name, "model": spec.model, "dataset": spec.dataset,
        "seed": spec.seed, "fingerprint": fingerprint, "epochs": state.epoch,
        "steps": state.step, "train_seconds": state.seconds, "backend": backend, "gemm": gemm,
        "history": state.history, "train_config": spec.train.model_dump(),
        "defaults_used": spec.defaults, "resumed_from_epoch": state.resumed_from,
        "early_stopping": state.early_stopping,
        "stage_seconds": time.time() - started, "machine": machine_info(ROOT, gemm)})
    tracker.log_metrics({"train_seconds": state.seconds})
    tracker.end("FINISHED")
    if "id" in mlflow_run:
        record(mlflow_run["id"], finished=True)
    last = state.history[-1] if state.history else {}
    how = (f"resumed at epoch {state.resumed_from}" if state.resumed_from else "from scratch")
    typer.echo(f"{cell.run}: {state.epoch} epochs ({how}) in {state.seconds:.1f} s, "
               f"val ELBO {last.get('val_elbo', float('nan')):.3f} nats")


if __name__ == "__main__":
    app()

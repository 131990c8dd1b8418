"""DVC stage `train@<model>-<dataset>-<seed>`: train one run, checkpoint every epoch, log to MLflow.

Writes runs/<cell>/seed<k>/train/{checkpoint.pt, train.json}. Rerun after a crash, it resumes;
rerun after it finished (``dvc repro -f``), it trains afresh.
"""

from __future__ import annotations

import sys
import time

import typer

from pipelines.common import (
    DATA,
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
         latent_dim: int = typer.Option(None, help="a linear cell's latent size (study.linear)"),
         params_file: str = typer.Option("params.yaml", "--params"),
         track: bool = typer.Option(True, help="log to MLflow"),
         progress: bool = typer.Option(True, help="show a progress bar")) -> None:
    from vaebench import parallel
    from vaebench.cells import run_spec

    started = time.time()
    params = params_or_exit(params_file)
    cell = cell_or_exit(params, model, dataset, seed, beta, latent_dim)
    spec = guarded(lambda: run_spec(params, cell))
    where = "sweep.train" if cell.group == "sweep" else f"train.{cell.model}"
    shards = parallel.from_env()  # under torchrun: this process's shard of every batch
    guarded(lambda: shards.check(spec.train.batch_size, where))
    device = guarded(lambda: parallel.device_for(params.study.device, shards))
    # an unreachable store fails here, before any work; only rank 0 logs
    tracker = tracker_for(params, track and shards.main)
    if spec.defaults and shards.main:
        typer.echo(f"{cell.run}: {where} defaults used: "
                   + ", ".join(f"{k}={v!r}" for k, v in spec.defaults.items()), err=True)
    bundle = guarded(lambda: load_bundle(dataset))
    setup_torch(params)
    parallel.init(shards, device)

    import kernels
    from vaebench.io import atomic_write_json
    from vaebench.machine import machine_info
    from vaebench.nets.linear import resolve_gemm
    from vaebench.tracking import TrackingFailed, dataset_splits, flatten, run_tags
    from vaebench.train import TrainingDiverged, train

    out = RUNS / cell.run / "train"
    checksum = dataset_checksum(bundle)
    fingerprint = parallel.fingerprint(spec.fingerprint(checksum), shards)
    resume_id = None
    tracked = tracking_file(cell)
    if tracked.exists() and shards.main:
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
                  resume_id=resume_id, on_run=record if shards.main else None)
    tracker.log_datasets(dataset_splits(bundle, DATA / dataset, ("train", "val")))
    try:
        _, state = train(spec, bundle, out, tracker, fingerprint,
                         progress=progress and sys.stderr.isatty() and shards.main,
                         shards=shards, device=device)
    except TrainingDiverged as err:
        tracker.end("FAILED")
        fail(str(err), code=1)
    except ValueError as err:  # a setting this run cannot honour, found before any step
        tracker.end("FAILED")
        fail(str(err))
    except TrackingFailed as err:  # the store went away: one line, the checkpoint stays
        tracker.end("FAILED")
        fail(f"{err}; the checkpoint of epoch {_kept_epoch(out)} is kept: rerun to resume",
             code=1)
    except BaseException:
        tracker.end("FAILED")
        raise
    if not shards.main:  # rank 0 writes the run's record
        parallel.finish(shards)
        return
    atomic_write_json(out / "train.json", {
        "run": cell.run, "cell": cell.name, "model": spec.model, "dataset": spec.dataset,
        "seed": spec.seed, "fingerprint": fingerprint, "epochs": state.epoch,
        "steps": state.step, "train_seconds": state.seconds, "backend": backend, "gemm": gemm,
        "history": state.history, "train_config": spec.train.model_dump(),
        "defaults_used": spec.defaults, "resumed_from_epoch": state.resumed_from,
        "processes": shards.world, "gradients": state.gradients,
        "early_stopping": state.early_stopping,
        "stage_seconds": time.time() - started, "machine": machine_info(ROOT, gemm)})
    tracker.log_metrics({"train_seconds": state.seconds})
    try:
        tracker.end("FINISHED")
    except TrackingFailed as err:
        fail(f"{err}; the run trained to the end and wrote its outputs, but its MLflow record "
             "is incomplete: rerun to train and log it again", code=1)
    if "id" in mlflow_run:
        record(mlflow_run["id"], finished=True)
    parallel.finish(shards)
    last = state.history[-1] if state.history else {}
    how = (f"resumed at epoch {state.resumed_from}" if state.resumed_from else "from scratch")
    typer.echo(f"{cell.run}: {state.epoch} epochs ({how}) in {state.seconds:.1f} s, "
               f"val ELBO {last.get('val_elbo', float('nan')):.3f} nats")


def _kept_epoch(out) -> int:
    """The epoch of the checkpoint in ``out`` (0 when there is none)."""
    import torch

    path = out / "checkpoint.pt"
    return int(torch.load(path, weights_only=False)["state"]["epoch"]) if path.exists() else 0


if __name__ == "__main__":
    app()

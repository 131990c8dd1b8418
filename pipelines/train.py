"""DVC stage `train@<model>-<dataset>`: train one cell, checkpoint every epoch, log to MLflow.

Writes runs/<run>/train/{checkpoint.pt, train.json}. Rerun after a crash, it resumes.
"""

from __future__ import annotations

import sys

import typer

from pipelines.common import (
    ROOT,
    RUNS,
    dataset_checksum,
    fail,
    guarded,
    load_bundle,
    params_or_exit,
    read_json,
    setup_torch,
    tracker_for,
)

app = typer.Typer(add_completion=False)


@app.command()
def main(model: str, dataset: str,
         beta: float = typer.Option(None, help="override the model's beta (the beta sweep)"),
         params_file: str = typer.Option("params.yaml", "--params"),
         track: bool = typer.Option(True, help="log to MLflow"),
         progress: bool = typer.Option(True, help="show a progress bar")) -> None:
    from vaebench.config import run_spec

    params = params_or_exit(params_file)
    spec = guarded(lambda: run_spec(params, model, dataset, beta))
    bundle = guarded(lambda: load_bundle(dataset))
    setup_torch(params)

    import kernels
    from vaebench.nets.linear import resolve_gemm
    from vaebench.tracking import flatten, standard_tags
    from vaebench.train import TrainingDiverged, atomic_write_json, train

    out = RUNS / spec.run_id / "train"
    checksum = dataset_checksum(bundle)
    fingerprint = spec.fingerprint(checksum)
    meta_path = out / "train.json"
    resume_id = None
    mlflow_path = out / "mlflow_run.json"
    if mlflow_path.exists():
        prev = read_json(mlflow_path)
        if prev.get("fingerprint") == fingerprint:
            resume_id = prev.get("run_id")
    tracker = tracker_for(params, track)
    backend = kernels.resolve_backend(params.study.backend)
    gemm = resolve_gemm(params.study.gemm)
    tags = standard_tags(ROOT, checksum, backend, spec.run_id)
    run_params = flatten({"model": spec.model, "dataset": spec.dataset,
                          "seed": params.study.seed, "backend": backend, "gemm": gemm,
                          "train": spec.train.model_dump(), "data": spec.data})
    run_id = tracker.start(spec.run_id, run_params, tags, resume_id=resume_id)
    atomic_write_json(mlflow_path, {"run_id": run_id, "fingerprint": fingerprint,
                                    "experiment": params.study.name})
    try:
        _, state = train(spec, bundle, out, tracker, fingerprint,
                                 progress=progress and sys.stderr.isatty())
    except TrainingDiverged as err:
        tracker.end("FAILED")
        fail(str(err), code=1)
    except BaseException:
        tracker.end("FAILED")
        raise
    atomic_write_json(meta_path, {
        "run": spec.run_id, "model": spec.model, "dataset": spec.dataset,
        "fingerprint": fingerprint, "epochs": state.epoch, "steps": state.step,
        "train_seconds": state.seconds, "backend": backend, "gemm": gemm, "history": state.history,
        "train_config": spec.train.model_dump(), "mlflow_run_id": run_id})
    tracker.log_metrics({"train_seconds": state.seconds})
    tracker.end("FINISHED")
    last = state.history[-1] if state.history else {}
    typer.echo(f"{spec.run_id}: {state.epoch} epochs in {state.seconds:.1f} s, "
               f"val ELBO {last.get('val_elbo', float('nan')):.3f} nats")


if __name__ == "__main__":
    app()

"""DVC stage `evaluate@<model>-<dataset>`: test-set metrics, IS log-likelihood, theory inputs.

Writes runs/<run>/eval/{metrics.json, checks.json, *.png} and logs the final metrics and
pictures to the run's MLflow run.
"""

from __future__ import annotations

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


def _numeric(metrics: dict) -> dict[str, float]:
    return {f"test_{k}": float(v) for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)}


def latent_scatter(arrays: dict, title: str, path) -> None:
    """The test set's encoder means along the two latents with the most KL."""
    import matplotlib.pyplot as plt

    mu, labels = arrays["latent_means"], arrays["labels"]
    fig, ax = plt.subplots(figsize=(3.2, 3.2), dpi=80)
    colour = {"c": labels, "cmap": "tab10"} if labels is not None else {"color": "C0"}
    ax.scatter(mu[:, 0], mu[:, 1], s=3, alpha=0.6, linewidths=0, **colour)
    ax.set_xlabel("latent with most KL")
    ax.set_ylabel("second")
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


@app.command()
def main(model: str, dataset: str,
         beta: float = typer.Option(None, help="override the model's beta (the beta sweep)"),
         params_file: str = typer.Option("params.yaml", "--params"),
         track: bool = typer.Option(True, help="log to MLflow")) -> None:
    from vaebench.config import run_spec

    params = params_or_exit(params_file)
    spec = guarded(lambda: run_spec(params, model, dataset, beta))
    train_dir = RUNS / spec.run_id / "train"
    if not (train_dir / "checkpoint.pt").exists():
        fail(f"{train_dir}: run {spec.run_id!r} is not trained; run its train stage first")
    bundle = guarded(lambda: load_bundle(dataset))
    setup_torch(params)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vaebench.evaluate import evaluate
    from vaebench.train import atomic_write_bytes, atomic_write_json, load_trained

    trained, state = load_trained(spec, bundle, train_dir)
    result = evaluate(spec, bundle, trained, state)
    out = RUNS / spec.run_id / "eval"
    out.mkdir(parents=True, exist_ok=True)
    pictures = []
    for name, img in result.images.items():
        path = RUNS / spec.run_id / "figures" / f"{name}.png"
        atomic_write_bytes(path, lambda p, im=img: plt.imsave(p, im, cmap="gray", vmin=0,
                                                              vmax=1, format="png"))
        pictures.append(path)
    path = RUNS / spec.run_id / "figures" / "latents.png"
    atomic_write_bytes(path, lambda p: latent_scatter(result.arrays, spec.run_id, p))
    pictures.append(path)
    atomic_write_json(out / "checks.json", result.records)
    atomic_write_json(out / "metrics.json", result.metrics)

    tracker = tracker_for(params, track)
    mlflow_info = train_dir / "mlflow_run.json"
    resume = read_json(mlflow_info).get("run_id") if mlflow_info.exists() else None
    from vaebench.tracking import standard_tags

    tracker.start(spec.run_id, {}, standard_tags(ROOT, dataset_checksum(bundle),
                                                 trained.backend, spec.run_id), resume_id=resume)
    tracker.log_metrics(_numeric(result.metrics))
    for path in [*pictures, out / "metrics.json", train_dir / "train.json"]:
        if path.exists():
            tracker.log_artifact(path)
    tracker.end("FINISHED")
    m = result.metrics
    typer.echo(f"{spec.run_id}: ELBO {m['elbo']:.3f} ± {m['elbo_se']:.3f}, "
               f"NLL {m['nll']:.3f} (k={m['nll_k']}, {m['nll_points']} points), "
               f"active units {m['active_units']}/{m['latent_dim']}")


if __name__ == "__main__":
    app()

"""DVC stage `evaluate@<model>-<dataset>-<seed>`: test-set metrics, IS log-likelihood, theory inputs.

Writes runs/<cell>/seed<k>/eval/{metrics.json, checks.json} and figures/*.png and logs the final metrics,
the test split as a dataset input and the pictures (artifacts under figures/) to the run's MLflow run.
"""

from __future__ import annotations

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
         seed: int = typer.Option(..., help="the training seed, one of study.seeds"),
         beta: str = typer.Option(None, help="a beta of sweep.betas (the beta sweep)"),
         latent_dim: int = typer.Option(None, help="a linear cell's latent size (study.linear)"),
         params_file: str = typer.Option("params.yaml", "--params"),
         track: bool = typer.Option(True, help="log to MLflow")) -> None:
    from vaebench.cells import run_spec

    started = time.time()
    params = params_or_exit(params_file)
    cell = cell_or_exit(params, model, dataset, seed, beta, latent_dim)
    spec = guarded(lambda: run_spec(params, cell))
    train_dir = RUNS / cell.run / "train"
    if not (train_dir / "checkpoint.pt").exists():
        fail(f"{train_dir}: run {cell.run!r} is not trained; run its train stage first")
    tracker = tracker_for(params, track)  # an unreachable store fails here, before any work
    bundle = guarded(lambda: load_bundle(dataset))
    setup_torch(params)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vaebench.data.bundle import npz_bytes
    from vaebench.evaluate import evaluate
    from vaebench.io import atomic_write, atomic_write_bytes, atomic_write_json
    from vaebench.machine import machine_info
    from vaebench.nets.linear import resolve_gemm
    from vaebench.results import POINTS_FILE
    from vaebench.tracking import dataset_splits, run_tags
    from vaebench.train import load_trained

    trained, state, midpoint = load_trained(spec, bundle, train_dir)
    result = evaluate(spec, bundle, trained, state, midpoint)
    out = RUNS / cell.run / "eval"
    pictures = []
    for name, img in result.images.items():
        path = RUNS / cell.run / "figures" / f"{name}.png"
        atomic_write(path, lambda p, im=img: plt.imsave(p, im, cmap="gray", vmin=0,
                                                              vmax=1, format="png"))
        pictures.append(path)
    path = RUNS / cell.run / "figures" / "latents.png"
    atomic_write(path, lambda p: latent_scatter(result.arrays, cell.run, p))
    pictures.append(path)
    atomic_write_json(out / "checks.json", result.records)
    atomic_write_json(out / "metrics.json", result.metrics.model_dump(mode="json"))
    atomic_write_bytes(out / POINTS_FILE, npz_bytes(result.points))  # reproducible bytes

    tracked = tracking_file(cell)
    resume = read_json(tracked).get("run_id") if tracked.exists() else None
    tracker.start(cell.run, {}, run_tags(ROOT, dataset_checksum(bundle), trained.backend, cell,
                                         resolve_gemm(params.study.gemm)), resume_id=resume)
    tracker.log_datasets(dataset_splits(bundle, DATA / dataset, ("test",)))
    tracker.log_metrics(result.metrics.flat())
    for path in pictures:
        tracker.log_artifact(path, "figures")
    for path in (out / "metrics.json", train_dir / "train.json"):
        if path.exists():
            tracker.log_artifact(path)
    seconds = time.time() - started
    atomic_write_json(out / "timing.json", {"stage_seconds": seconds,
                                            "machine": machine_info(ROOT)})
    tracker.end("FINISHED", seconds=seconds)
    m = result.metrics
    typer.echo(f"{cell.run}: ELBO {m.elbo.mean:.3f} ± {m.elbo.se:.3f}, "
               f"NLL {m.nll.mean:.3f} ± {m.nll.se:.3f} (k={m.nll_k}, {m.nll_points} points), "
               f"active units {m.active_units}/{m.latent_dim}")


if __name__ == "__main__":
    app()

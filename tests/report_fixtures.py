"""A small synthetic study on disk for the report stage's tests: params.yaml and runs/.

``write_study(root)`` writes 2 models (vae, iwae) x 1 image data set, the linear VAE on
linear-gaussian and a 2-beta sweep there, with plausible train.json, metrics.json, checks.json
and pictures, and returns what it wrote so tests can compare the report against it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from vaebench.config import Cell

MODELS = ("vae", "iwae")
DATASET = "dsprites"
SWEEP_DATASET = "linear-gaussian"
BETAS = (0.5, 2.0)
ENTROPY = 20.0  # the data entropy H (nats) of the synthetic linear-gaussian set
PICTURES = ("samples", "reconstructions", "traversals", "factor_traversals")


def run_of(model: str, dataset: str, beta: float | None = None, seed: int = 0) -> str:
    """The run folder of a cell, as ``config.Cell.run`` names it."""
    group = "grid" if beta is None else "sweep"
    return Cell(model, dataset, seed, group, beta).run


def params_dict(alpha: float = 0.05) -> dict[str, Any]:
    small = {"arch": "mlp", "hidden": [32], "latent_dim": 6, "epochs": 3, "batch_size": 64,
             "lr": 0.001}
    return {
        "study": {"name": "fixture", "seeds": [0], "models": list(MODELS), "datasets": [DATASET],
                  "linear_datasets": [SWEEP_DATASET], "backend": "eager", "device": "cpu"},
        "data": {DATASET: {}, SWEEP_DATASET: {}},
        "train": {"vae": dict(small), "iwae": {**small, "k": 5},
                  "beta_vae": {**small, "beta": 1.0},
                  "linear": {"latent_dim": 4, "epochs": 3, "batch_size": 64, "lr": 0.01}},
        "sweep": {"model": "linear", "dataset": SWEEP_DATASET, "betas": list(BETAS),
                  "train": {"latent_dim": 4, "epochs": 3, "batch_size": 64, "lr": 0.01}},
        "theory": {"alpha": alpha},
    }


def _metrics(run: str, model: str, dataset: str, i: int, beta: float | None) -> dict[str, Any]:
    """Numbers shaped like vaebench.evaluate.evaluate's, distinct per run (i)."""
    image = dataset == DATASET
    latent = 6
    if beta is None:
        recon, kl = -30.0 - 1.5 * i, 9.0 + 0.75 * i
    else:  # rate falls and distortion rises with beta; H - D <= I <= R holds
        recon, kl = -15.0 - 2.0 * beta, 8.0 / beta
    elbo = recon - kl
    bounds = {k: elbo + gain for k, gain in ((1, 0.0), (5, 0.8 + 0.1 * i), (50, 1.3 + 0.2 * i),
                                            (500, 1.6 + 0.25 * i))}
    kl_dims = [kl * w for w in (0.5, 0.3, 0.15, 0.05, 0.0004, 0.0001)]
    n = 300
    m: dict[str, Any] = {
        "run": run, "model": model, "dataset": dataset,
        "likelihood": "bernoulli" if image else "gaussian",
        "preprocessing": "dynamic binarization" if image else "none",
        "test_preprocessing": "binarized once, fixed seed" if image else "none",
        "backend": "eager", "n_test": n, "dim": 4096 if image else 20, "latent_dim": latent,
        "epochs": 3, "train_seconds": 12.5 + i, "elbo": elbo, "elbo_se": 0.31 + 0.01 * i,
        "recon": recon, "recon_se": 0.27 + 0.01 * i, "kl": kl, "kl_se": 0.05 + 0.01 * i,
        "elbo_mc_se": 0.02, "elbo_samples": 4, "kl_per_dim": kl_dims,
        "active_units": 4 + (model == "iwae"), "au_cov": [1.0, 0.5, 0.2, 0.05, 0.001, 0.0],
        "mi": min(kl, math.log(n)) - 0.5, "mi_se": 0.04, "mi_max": math.log(n),
        "mi_upper": kl + 0.5, "mi_upper_se": 0.05,
        "tc_mi": 1.0, "tc_mi_se": 0.1, "tc_tc": 0.4 + 0.1 * i, "tc_tc_se": 0.05,
        "tc_dwkl": 2.0, "tc_dwkl_se": 0.1, "tc_kl_mc": kl, "tc_kl_mc_se": 0.05,
        "nll": -bounds[500], "nll_se": 0.21 + 0.01 * i, "nll_k": 500, "nll_points": 200,
    }
    for k, v in bounds.items():
        m[f"L_{k}"], m[f"L_{k}_se"] = v, 0.2 + 0.01 * k ** 0.5
    if image:
        m["nll_discrete"] = m["nll"]
        m["bits_per_dim"] = m["nll"] / (m["dim"] * math.log(2))
        m.update({"mig": 0.11 + 0.1 * i, "mig_variant": "disentanglement_lib: encoder means "
                  "in 20 bins, every factor", "factor_vae_score": 0.6 + 0.05 * i,
                  "beta_vae_score": 0.7, "dci_disentanglement": 0.2, "dci_completeness": 0.25,
                  "dci_informativeness": 0.8,
                  "factor_dims": {"shape": 0, "scale": 1, "orientation": 2, "posX": 3,
                                  "posY": 4}})
    if model == "linear":  # closed forms (vaebench.evaluate.linear_theory)
        m.update({"linear_elbo_analytic": elbo + 0.004, "linear_log_px_exact": elbo + 0.9,
                  "linear_kl_to_posterior": 0.896, "linear_elbo_train": elbo + 0.1,
                  "ppca_ml_loglik_per_point": elbo + 0.13, "ppca_ml_sigma2": 0.1012,
                  "linear_sigma2": 0.1031, "subspace_similarity": 0.98765,
                  "true_model_log_px": -ENTROPY + 0.05, "data_entropy": ENTROPY})
    return m


def _records(run: str, metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Raw check records (no verdict) that pass: two statistical, one deterministic."""
    blank = {"tolerance": None, "z": None, "passed": None}
    return [
        {"name": "kl_mc_vs_analytic", "run": run, "kind": "equal",
         "empirical": metrics["kl"] + 0.01, "theoretical": metrics["kl"], "stderr": 0.02,
         "detail": "MC KL vs analytic KL", **blank},
        {"name": "iw_bound_order_k1_le_k5", "run": run, "kind": "ge",
         "empirical": metrics["L_5"] - metrics["L_1"], "theoretical": 0.0, "stderr": 0.05,
         "detail": "L_5 - L_1 >= 0", **blank},
        {"name": "elbo_plus_kl_to_posterior_eq_log_px", "run": run, "kind": "exact",
         "empirical": -40.0, "theoretical": -40.0 + 1e-12, "stderr": None,
         **{**blank, "tolerance": 1e-6}, "detail": "an identity"},
    ]


def _history(i: int, epochs: int = 3) -> list[dict[str, float]]:
    return [{"epoch": e, "seconds": 4.0, "train_elbo": -60.0 + 5 * e + i,
             "train_recon": -50.0 + 4 * e, "train_kl": 10.0 + e, "val_elbo": -62.0 + 5 * e + i,
             "val_recon": -51.0 + 4 * e, "val_kl": 11.0 + e} for e in range(1, epochs + 1)]


def _png(path: Path, seed: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).random((20, 20))
    plt.imsave(path, img, cmap="gray", vmin=0, vmax=1, format="png")


def write_study(root: Path, alpha: float = 0.05,
                extra_records: dict[str, list[dict[str, Any]]] | None = None
                ) -> dict[str, dict[str, Any]]:
    """Write params.yaml and runs/<run>/... under ``root``; return {run: {metrics, records,
    train, beta}} as written. ``extra_records`` adds records to a run's checks.json."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params_dict(alpha), sort_keys=False))
    cells = [(m, DATASET, None) for m in MODELS]
    cells += [("linear", SWEEP_DATASET, None)]
    cells += [("linear", SWEEP_DATASET, b) for b in BETAS]
    written: dict[str, dict[str, Any]] = {}
    for i, (model, dataset, beta) in enumerate(cells):
        run = run_of(model, dataset, beta)
        folder = root / "runs" / run
        metrics = _metrics(run, model, dataset, i, beta)
        records = _records(run, metrics) + list((extra_records or {}).get(run, []))
        train = {"run": run, "model": model, "dataset": dataset, "epochs": 3, "steps": 60,
                 "train_seconds": metrics["train_seconds"], "backend": "eager",
                 "history": _history(i),
                 "train_config": {**(params_dict(alpha)["train"][model] if beta is None else
                                     params_dict(alpha)["sweep"]["train"]),
                                  **({} if beta is None else {"beta": beta})},
                 "mlflow_run_id": None}
        (folder / "eval").mkdir(parents=True, exist_ok=True)
        (folder / "train").mkdir(parents=True, exist_ok=True)
        (folder / "eval" / "metrics.json").write_text(json.dumps(metrics, indent=2))
        (folder / "eval" / "checks.json").write_text(json.dumps(records, indent=2))
        (folder / "train" / "train.json").write_text(json.dumps(train, indent=2))
        if dataset == DATASET:
            for j, name in enumerate(PICTURES):
                _png(folder / "figures" / f"{name}.png", 10 * i + j)
        written[run] = {"metrics": metrics, "records": records, "train": train, "beta": beta}
    return written

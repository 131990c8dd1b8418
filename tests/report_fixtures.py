"""A small synthetic study on disk for the report stage's tests: params.yaml and runs/.

``write_study(root)`` writes two models (vae, iwae) x one image data set with factors, the
linear VAE on linear-gaussian and a two-beta sweep there, two seeds each, through the typed
contract: every metrics.json is a ``RunMetrics``, every check record comes from a builder, and
the per-point values behind the paired comparisons are drawn so that IWAE's NLL is lower than
the VAE's by ``IWAE_GAIN`` nats on every point while the ELBOs differ by noise only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from vaebench.cells import Cell, cells
from vaebench.config import parse_params
from vaebench.data.bundle import npz_bytes
from vaebench.results import (
    Disentanglement,
    Estimate,
    LinearMetrics,
    MutualInformation,
    RunMetrics,
    TCDecomposition,
)
from vaebench.theory.records import record

MODELS = ("vae", "iwae")
DATASET = "dsprites"
SWEEP_DATASET = "linear-gaussian"
BETAS = (0.5, 2.0)
SEEDS = (0, 1)
ENTROPY = 20.0   # the data entropy H (nats) of the synthetic linear-gaussian set
IWAE_GAIN = 2.0  # nats: IWAE's NLL is lower by this on every point
POINTS = 300
PICTURES = ("samples", "reconstructions", "traversals", "factor_traversals")


def params_dict(alpha: float = 0.05) -> dict[str, Any]:
    small = {"arch": "mlp", "hidden": [32], "latent_dim": 6, "epochs": 3, "batch_size": 64,
             "lr": 0.001}
    lin = {"latent_dim": 4, "epochs": 3, "batch_size": 64, "lr": 0.01}
    return {
        "study": {"name": "fixture", "seeds": list(SEEDS), "models": list(MODELS),
                  "datasets": [DATASET],
                  "linear": [{"dataset": SWEEP_DATASET, "latent_dim": 4}],
                  "backend": "eager", "device": "cpu"},
        "data": {DATASET: {}, SWEEP_DATASET: {}},
        "train": {"vae": dict(small), "iwae": {**small, "k": 5}, "linear": dict(lin)},
        "sweep": {"model": "linear", "dataset": SWEEP_DATASET, "betas": list(BETAS),
                  "train": dict(lin)},
        "evaluate": {"iw_k": 500, "iw_points": POINTS},
        "theory": {"alpha": alpha},
    }


def run_of(model: str, dataset: str, beta: float | None = None, seed: int = 0) -> str:
    """The run folder of a cell, as ``vaebench.cells.Cell.run`` names it."""
    if model == "linear" and beta is None:
        return Cell(model, dataset, seed, "linear", latent_dim=4).run
    return Cell(model, dataset, seed, "grid" if beta is None else "sweep", beta).run


def _est(mean: float, se: float) -> Estimate:
    return Estimate(mean=mean, se=se)


def _metrics(c: Cell, i: int, rng: np.random.Generator) -> tuple[RunMetrics, dict]:
    """Numbers shaped like the evaluate stage's, distinct per run, and the per-point values."""
    image = c.dataset == DATASET
    if c.beta is None:
        recon, kl = -30.0 - 1.5 * i, 9.0 + 0.75 * i
    else:  # rate falls and distortion rises with beta; H - D <= I <= R holds
        recon, kl = -15.0 - 2.0 * c.beta, 8.0 / c.beta
    elbo = recon - kl
    difficulty = np.random.default_rng(7).normal(0.0, 6.0, POINTS)  # shared by every run
    base = 40.0 if c.beta is None else -elbo - 1.0
    nll_points = base + difficulty - (IWAE_GAIN if c.model == "iwae" else 0.0)
    nll_points = nll_points + rng.normal(0.0, 0.05, POINTS)
    elbo_points = elbo + difficulty + rng.normal(0.0, 0.5, POINTS)
    nll = float(nll_points.mean())
    bounds = {k: _est(-nll - gain, 0.3) for k, gain in ((1, 1.0), (5, 0.4), (50, 0.1), (500, 0.0))}
    linear = None
    if c.model == "linear":
        linear = LinearMetrics(
            elbo_analytic=elbo + 0.01, log_px_exact=-nll + 0.02, kl_to_posterior=0.03,
            elbo_train=elbo + 0.2, ppca_max_loglik=elbo + 0.25, ppca_sigma2=0.1, sigma2=0.101,
            subspace_similarity=0.995, optimum_rate=kl, optimum_distortion=-recon,
            optimum_active=4, optimum_sigma2=0.1)
    dis = None
    if image:
        dis = Disentanglement(mig=0.1 + 0.01 * i, mig_variant="disentanglement_lib: 20 bins",
                              factor_vae=0.6, beta_vae=0.7, dci_disentanglement=0.3,
                              dci_completeness=0.35, dci_informativeness=0.8,
                              dci_regressor="random forest",
                              factor_dims={"shape": 0, "scale": 1})
    m = RunMetrics(
        run=c.run, cell=c.name, model=c.model, dataset=c.dataset, seed=c.seed, group=c.group,
        beta=None if c.beta is None else float(c.beta),
        likelihood="bernoulli" if image else "gaussian",
        preprocessing="dynamic binarization" if image else "none",
        test_preprocessing="binarized once, fixed seed" if image else "none", backend="eager",
        n_test=1000, dim=4096 if image else 20, latent_dim=6 if image else 4,
        test_digest="d" * 64, epochs=3, train_seconds=5.0 + i,
        elbo=_est(elbo, 0.25), recon=_est(recon, 0.2), kl=_est(kl, 0.1), elbo_mc_se=0.01,
        elbo_samples=4, nll=_est(nll, 0.35), nll_k=500, nll_points=POINTS, bounds=bounds,
        nll_discrete=nll if image else None, bits_per_dim=nll / 4096 / np.log(2) if image else None,
        kl_per_dim=[kl * w for w in (0.5, 0.3, 0.15, 0.05, 0.0004, 0.0001)][: 6 if image else 4],
        active_units=4 + (i % 2), au_cov=[1.0, 0.5, 0.2, 0.1, 0.001, 0.0][: 6 if image else 4],
        mi=MutualInformation(lower=_est(min(kl, 6.0), 0.05), upper=_est(min(kl, 6.0) + 0.1, 0.05),
                             cap=float(np.log(2000)), points=2000, saturated=False),
        tc=TCDecomposition(mi=_est(3.0, 0.05), tc=_est(0.5, 0.02), dwkl=_est(kl - 3.5, 0.03)),
        data_entropy=None if image else ENTROPY,
        true_model_log_px=None if image else -ENTROPY - 0.1, linear=linear, disentanglement=dis)
    return m, {"nll": nll_points, "elbo": elbo_points}


def _records(m: RunMetrics) -> list[dict[str, Any]]:
    return [record(name="objective_matches_reference", run=m.run, kind="exact",
                   empirical=1e-7, theoretical=0.0, tolerance=1e-4, category="model",
                   catches=["kl_formula"]),
            record(name="kl_mc_vs_analytic", run=m.run, kind="equal", empirical=m.kl.mean + 0.01,
                   theoretical=m.kl.mean, stderr=0.02)]


def _history(i: int) -> list[dict[str, float]]:
    rows = []
    for e in (1, 2, 3):
        row: dict[str, float] = {"epoch": e, "seconds": 1.0 * e}
        for split, shift in (("train", -1.0), ("val", 0.0)):
            recon, kl = -35.0 + 3.5 * e + i + shift, 5.0 + 0.5 * e
            row.update({f"{split}_elbo": recon - kl, f"{split}_recon": recon, f"{split}_kl": kl})
        rows.append(row)
    return rows


def _png(path: Path, seed: int) -> None:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).random((20, 20))
    plt.imsave(path, img, cmap="gray", vmin=0, vmax=1, format="png")


def write_study(root: Path, alpha: float = 0.05,
                extra_records: dict[str, list[dict[str, Any]]] | None = None
                ) -> dict[str, dict[str, Any]]:
    """Write params.yaml and runs/<cell>/seed<k>/... under ``root``; return {run: {metrics,
    points, records, train}} as written. ``extra_records`` adds records to a run's checks."""
    root.mkdir(parents=True, exist_ok=True)
    raw = params_dict(alpha)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    written: dict[str, dict[str, Any]] = {}
    rng = np.random.default_rng(0)
    for i, c in enumerate(cells(parse_params(raw))):
        folder = root / "runs" / c.run
        metrics, points = _metrics(c, i, rng)
        records = _records(metrics) + list((extra_records or {}).get(c.run, []))
        block = raw["sweep"]["train"] if c.group == "sweep" else raw["train"][c.model]
        train = {"run": c.run, "model": c.model, "dataset": c.dataset, "epochs": 3, "steps": 60,
                 "train_seconds": metrics.train_seconds, "stage_seconds": 8.0,
                 "history": _history(i), "train_config": {**block, **(
                     {} if c.beta is None else {"beta": c.beta})}}
        for sub in ("eval", "train"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        (folder / "eval" / "metrics.json").write_text(json.dumps(metrics.model_dump(mode="json")))
        (folder / "eval" / "checks.json").write_text(json.dumps(records))
        (folder / "eval" / "points.npz").write_bytes(npz_bytes(points))
        (folder / "eval" / "timing.json").write_text(json.dumps({"stage_seconds": 3.0}))
        (folder / "train" / "train.json").write_text(json.dumps(train))
        if c.dataset == DATASET:
            for j, name in enumerate(PICTURES):
                _png(folder / "figures" / f"{name}.png", 10 * i + j)
        written[c.run] = {"metrics": metrics, "points": points, "records": records,
                          "train": train, "cell": c}
    return written

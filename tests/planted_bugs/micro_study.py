"""A micro study run by the planted-bug harness in a scratch copy of the code.

It trains and evaluates, in one process, one run of every family the model checks cover (VAE,
beta-VAE, IWAE and beta-TCVAE on digits; the linear VAE and a linear beta-VAE at beta = 4 on
linear-Gaussian data), judges every check record as the report does, and writes them as JSON:

    python micro_study.py OUT.json
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

PARAMS = {
    "study": {"name": "planted", "seeds": [0], "models": ["vae", "beta_vae", "iwae", "betatc"],
              "datasets": ["digits"], "linear": [{"dataset": "linear-gaussian", "latent_dim": 4}],
              "backend": "eager", "gemm": "auto"},
    "data": {"digits": {}, "linear-gaussian": {"n_train": 4000, "n_val": 200, "n_test": 800}},
    "train": {
        "vae": {"hidden": [64], "latent_dim": 4, "epochs": 2, "min_steps": 150, "batch_size": 64,
                "lr": 0.003},
        "beta_vae": {"hidden": [64], "latent_dim": 4, "epochs": 2, "min_steps": 150,
                     "batch_size": 64, "lr": 0.003, "beta": 4.0},
        "iwae": {"hidden": [64], "latent_dim": 4, "epochs": 2, "min_steps": 150,
                 "batch_size": 64, "lr": 0.003, "k": 5},
        "betatc": {"hidden": [64], "latent_dim": 4, "epochs": 2, "min_steps": 150,
                   "batch_size": 64, "lr": 0.003, "alpha": 1.0, "beta": 6.0, "gamma": 1.0},
        "linear": {"epochs": 10, "min_steps": 2000, "batch_size": 256, "lr": 0.02,
                   "lr_schedule": "cosine"},
    },
    "sweep": {"model": "linear", "dataset": "linear-gaussian", "betas": [4.0],
              "train": {"latent_dim": 4, "epochs": 10, "min_steps": 2000, "batch_size": 256,
                        "lr": 0.02, "lr_schedule": "cosine"}},
    "evaluate": {"elbo_samples": 4, "elbo_samples_large": 16, "elbo_points": 300, "iw_k": 200,
                 "iw_ks": [1, 10, 200], "iw_points": 400, "mi_points": 800},
}


def main(out: Path) -> None:
    from vaebench import data
    from vaebench.cells import cells, run_spec
    from vaebench.config import parse_params
    from vaebench.evaluate import evaluate
    from vaebench.theory.records import finalize
    from vaebench.tracking import NullTracker
    from vaebench.train import load_trained, train

    params = parse_params(PARAMS)
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bundles = {}
        for name, cfg in PARAMS["data"].items():
            data.prepare(name, cfg, root / "data" / name)
            bundles[name] = data.load(root / "data" / name)
        for cell in cells(params):
            spec = run_spec(params, cell)
            bundle = bundles[cell.dataset]
            folder = root / "runs" / cell.run / "train"
            train(spec, bundle, folder, NullTracker(), spec.fingerprint("planted"), progress=False)
            model, state, midpoint = load_trained(spec, bundle, folder)
            records += evaluate(spec, bundle, model, state, midpoint).records
    judged = [{"name": c.name, "run": c.run, "category": c.category, "passed": c.passed,
               "catches": list(c.catches)} for c in finalize(records, alpha=0.01)]
    out.write_text(json.dumps(judged, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))

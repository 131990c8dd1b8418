"""A paper preset's test metrics for one trained run: -L_S on the test set, the ELBO, active
units, with the protocol's test binarization; no file I/O (``pipelines/paper.py`` writes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from vaebench import estimators
from vaebench.inputs import fixed_inputs
from vaebench.paper.config import PaperConfig
from vaebench.paper.likelihood import importance_sampled, model_log_weights, summarize

VAMPPRIOR_SEED = 777  # np.random.seed(777) before binarizing validation, then test


def vampprior_binarization(x_val: np.ndarray, x_test: np.ndarray, levels: int
                           ) -> tuple[np.ndarray, np.ndarray]:
    """The held-out sets binarized as the VampPrior code binarizes them, draw for draw.

    jmtomczak/vae_vampprior ``utils/load_data.py`` (dynamic MNIST) and sajadn/Exemplar-VAE
    ``utils/load_data/base_load_data.py`` (``binarize``): ``np.random.seed(777)``, then
    ``x_val = np.random.binomial(1, x_val)`` and ``x_test = np.random.binomial(1, x_test)`` on
    the grey levels divided by 255 (float64), validation first. numpy's legacy RandomState
    stream is frozen (NEP 19), so the same grey levels in the same order give the same bits.
    The validation set must be theirs too (the last 10,000 training images, ``val_split:
    last``) for the test draw to be theirs.
    """
    rs = np.random.RandomState(VAMPPRIOR_SEED)
    scale = float(levels - 1)
    xv = rs.binomial(1, np.asarray(x_val, dtype=np.float64) / scale)
    xt = rs.binomial(1, np.asarray(x_test, dtype=np.float64) / scale)
    return xv.astype(np.float32), xt.astype(np.float32)


def test_inputs(bundle, paper: PaperConfig, likelihood: str) -> torch.Tensor:
    """The binary test images the protocol scores."""
    if likelihood != "bernoulli" or bundle.kind != "image":
        raise ValueError(f"a paper preset scores a Bernoulli decoder on images; got the "
                         f"{likelihood!r} decoder on {bundle.kind!r} data")
    if paper.test_binarization == "vampprior":
        _, xt = vampprior_binarization(bundle.x_val, bundle.x_test, bundle.levels)
        x = torch.from_numpy(xt)
    else:
        x = fixed_inputs(bundle, bundle.x_test, likelihood)
    return x if paper.test_points is None else x[:paper.test_points]


def evaluate_paper(model, bundle, paper: PaperConfig, seed: int,
                   progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """-L_S, the ELBO, their test-sampling and Monte Carlo errors, and active units."""
    model.eval()
    x = test_inputs(bundle, paper, model.likelihood)
    per = importance_sampled(model_log_weights(model), x, paper.importance_samples, seed,
                             progress)
    out: dict[str, Any] = summarize(per)
    with torch.no_grad():
        mu = torch.cat([model.encode(x[a:a + 1000])[0] for a in range(0, len(x), 1000)])
    au, _ = estimators.active_units(mu, 0.01)  # Burda et al. 2016: Cov_x E_q[z_u] > 0.01
    out.update(active_units=int(au), latent_dim=int(mu.shape[-1]),
               test_binarization=paper.test_binarization,
               nll_mc_se_method="delta method on the normalized weights (a lower bound on the "
                                "error for heavy-tailed weights)")
    return out

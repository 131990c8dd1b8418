"""The evaluate stage's logic: test-set metrics, importance sampling, diagnostics, theory inputs.

Everything here computes; ``pipelines/evaluate.py`` writes. Conventions, stated with every
number: nats per data point; the test set binarized once with a fixed seed (Bernoulli
decoders) or dequantized once (Gaussian decoders); the NLL names its k and its points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

import kernels
from vaebench import estimators
from vaebench.inputs import fixed_inputs, preprocessing_name, seeded_generator
from vaebench.models import GaussianLatentModel
from vaebench.objectives import log_importance_weights
from vaebench.theory import checks

STREAM_ELBO, STREAM_ELBO_LARGE, STREAM_IW, STREAM_MI = 10, 11, 12, 13


@dataclass
class Evaluation:
    metrics: dict[str, Any]
    records: list[dict[str, Any]]
    arrays: dict[str, Any] = field(default_factory=dict)
    images: dict[str, np.ndarray] = field(default_factory=dict)


def _labels(y: np.ndarray | None, n: int | None = None) -> Tensor | None:
    if y is None:
        return None
    t = torch.from_numpy(np.ascontiguousarray(y)).long()
    return t if n is None else t[:n]


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield start, min(start + size, n)


@torch.no_grad()
def encode_all(model: GaussianLatentModel, x: Tensor, y: Tensor | None, bs: int):
    mus, lvs = [], []
    for a, b in _batches(len(x), bs):
        mu, lv = model.encode(x[a:b], None if y is None else y[a:b])
        mus.append(mu)
        lvs.append(lv)
    return torch.cat(mus), torch.cat(lvs)


@torch.no_grad()
def sample_terms(model: GaussianLatentModel, x: Tensor, y: Tensor | None, n_samples: int,
                 seed: int, stream: int, bs: int) -> dict[str, Tensor]:
    """S draws per point: log p(x|z), log q(z|x), log p(z) as (S, N), analytic KL as (N,)."""
    out: dict[str, list[Tensor]] = {"log_px_z": [], "log_qz": [], "log_pz": [], "kl": []}
    chunk = max(1, bs // n_samples) if n_samples > 1 else bs
    for i, (a, b) in enumerate(_batches(len(x), chunk)):
        t = model.terms(x[a:b], None if y is None else y[a:b], n_samples,
                        kernels.step_seed(seed, i, stream), with_log_probs=True)
        lead = (lambda v: v) if n_samples > 1 else (lambda v: v.unsqueeze(0))
        out["log_px_z"].append(lead(t.log_px_z))
        out["log_qz"].append(lead(t.log_qz))
        out["log_pz"].append(lead(t.log_pz))
        out["kl"].append(t.kl)
    return {k: torch.cat(v, dim=-1) for k, v in out.items()}


@torch.no_grad()
def importance_log_weights(model: GaussianLatentModel, x: Tensor, y: Tensor | None, k: int,
                           seed: int, bs: int, k_chunk: int = 100) -> Tensor:
    """log w (K, N) for the IS log-likelihood, drawn in chunks of samples (Burda et al. eq. 7).

    Sample chunk j uses its own seed, so the K draws are independent; the first k of them are
    the common random numbers behind every L_k.
    """
    rows = []
    for j, k0 in enumerate(range(0, k, k_chunk)):
        kk = min(k_chunk, k - k0)
        cols = []
        for i, (a, b) in enumerate(_batches(len(x), max(1, bs * 50 // max(kk, 1)))):
            t = model.terms(x[a:b], None if y is None else y[a:b], kk,
                            kernels.step_seed(seed, j * 100_003 + i, STREAM_IW),
                            with_log_probs=True)
            lw = log_importance_weights(t.log_px_z, t.log_pz, t.log_qz)
            cols.append(lw if kk > 1 else lw.unsqueeze(0))
        rows.append(torch.cat(cols, dim=1))
    return torch.cat(rows, dim=0)


def evaluate(spec, bundle, model: GaussianLatentModel, train_state: dict) -> Evaluation:
    cfg = spec.evaluate
    seed = spec.cell.eval_seed
    bs = cfg.batch_size
    run = spec.run_id
    lik = model.likelihood
    x = fixed_inputs(bundle, bundle.x_test, lik)
    y = _labels(bundle.y_test) if model.n_classes else None
    n, d = x.shape
    metrics: dict[str, Any] = {
        "run": run, "model": spec.model, "dataset": spec.dataset, "likelihood": lik,
        "preprocessing": preprocessing_name(bundle.kind, lik),
        "test_preprocessing": ("binarized once, fixed seed" if bundle.kind == "image"
                               and lik == "bernoulli" else
                               "dequantized once, fixed seed" if bundle.kind == "image"
                               else "none"),
        "backend": model.backend, "n_test": n, "dim": d, "latent_dim": model.latent_dim,
        "epochs": int(train_state["epoch"]), "train_seconds": float(train_state["seconds"]),
    }
    records: list[dict[str, Any]] = []

    # 1. ELBO, reconstruction and KL over the whole test set, S draws per point.
    s = sample_terms(model, x, y, cfg.elbo_samples, seed, STREAM_ELBO, bs)
    elbo_s = s["log_px_z"] - s["kl"]
    for name, per_point in (("elbo", elbo_s.mean(0)), ("recon", s["log_px_z"].mean(0)),
                            ("kl", s["kl"])):
        mean, se = estimators.se_over_points(per_point)
        metrics[name], metrics[f"{name}_se"] = float(mean), float(se)
    metrics["elbo_mc_se"] = float(estimators.mc_mean_se(elbo_s)[1])
    metrics["elbo_samples"] = cfg.elbo_samples
    mu, logvar = encode_all(model, x, y, bs)
    records.append(checks.kl_check(run, mu, logvar, s["log_qz"] - s["log_pz"]))

    # 6. The S-sample ELBO against an independent larger-S estimate, and SE ~ 1/sqrt(S).
    m = min(cfg.elbo_points, n)
    yl = None if y is None else y[:m]
    large = sample_terms(model, x[:m], yl, cfg.elbo_samples_large, seed, STREAM_ELBO_LARGE, bs)
    records += checks.empirical_elbo_checks(run, elbo_s[:, :m], large["log_px_z"] - large["kl"])

    # 2. Latent diagnostics: KL per dimension, active units, I_q(x; z), TC decomposition.
    metrics["kl_per_dim"] = estimators.kl_per_dim(mu, logvar).tolist()
    au, cov = estimators.active_units(mu, cfg.active_threshold)
    metrics["active_units"] = int(au)
    metrics["au_cov"] = cov.tolist()
    # Estimators whose cost grows as N^2 use the first mi_points test points.
    nm = min(cfg.mi_points, n)
    mu_m, logvar_m = mu[:nm], logvar[:nm]
    z1, log_q1, log_p1 = kernels.reparameterize(
        mu_m, logvar_m, 1, kernels.step_seed(seed, 0, STREAM_MI), with_log_probs=True,
        backend=model.backend)
    mi, mi_se = estimators.mutual_information(z1, mu_m, logvar_m, log_q1)
    metrics["mi"], metrics["mi_se"] = float(mi), float(mi_se)
    metrics["mi_max"] = math.log(nm)
    metrics["mi_points"] = nm
    mi_up, mi_up_se = estimators.mutual_information_upper(z1, mu_m, logvar_m, log_q1)
    metrics["mi_upper"], metrics["mi_upper_se"] = float(mi_up), float(mi_up_se)
    # The decomposition with the test set's own mixture as q(z) (no MWS offset); the
    # beta-TCVAE's training-time MWS estimate on the same draws is reported beside it.
    tc = estimators.tc_terms_mixture(z1, mu_m, logvar_m, log_q1, log_p1)
    for key, values in tc.items():
        mean, se = estimators.se_over_points(values)
        metrics[f"tc_{key}"], metrics[f"tc_{key}_se"] = float(mean), float(se)
    if spec.model == "betatc":
        mws = estimators.tc_terms(z1, mu_m, logvar_m, log_q1, log_p1, len(bundle.x_train),
                                  batch_size=min(512, nm))
        for key in ("mi", "tc", "dwkl"):
            metrics[f"tc_mws_{key}"] = float(mws[key].mean())
        records.append(checks.tc_decomposition_check(
            run, tc["mi"] + tc["tc"] + tc["dwkl"], s["kl"][:nm]))
    order = latent_order_from(mu, logvar)
    arrays = {"latent_means": mu[:2000, order[:2]].numpy(),
              "labels": None if bundle.y_test is None else np.asarray(bundle.y_test[:2000])}

    # 3. Importance-sampled log-likelihood and the bound order L_1 <= L_5 <= ... <= L_K.
    ni = min(cfg.iw_points, n)
    yi = None if y is None else y[:ni]
    log_w = importance_log_weights(model, x[:ni], yi, cfg.iw_k, seed, bs)
    ks = sorted({k for k in cfg.iw_ks if k <= cfg.iw_k} | {cfg.iw_k})
    bounds = estimators.iw_bounds_crn(log_w, ks)
    for k in ks:
        mean, se = estimators.se_over_points(bounds[k])
        metrics[f"L_{k}"], metrics[f"L_{k}_se"] = float(mean), float(se)
    metrics["nll"] = -metrics[f"L_{cfg.iw_k}"]
    metrics["nll_se"] = metrics[f"L_{cfg.iw_k}_se"]
    metrics["nll_k"] = cfg.iw_k
    metrics["nll_points"] = ni
    if bundle.kind == "image":
        correction = d * math.log(bundle.levels) if lik == "gaussian" else 0.0
        metrics["nll_discrete"] = metrics["nll"] + correction
        metrics["bits_per_dim"] = metrics["nll_discrete"] / (d * math.log(2))
    log_px_exact = None
    true_model = bundle.manifest.get("true_model")
    if true_model is not None:  # data with a known density: its entropy and log-likelihood
        metrics["data_entropy"] = -float(true_model["expected_log_likelihood"])
        metrics["true_model_log_px"] = float(true_model["mean_test_log_likelihood"])
    if spec.model == "linear":
        lin = linear_theory(spec, bundle, model, x, elbo_s)
        metrics.update(lin.metrics)
        records += lin.records
        log_px_exact = lin.log_px_test[:ni]
    records += checks.bound_order_checks(run, log_w, ks, log_px_exact=log_px_exact)

    # 4. Disentanglement on datasets with ground-truth factors.
    if bundle.factors_train is not None:
        metrics.update(disentanglement(spec, bundle, model, seed))

    images = ({} if bundle.image_shape is None else
              pictures(bundle, model, x, y, mu, seed, order, metrics.get("factor_dims")))
    return Evaluation(metrics, records, arrays=arrays, images=images)


@dataclass
class LinearTheory:
    metrics: dict[str, float]
    records: list[dict[str, Any]]
    log_px_test: Tensor


def linear_theory(spec, bundle, model, x_test: Tensor, elbo_mc: Tensor) -> LinearTheory:
    """Closed forms for the trained linear VAE (Lucas et al. 2019; Tipping & Bishop 1999)."""
    from vaebench.theory import linear_vae, ppca

    run = spec.run_id
    p = model.parameters_float64()
    xt = x_test.double()
    log_px = ppca.ppca_log_likelihood(xt, p["W"], p["mu"], p["sigma2"])
    elbo_an = linear_vae.linear_vae_elbo(xt, p["W"], p["mu"], p["sigma2"], p["V"], p["b"], p["D"])
    elbo_test = elbo_an["elbo"]
    kl_post = linear_vae.kl_to_posterior(xt, p["W"], p["mu"], p["sigma2"], p["V"], p["b"], p["D"])
    records = [
        checks.linear_elbo_check(run, elbo_mc.double(), elbo_test),
        checks.decomposition_check(run, elbo_test, kl_post, log_px),
    ]
    x_train = fixed_inputs(bundle, bundle.x_train, "gaussian").double()
    fit = ppca.ppca_ml(x_train, model.latent_dim)
    elbo_train = linear_vae.linear_vae_elbo(x_train, p["W"], p["mu"], p["sigma2"], p["V"],
                                            p["b"], p["D"])["elbo"].mean()
    if model.beta == 1.0:  # the pPCA optimum is the optimum of the beta = 1 objective only
        records += checks.linear_optimum_checks(
            run, float(elbo_train), float(fit.max_loglik_per_point),
            spec.theory.optimum_gap_tol_per_dim * x_train.shape[1],
            p["W"], fit.eigvecs[:, : model.latent_dim], spec.theory.min_subspace_similarity)
    metrics = {
        "linear_elbo_analytic": float(elbo_test.mean()),
        "linear_log_px_exact": float(log_px.mean()),
        "linear_kl_to_posterior": float(kl_post.mean()),
        "linear_elbo_train": float(elbo_train),
        "ppca_ml_loglik_per_point": float(fit.max_loglik_per_point),
        "ppca_ml_sigma2": float(fit.sigma2),
        "linear_sigma2": float(p["sigma2"]),
        "subspace_similarity": float(linear_vae.subspace_similarity(
            p["W"], fit.eigvecs[:, : model.latent_dim])),
    }
    return LinearTheory(metrics, records, log_px)


def correlation_ratio(codes: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """eta^2 of each code column given a discrete factor: Var(E[c | f]) / Var(c)."""
    total = codes.var(0) + 1e-12
    means = np.zeros_like(codes)
    for v in np.unique(factor):
        sel = factor == v
        means[sel] = codes[sel].mean(0)
    return means.var(0) / total


@torch.no_grad()
def disentanglement(spec, bundle, model, seed: int) -> dict[str, Any]:
    """MIG, FactorVAE score, beta-VAE score and DCI of the encoder means on the training set."""
    from vaebench import metrics as dm

    n = min(spec.evaluate.disentanglement_points, len(bundle.x_train))
    x = fixed_inputs(bundle, bundle.x_train[:n], model.likelihood)
    y = _labels(bundle.y_train, n) if model.n_classes else None
    codes = encode_all(model, x, y, spec.evaluate.batch_size)[0].numpy().astype(np.float64)
    factors = np.asarray(bundle.factors_train[:n])
    sampler = dm.FactorSampler(factors, tuple(bundle.factor_sizes))
    rng = np.random.default_rng(seed)
    cut = int(0.8 * n)
    out: dict[str, Any] = {
        "mig": float(dm.mig(codes, factors)["mig"]),
        "mig_variant": "disentanglement_lib: encoder means in 20 equal-width bins, every factor",
        "dci_regressor": "random forest, 10 trees, depth 10",
        "factor_vae_score": float(dm.factor_vae_score(codes, sampler, rng)["factor_vae"]),
        "beta_vae_score": float(dm.beta_vae_score(codes, sampler, rng)["beta_vae"]),
    }
    d = dm.dci(codes[:cut], factors[:cut], codes[cut:], factors[cut:], rng=seed)
    out.update({"dci_disentanglement": float(d["disentanglement"]),
                "dci_completeness": float(d["completeness"]),
                "dci_informativeness": float(d["informativeness"])})
    eta = np.stack([correlation_ratio(codes, factors[:, f]) for f in range(factors.shape[1])])
    out["factor_dims"] = {name: int(eta[f].argmax())
                          for f, name in enumerate(bundle.factor_names)}
    return out


def _to_images(flat: Tensor, shape: tuple[int, int, int]) -> np.ndarray:
    c, h, w = shape
    img = flat.clamp(0, 1).reshape(-1, c, h, w).permute(0, 2, 3, 1).numpy()
    return img[..., 0] if c == 1 else img


def grid(images: np.ndarray, ncols: int, pad: int = 1) -> np.ndarray:
    """Tile (n, H, W[, C]) images into one array, row-major, with a white border."""
    n, h, w = images.shape[:3]
    rows = math.ceil(n / ncols)
    shape = (rows * (h + pad) + pad, ncols * (w + pad) + pad, *images.shape[3:])
    out = np.ones(shape, dtype=np.float32)
    for i, im in enumerate(images):
        r, c = divmod(i, ncols)
        out[pad + r * (h + pad): pad + r * (h + pad) + h,
            pad + c * (w + pad): pad + c * (w + pad) + w] = im
    return out


def traversal_rows(model, mu0: Tensor, y0: Tensor | None, dims: list[int],
                   steps: Tensor) -> Tensor:
    """Decoder means along each latent in ``dims`` from ``mu0`` (one row per latent)."""
    rows = []
    for j in dims:
        zz = mu0.repeat(len(steps), 1)
        zz[:, j] = steps
        rows.append(model.mean_x(zz, None if y0 is None else y0.repeat(len(steps))))
    return torch.cat(rows)


@torch.no_grad()
def pictures(bundle, model, x: Tensor, y: Tensor | None, mu: Tensor, seed: int,
             order: list[int], factor_dims: dict[str, int] | None) -> dict[str, np.ndarray]:
    """Samples from the prior, reconstructions and latent traversals, as image grids.

    ``mu`` holds the encoder means of ``x``; ``order`` ranks the latents by KL; with
    ground-truth factors, ``factor_dims`` names the latent most related to each factor.
    """
    shape = bundle.image_shape
    gen = seeded_generator(seed + 3)
    ys = None
    if model.n_classes:
        ys = torch.arange(64) % model.n_classes
    z = torch.randn(64, model.latent_dim, generator=gen)
    out = {"samples": grid(_to_images(model.mean_x(z, ys), shape), 8)}
    yr = None if y is None else y[:16]
    pairs = torch.stack([x[:16], model.mean_x(mu[:16], yr)], 1).reshape(-1, x.shape[1])
    out["reconstructions"] = grid(_to_images(pairs, shape), 8)
    steps = torch.linspace(-3, 3, 9)
    y0 = None if y is None else y[:1]
    rows = traversal_rows(model, mu[:1], y0, order[:8], steps)
    out["traversals"] = grid(_to_images(rows, shape), len(steps))
    if factor_dims is not None:  # one row per ground-truth factor
        rows = traversal_rows(model, mu[:1], y0, list(factor_dims.values()), steps)
        out["factor_traversals"] = grid(_to_images(rows, shape), len(steps))
    return out


def latent_order_from(mu: Tensor, logvar: Tensor) -> list[int]:
    return [int(i) for i in estimators.kl_per_dim(mu, logvar).argsort(descending=True)]

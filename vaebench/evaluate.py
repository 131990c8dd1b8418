"""The evaluate stage's logic: test-set metrics, importance sampling, diagnostics, checks.

Everything here computes; ``pipelines/evaluate.py`` writes. ``evaluate`` runs the named parts
in order and returns a typed ``RunMetrics`` (``vaebench.results``), the check records, and the
per-point values that paired comparisons need. Conventions, stated with every number: nats per
data point; the test set binarized once with the dataset's fixed seed (Bernoulli decoders) or
dequantized once (Gaussian decoders), the same for every run; the NLL names its k and points.
Every run draws its evaluation noise from its own seed (``Cell.eval_seed``).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

import kernels
from vaebench import estimators
from vaebench.importance import importance_log_weights as fast_log_weights
from vaebench.inputs import fixed_inputs, preprocessing_name
from vaebench.models import GaussianLatentModel
from vaebench.objectives import log_importance_weights
from vaebench.results import (
    Disentanglement,
    Estimate,
    MutualInformation,
    RunMetrics,
    TCDecomposition,
)
from vaebench.theory import checks

STREAM_ELBO, STREAM_ELBO_LARGE, STREAM_IW, STREAM_MI, STREAM_REFERENCE = 10, 11, 12, 13, 14


@dataclass
class Context:
    """One run's evaluation inputs: the model, its test set preprocessed once, its seed."""

    spec: Any
    bundle: Any
    model: GaussianLatentModel
    x: Tensor
    y: Tensor | None
    seed: int

    @property
    def n(self) -> int:
        return self.x.shape[0]

    @property
    def bs(self) -> int:
        return self.spec.evaluate.batch_size


@dataclass
class Evaluation:
    metrics: RunMetrics
    records: list[dict[str, Any]]
    points: dict[str, np.ndarray]   # per-point values on fixed test points (paired comparisons)
    arrays: dict[str, Any] = field(default_factory=dict)
    images: dict[str, np.ndarray] = field(default_factory=dict)


def _est(values: Tensor) -> Estimate:
    return Estimate.of(*estimators.se_over_points(values))


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


IS_REFERENCE_POINTS = 32  # test points whose IS log weights are recomputed by the plain path


@torch.no_grad()
def importance_log_weights(model: GaussianLatentModel, x: Tensor, y: Tensor | None, k: int,
                           seed: int, bs: int, k_chunk: int = 100) -> Tensor:
    """log w (K, N) for the IS log-likelihood, drawn in chunks of samples (Burda et al. eq. 7).

    The plain version, through ``model.terms``: the reference that the evaluation's fast path,
    ``vaebench.importance.importance_log_weights``, is tested against (same draws, same values).

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


# -- the parts -------------------------------------------------------------------------------
def test_elbo(ctx: Context) -> dict[str, Any]:
    """ELBO, reconstruction and KL over the whole test set with S draws per point."""
    cfg = ctx.spec.evaluate
    s = sample_terms(ctx.model, ctx.x, ctx.y, cfg.elbo_samples, ctx.seed, STREAM_ELBO, ctx.bs)
    elbo_s = s["log_px_z"] - s["kl"]
    return {"samples": s, "elbo_s": elbo_s, "elbo": _est(elbo_s.mean(0)),
            "recon": _est(s["log_px_z"].mean(0)), "kl": _est(s["kl"]),
            "elbo_mc_se": estimators.mc_mean_se(elbo_s)[1], "elbo_points": elbo_s.mean(0)}


def latent_diagnostics(ctx: Context, mu: Tensor, logvar: Tensor) -> dict[str, Any]:
    """KL per dimension, active units, I_q(x; z) bracketed, and the TC decomposition on the
    first ``mi_points`` test points (their cost grows as N^2)."""
    cfg = ctx.spec.evaluate
    au, cov = estimators.active_units(mu, cfg.active_threshold)
    nm = min(cfg.mi_points, ctx.n)
    mu_m, logvar_m = mu[:nm], logvar[:nm]
    z1, log_q1, log_p1 = kernels.reparameterize(
        mu_m, logvar_m, 1, kernels.step_seed(ctx.seed, 0, STREAM_MI), with_log_probs=True,
        backend=ctx.model.backend)
    lower = Estimate.of(*estimators.mutual_information(z1, mu_m, logvar_m, log_q1))
    upper = Estimate.of(*estimators.mutual_information_upper(z1, mu_m, logvar_m, log_q1))
    cap = math.log(nm)
    mi = MutualInformation(lower=lower, upper=upper, cap=cap, points=nm,
                           saturated=lower.mean > cap - MutualInformation.SATURATION)
    tc = estimators.tc_terms_mixture(z1, mu_m, logvar_m, log_q1, log_p1)
    mws = None
    if ctx.spec.model == "betatc":  # the training estimator on the same draws, beside it
        terms = estimators.tc_terms(z1, mu_m, logvar_m, log_q1, log_p1,
                                    len(ctx.bundle.x_train), batch_size=min(512, nm))
        mws = {key: float(terms[key].mean()) for key in ("mi", "tc", "dwkl")}
    return {"kl_per_dim": estimators.kl_per_dim(mu, logvar).tolist(), "active_units": au,
            "au_cov": cov.tolist(), "mi": mi, "nm": nm, "tc_terms": tc,
            "draws": (z1, mu_m, logvar_m, log_q1, log_p1),
            "tc": TCDecomposition(mi=_est(tc["mi"]), tc=_est(tc["tc"]), dwkl=_est(tc["dwkl"]),
                                  mws=mws)}


def importance_sampling(ctx: Context) -> dict[str, Any]:
    """-L_K on the first ``iw_points`` test points and L_k for every evaluated k (Burda et al.
    2016, eq. 8) on common random numbers. A conditional model's bound is made unconditional,
    log p(x) >= E log sum_c p(c) p^(x|c), with p(c) the training class frequencies and each
    p(x|c) importance-sampled with K draws; -L_K(x|c) given the true label is kept beside it."""
    cfg = ctx.spec.evaluate
    ni = min(cfg.iw_points, ctx.n)
    ks = sorted({k for k in cfg.iw_ks if k <= cfg.iw_k} | {cfg.iw_k})
    x = ctx.x[:ni]
    out: dict[str, Any] = {"ks": ks, "ni": ni}
    if ctx.model.n_classes:
        classes = ctx.model.n_classes
        counts = np.bincount(np.asarray(ctx.bundle.y_train), minlength=classes)
        log_prior = torch.from_numpy(np.log(counts / counts.sum())).double()
        per_class = []
        for c in range(classes):
            yc = torch.full((ni,), c, dtype=torch.long)
            lw = fast_log_weights(ctx.model, x, yc, cfg.iw_k, ctx.seed + c, ctx.bs)
            per_class.append(estimators.iw_bounds_crn(lw, ks))
        bounds = {k: torch.logsumexp(torch.stack([pc[k] for pc in per_class]) +
                                     log_prior[:, None], dim=0) for k in ks}
        y_true = ctx.y[:ni]
        given = torch.stack([pc[cfg.iw_k] for pc in per_class]).gather(0, y_true[None])[0]
        out.update(log_w=None, nll_conditional=_est(-given), classes=classes)
    else:
        log_w = fast_log_weights(ctx.model, x, None, cfg.iw_k, ctx.seed, ctx.bs)
        bounds = estimators.iw_bounds_crn(log_w, ks)
        # the fast path and the plain one (model.terms) on the first points, with the same
        # draws: the fast path's model check (theory.model_checks.is_fast_path_check)
        m = min(IS_REFERENCE_POINTS, ni)
        out["log_w_reference"] = (
            fast_log_weights(ctx.model, x[:m], None, cfg.iw_k, ctx.seed, ctx.bs),
            importance_log_weights(ctx.model, x[:m], None, cfg.iw_k, ctx.seed, ctx.bs))
        out.update(log_w=log_w, nll_conditional=None, classes=None)
    out["bounds"] = {k: _est(v) for k, v in bounds.items()}
    out["nll_points"] = -bounds[cfg.iw_k]
    out["nll"] = _est(out["nll_points"])
    return out


@torch.no_grad()
def disentanglement(ctx: Context) -> Disentanglement:
    """Scores of the encoder means on the training images (``metrics.suite.score_codes``)."""
    from vaebench.metrics.suite import score_codes

    bundle, model = ctx.bundle, ctx.model
    n = min(ctx.spec.evaluate.disentanglement_points, len(bundle.x_train))
    x = fixed_inputs(bundle, bundle.x_train[:n], model.likelihood)
    y = _labels(bundle.y_train, n) if model.n_classes else None
    codes = encode_all(model, x, y, ctx.bs)[0].numpy().astype(np.float64)
    scores = score_codes(codes, np.asarray(bundle.factors_train[:n]),
                         tuple(bundle.factor_sizes), tuple(bundle.factor_names), ctx.seed)
    label = bundle.manifest.get("labels", "")
    conditioned = None
    if model.n_classes:  # the label is one of the factors (shape on the dSprites-like set)
        conditioned = next((f for f in bundle.factor_names if f in str(label)), "its label")
    return Disentanglement(**scores, conditioned_on=conditioned)


def evaluate(spec, bundle, model: GaussianLatentModel, train_state: dict,
             midpoint_model: GaussianLatentModel | None = None) -> Evaluation:
    """Every part in order; the check records and per-point values beside the metrics.
    ``midpoint_model`` is the model half-way through training (``train.MIDPOINT_FILE``)."""
    from vaebench.evaluate_checks import (  # they build on this module's parts
        aggregate_posterior_checks,
        linear_theory,
        reference_checks,
    )
    from vaebench.pictures import latent_order, pictures
    from vaebench.theory import model_checks

    lik = model.likelihood
    x = fixed_inputs(bundle, bundle.x_test, lik)
    ctx = Context(spec, bundle, model, x, _labels(bundle.y_test) if model.n_classes else None,
                  spec.cell.eval_seed)
    cfg, run, n, d = spec.evaluate, spec.run_id, ctx.n, x.shape[1]

    digest = hashlib.sha256(x.numpy().tobytes()).hexdigest()
    records = [model_checks.fixed_test_set_check(
        run, digest, (bundle.manifest.get("test_digests") or {}).get(lik, "not recorded"))]
    records += reference_checks(ctx)
    fit = test_elbo(ctx)
    mu, logvar = encode_all(model, x, ctx.y, ctx.bs)
    records.append(checks.kl_check(run, mu, logvar, fit["samples"]["log_qz"]
                                   - fit["samples"]["log_pz"]))
    m = min(cfg.elbo_points, n)
    large = sample_terms(model, x[:m], None if ctx.y is None else ctx.y[:m],
                         cfg.elbo_samples_large, ctx.seed, STREAM_ELBO_LARGE, ctx.bs)
    records += checks.empirical_elbo_checks(run, fit["elbo_s"][:, :m],
                                            large["log_px_z"] - large["kl"])
    lat = latent_diagnostics(ctx, mu, logvar)
    if spec.model == "betatc":
        tc = lat["tc_terms"]
        records.append(checks.tc_decomposition_check(
            run, tc["mi"] + tc["tc"] + tc["dwkl"], fit["samples"]["kl"][: lat["nm"]]))
    iw = importance_sampling(ctx)
    linear, log_px_exact, optimum, moved = None, None, None, (0.0, 0.0)
    if spec.model == "linear":
        linear, lin_records, log_px, optimum, moved = linear_theory(ctx, fit["elbo_s"],
                                                                    midpoint_model)
        records += lin_records
        log_px_exact = log_px[: iw["ni"]]
        records.append(model_checks.is_converges_check(run, -iw["nll_points"], log_px_exact,
                                                       cfg.iw_k))
    if iw["log_w"] is not None:
        records.append(model_checks.is_fast_path_check(run, *iw["log_w_reference"]))
        records += checks.bound_order_checks(run, iw["log_w"], iw["ks"],
                                             log_px_exact=log_px_exact)
    dis = disentanglement(ctx) if bundle.factors_train is not None else None
    aggregate = None
    if spec.model == "linear" and "W" in bundle.extra:  # Gaussian data of known covariance
        aggregate, agg_records = aggregate_posterior_checks(ctx, lat)
        records += agg_records
    if optimum is not None:  # rate, distortion and collapse against the closed form
        records += model_checks.beta_sweep_closed_form(
            run, optimum, (fit["kl"].mean, fit["kl"].se),
            (-fit["recon"].mean, fit["recon"].se), lat["active_units"], moved)

    nll = iw["nll"]
    discrete = None  # the NLL of the 8-bit image: Gaussian decoders add D log 256
    if bundle.kind == "image":
        discrete = nll.mean + (d * math.log(bundle.levels) if lik == "gaussian" else 0.0)
    true_model = bundle.manifest.get("true_model") or {}
    metrics = RunMetrics(
        run=run, cell=spec.cell.name, model=spec.model, dataset=spec.dataset, seed=spec.seed,
        group=spec.cell.group, beta=None if spec.cell.beta is None else float(spec.cell.beta),
        likelihood=lik, preprocessing=preprocessing_name(bundle.kind, lik),
        test_preprocessing=("binarized once, fixed seed" if bundle.kind == "image"
                            and lik == "bernoulli" else "dequantized once, fixed seed"
                            if bundle.kind == "image" else "none"),
        backend=model.backend, n_test=n, dim=d, latent_dim=model.latent_dim, test_digest=digest,
        epochs=int(train_state["epoch"]), train_seconds=float(train_state["seconds"]),
        elbo=fit["elbo"], recon=fit["recon"], kl=fit["kl"], elbo_mc_se=fit["elbo_mc_se"],
        elbo_samples=cfg.elbo_samples, nll=nll, nll_k=cfg.iw_k, nll_points=iw["ni"],
        bounds=iw["bounds"], nll_discrete=discrete,
        bits_per_dim=None if discrete is None else discrete / (d * math.log(2)),
        nll_conditional=iw["nll_conditional"], nll_classes=iw["classes"],
        kl_per_dim=lat["kl_per_dim"], active_units=lat["active_units"], au_cov=lat["au_cov"],
        mi=lat["mi"], tc=lat["tc"] if aggregate is None else lat["tc"].model_copy(update={
            "exact": aggregate["exact"], "mws_batch": aggregate["mws_batch"],
            "mws_bias_at_batch": aggregate["mws_bias_at_batch"]}),
        data_entropy=(-float(true_model["expected_log_likelihood"])
                      if "expected_log_likelihood" in true_model else None),
        true_model_log_px=(float(true_model["mean_test_log_likelihood"])
                           if "mean_test_log_likelihood" in true_model else None),
        linear=linear, disentanglement=dis)
    order = latent_order(mu, logvar)
    points = {"nll": iw["nll_points"].numpy(), "elbo": fit["elbo_points"].numpy()}
    arrays = {"latent_means": mu[:2000, order[:2]].numpy(),
              "labels": None if bundle.y_test is None else np.asarray(bundle.y_test[:2000])}
    images = ({} if bundle.image_shape is None else
              pictures(tuple(bundle.image_shape), model, x, ctx.y, mu, ctx.seed, order,
                       None if dis is None else dis.factor_dims))
    return Evaluation(metrics, records, points, arrays, images)


__all__ = ["Context", "Evaluation", "encode_all", "evaluate", "importance_log_weights",
           "importance_sampling", "latent_diagnostics", "sample_terms",
           "test_elbo"]

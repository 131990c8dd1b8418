"""The evaluate stage's model checks: closed forms of linear models, the exact aggregate
posterior on Gaussian data, and the training objective against its independent reference.

Called by ``vaebench.evaluate.evaluate``; each function returns metrics and check records
(``vaebench.theory.model_checks``) for one run.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

import kernels
from vaebench import estimators, fused_step
from vaebench.evaluate import STREAM_REFERENCE, Context, _labels
from vaebench.inputs import fixed_inputs
from vaebench.results import LinearMetrics
from vaebench.theory import checks


def linear_theory(ctx: Context, elbo_mc: Tensor, midpoint_model=None):
    """-> (LinearMetrics, check records, exact log p(x) per test point, the closed-form
    optimum at the model's beta, and how much the test-set (rate, distortion) moved from the
    model half-way through training to the end)."""
    # Closed forms for a trained linear VAE (Lucas et al. 2019; Tipping & Bishop 1999) and the
    # model checks they give: the ELBO's gap to log p(x) and the optimum (beta = 1).
    from vaebench.theory import linear_beta, linear_vae, model_checks, ppca

    run, model, spec = ctx.spec.run_id, ctx.model, ctx.spec
    p = model.parameters_float64()
    xt = ctx.x.double()
    log_px = ppca.ppca_log_likelihood(xt, p["W"], p["mu"], p["sigma2"])
    elbo_test = linear_vae.linear_vae_elbo(xt, p["W"], p["mu"], p["sigma2"], p["V"], p["b"],
                                           p["D"])["elbo"]
    kl_post = linear_vae.kl_to_posterior(xt, p["W"], p["mu"], p["sigma2"], p["V"], p["b"], p["D"])
    records = [model_checks.elbo_gap_check(run, elbo_mc, log_px, kl_post),
               checks.decomposition_check(run, elbo_test, kl_post, log_px)]
    x_train = fixed_inputs(ctx.bundle, ctx.bundle.x_train, "gaussian").double()
    fit = ppca.ppca_ml(x_train, model.latent_dim)
    top = fit.eigvecs[:, : model.latent_dim]
    similarity = float(linear_vae.subspace_similarity(p["W"], top))

    def train_elbo(params: dict[str, Tensor]) -> float:
        return float(linear_vae.linear_vae_elbo(x_train, params["W"], params["mu"],
                                                params["sigma2"], params["V"], params["b"],
                                                params["D"])["elbo"].mean())

    elbo_train = train_elbo(p)
    if model.beta == 1.0 and midpoint_model is not None:  # the pPCA optimum is beta = 1's only
        records += model_checks.linear_optimum_checks(
            run, elbo_train, train_elbo(midpoint_model.parameters_float64()),
            float(fit.max_loglik_per_point), similarity, spec.theory.min_subspace_similarity)
    centred = x_train - x_train.mean(0)
    eig = torch.linalg.eigvalsh(centred.T @ centred / len(centred)).numpy()
    optimum = linear_beta.linear_beta_optimum(eig, model.latent_dim, model.beta)
    metrics = LinearMetrics(
        elbo_analytic=float(elbo_test.mean()), log_px_exact=float(log_px.mean()),
        kl_to_posterior=float(kl_post.mean()), elbo_train=elbo_train,
        ppca_max_loglik=float(fit.max_loglik_per_point), ppca_sigma2=float(fit.sigma2),
        sigma2=float(p["sigma2"]), subspace_similarity=similarity,
        optimum_rate=optimum.rate, optimum_distortion=optimum.distortion,
        optimum_active=optimum.active, optimum_sigma2=optimum.sigma2)
    moved = (0.0, 0.0)
    if midpoint_model is not None:
        q = midpoint_model.parameters_float64()
        mid = linear_vae.linear_vae_elbo(xt, q["W"], q["mu"], q["sigma2"], q["V"], q["b"], q["D"])
        end = linear_vae.linear_vae_elbo(xt, p["W"], p["mu"], p["sigma2"], p["V"], p["b"], p["D"])
        moved = (abs(float(end.kl.mean() - mid.kl.mean())),
                 abs(float(end.recon.mean() - mid.recon.mean())))
    return metrics, records, log_px, optimum, moved


def aggregate_posterior_checks(ctx: Context, lat: dict[str, Any]) -> tuple[dict, list[dict]]:
    """A linear encoder on Gaussian data of known covariance: its aggregate posterior is
    Gaussian, so MI, TC and DWKL are exact (``linear_vae.gaussian_aggregate_terms``). The test
    mixture estimator is compared with them where it is reliable, I <= log(N) / 2 (a mixture of N
    points cannot see more than log N nats; Poole et al. 2019), and so is beta-TCVAE's
    minibatch-weighted estimator with the whole mixture as its batch, after removing its stated
    offset (K - 1) log N (``objectives.betatc_terms`` keeps Chen et al.'s log(N M) constants).
    Its bias at the training batch size M is stated beside them. -> (metrics, records)."""
    from vaebench.theory import linear_vae, model_checks

    p = ctx.model.parameters_float64()
    w, s2 = (torch.from_numpy(np.asarray(ctx.bundle.extra[k], dtype=np.float64))
             for k in ("W", "sigma2"))
    cov = w @ w.T + s2 * torch.eye(w.shape[0], dtype=torch.float64)
    mu_x = torch.from_numpy(np.asarray(ctx.bundle.extra["mu"], dtype=np.float64))
    exact = linear_vae.gaussian_aggregate_terms(p["V"], p["D"], cov, p["V"] @ mu_x + p["b"])
    z, mu, lv, lq, lp = lat["draws"]
    n, k = z.shape
    offset = (k - 1) * math.log(n)
    full = estimators.tc_terms(z, mu, lv, lq, lp, n, batch_size=n)
    batch = int(getattr(ctx.spec.train, "batch_size", 256))
    train_n = len(ctx.bundle.x_train)
    at_batch = estimators.tc_terms(z, mu, lv, lq, lp, train_n, batch_size=min(batch, n))
    bias = float(at_batch["tc"].mean()) - (k - 1) * math.log(train_n) - exact["tc"]
    out = {"exact": exact, "mws_batch": min(batch, n), "mws_bias_at_batch": bias}
    if exact["mi"] > 0.5 * math.log(n):
        return out, []
    run, tc = ctx.spec.run_id, lat["tc_terms"]
    why = (f"the test mixture of {n} points vs the exact Gaussian aggregate-posterior value "
           f"(I = {exact['mi']:.3f} <= log(N)/2 = {0.5 * math.log(n):.3f})")
    records = [model_checks.exact_value_check(
        f"tc_mixture_{key}_vs_exact", run, estimators.se_over_points(tc[key]), exact[key],
        ["reparam_scale", "prior_density"] if key == "dwkl" else ["reparam_scale"],
        f"{key.upper()} from {why}.") for key in ("mi", "tc", "dwkl")]
    records.append(model_checks.exact_value_check(
        "tc_training_estimator_vs_exact", run,
        estimators.se_over_points(full["tc"] - offset), exact["tc"], ["tc_constants"],
        f"TC from beta-TCVAE's training estimator (objectives.betatc_terms) with the {n} test "
        f"draws as one batch, minus its offset (K - 1) log N = {offset:.3f}, vs the exact TC; "
        f"at the training batch size M = {min(batch, n)} its bias is {bias:+.3f} nats."))
    return out, records


def reference_checks(ctx: Context) -> list[dict]:
    """The training objective's value and gradient against its independent reference on one
    batch of 256 training points, preprocessed as in training (model check)."""
    from vaebench.inputs import model_inputs
    from vaebench.theory import model_checks, reference

    bundle, model = ctx.bundle, ctx.model
    n = min(256, len(bundle.x_train))
    raw = torch.from_numpy(np.ascontiguousarray(bundle.x_train[:n]))
    x = model_inputs(raw, bundle.kind, bundle.levels, model.likelihood,
                     kernels.step_seed(ctx.seed, 0, STREAM_REFERENCE))
    y = _labels(bundle.y_train, n) if model.n_classes else None
    seed = kernels.step_seed(ctx.seed, 1, STREAM_REFERENCE)
    values = reference.objective_and_gradients(model, x, y, seed, len(bundle.x_train))
    return model_checks.objective_matches_reference(
        ctx.spec.run_id, ctx.spec.model, *values,
        by_hand=fused_step.unsupported(model) is None)

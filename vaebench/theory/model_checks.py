"""Model checks: claims about the trained models and the objectives they optimized.

Each compares what the code reports for a trained model with an independent reference (a closed
form in float64, a quantity of the data alone, or the objective written a second time) and
names the classes of bug it can catch (``records.BUG_CLASSES``). They are what the report's
headline counts; ``tests/planted_bugs`` plants one bug of each class and asserts that a named
check fails. Derivations and sources: docs/model_checks.md.
"""

from __future__ import annotations

import math

from torch import Tensor

from vaebench.estimators import as_float64, mc_mean_se, se_over_points
from vaebench.theory.linear_beta import LinearBetaOptimum
from vaebench.theory.records import RawRecord, record

VALUE_RTOL = 1e-4   # float32 code against a float64 reference, per point
GRAD_RTOL = 1e-9    # relative L2 error of the gradient of a 256-point batch mean, both in
                    # float64 (vaebench.theory.reference.objective_and_gradients)


def _model(**kwargs) -> RawRecord:
    return record(category="model", **kwargs)


def _max_relative_difference(code: Tensor, ref: Tensor) -> float:
    """max |code - ref| / max(1, |ref|): float32 code against a float64 or plain-path value."""
    return float(((code - ref).abs() / ref.abs().clamp(min=1.0)).max())


def objective_matches_reference(run: str, model_name: str, code_value: Tensor,
                                code_grad: Tensor, ref_value: Tensor, ref_grad: Tensor,
                                by_hand: bool = False) -> list[RawRecord]:
    """The training objective's value and gradient on one training batch, from the model's own
    code, against ``theory.reference`` (torch.distributions, float64), with the same eps.

    The value check holds per point to ``VALUE_RTOL`` * max(1, |value|); the gradient check
    bounds the relative L2 error of the gradient of the batch mean by ``GRAD_RTOL``. Both are
    deterministic: the draws are shared, so only floating point separates them.
    ``by_hand``: the code's gradient is the backward pass written out (``vaebench.fused_step``),
    which does not differentiate the code's KL or beta-ELBO but restates their derivatives.
    """
    v = as_float64("code_value", code_value)
    r = as_float64("ref_value", ref_value)
    rel = _max_relative_difference(v, r)
    g, rg = as_float64("code_grad", code_grad), as_float64("ref_grad", ref_grad)
    grad_err = float((g - rg).norm() / rg.norm().clamp(min=1e-30))
    catches_value = ["likelihood_constant", "kl_formula", "reparam_scale", "beta_term"]
    if model_name in ("iwae", "betatc"):
        catches_value += ["prior_density"]
    if model_name == "iwae":
        catches_value += ["is_estimator"]
    if model_name == "betatc":
        catches_value += ["tc_constants"]
    catches_grad = (["reparam_scale", "fused_backward"] if by_hand else
                    ["kl_formula", "reparam_scale", "beta_term"]
                    + (["iwae_detach"] if model_name == "iwae" else []))
    return [
        _model(name="objective_matches_reference", run=run, kind="exact", empirical=float(rel),
               theoretical=0.0, tolerance=VALUE_RTOL, catches=catches_value,
               detail=(f"Largest relative difference, over a {v.numel()}-point training batch, "
                       "between the objective the model trains on and the same objective "
                       "written independently (torch.distributions, float64, the same eps).")),
        _model(name="objective_gradient_matches_reference", run=run, kind="exact",
               empirical=grad_err, theoretical=0.0, tolerance=GRAD_RTOL, catches=catches_grad,
               detail=("Relative L2 error of the training objective's gradient (all "
                       "parameters, batch mean; "
                       + ("the backward pass written out, vaebench.fused_step" if by_hand else
                          "autograd of the model's objective")
                       + ") against the reference objective's autograd "
                       "gradient, both on float64 copies of the model, so that a ReLU "
                       "pre-activation within float32 rounding of zero cannot put the two on "
                       "different branches; for IWAE this is the gradient of L_k itself, which "
                       "the detached-weight estimator must equal (Burda et al. 2016, eq. 14).")),
    ]


def is_fast_path_check(run: str, fast: Tensor, plain: Tensor) -> RawRecord:
    """The importance-sampling log weights (K, m) of the code the NLL comes from
    (``vaebench.importance``: blocked decoder, the Bernoulli likelihood rewritten as
    h.(W^T x) + b.x - sum softplus), on the first m test points, against the same draws
    through the model's own ``terms`` (``vaebench.evaluate.importance_log_weights``), whose
    objective is itself checked against the independent reference. Deterministic: only float32
    summation order separates them, bounded per weight by ``VALUE_RTOL`` * max(1, |log w|)."""
    f = as_float64("fast", fast, 2)
    p = as_float64("plain", plain, 2)
    rel = _max_relative_difference(f, p)
    return _model(name="is_weights_match_plain_path", run=run, kind="exact", empirical=rel,
                  theoretical=0.0, tolerance=VALUE_RTOL, catches=["is_fast_path"],
                  detail=(f"Largest relative difference over {p.shape[0]} draws x {p.shape[1]} "
                          "test points between the log weights of the fast IS evaluation and "
                          "the same draws through the model's own terms."))


def elbo_gap_check(run: str, elbo_mc: Tensor, log_px: Tensor, kl_to_posterior: Tensor
                   ) -> RawRecord:
    """Mean of log p(x) - ELBO over the test points equals the mean KL(q(z|x) || p(z|x)).

    log p(x) and the KL are closed forms of the trained linear model's parameters (Tipping &
    Bishop 1999; Lucas et al. 2019); the ELBO is the code's S-draw Monte Carlo estimate (S, N).
    Only eps is random (x fixed), so the SE is the ELBO's Monte Carlo error.
    """
    e = as_float64("elbo_mc", elbo_mc, 2)
    lp = as_float64("log_px", log_px, 1)
    kp = as_float64("kl_to_posterior", kl_to_posterior, 1)
    gap_mean, se = mc_mean_se(lp[None] - e)
    return _model(
        name="elbo_gap_equals_kl_to_posterior", run=run, kind="equal", empirical=gap_mean,
        theoretical=float(kp.mean()), stderr=se,
        catches=["likelihood_constant", "kl_formula", "reparam_scale"],
        detail=(f"Mean of exact log p(x) minus the code's {e.shape[0]}-draw ELBO over {e.shape[1]} "
                "test points vs the mean closed-form KL(q(z|x) || p(z|x)); SE from the Monte "
                "Carlo draws (fixed x)."))


def is_converges_check(run: str, log_px_k: Tensor, log_px: Tensor, k: int) -> RawRecord:
    """At large k the importance-sampled L_k equals the exact log p(x) (Burda et al. 2016,
    Thm 1: L_k -> log p(x)), two-sided: a wrong estimator or density biases it either way."""
    lk = as_float64("log_px_k", log_px_k, 1)
    lp = as_float64("log_px", log_px, 1)
    _, se = se_over_points(lk - lp)
    return _model(
        name="is_converges_to_log_px", run=run, kind="equal", empirical=float(lk.mean()),
        theoretical=float(lp.mean()), stderr=se,
        catches=["is_estimator", "prior_density", "likelihood_constant", "reparam_scale"],
        detail=(f"Mean L_{k} from the code's importance sampling over {lk.shape[0]} test points vs "
                "the mean exact log p(x) of the trained linear model (closed form); SE from the "
                "per-point differences."))


def linear_optimum_checks(run: str, elbo_train: float, elbo_train_midpoint: float,
                          max_loglik: float, similarity: float, min_similarity: float,
                          floor: float = 1e-3) -> list[RawRecord]:
    """The trained linear VAE at the pPCA optimum (Lucas et al. 2019: the ELBO's maximum is
    L*/N, Tipping & Bishop's maximum likelihood, from the data's eigenvalues alone).

    The gap L*/N - ELBO (closed-form ELBO of the trained parameters on the training set) must
    lie in [0, tol], with tol measured from the optimizer's own convergence: the ELBO it still
    gained over the second half of training (``elbo_train_midpoint`` is the ELBO half-way),
    at least ``floor``. An optimizer that has converged on the right objective is closer to
    the optimum than it moved in its second half; one that converged on a wrong objective is
    far from it while it no longer moves. The decoder must span the top principal subspace.
    """
    tol = max(floor, abs(elbo_train - elbo_train_midpoint))
    return [
        _model(name="linear_optimum_gap", run=run, kind="gap", empirical=float(elbo_train),
               theoretical=float(max_loglik), tolerance=tol,
               catches=["kl_formula", "reparam_scale", "beta_term"],
               detail=(f"L*/N - ELBO of the trained linear VAE on the training set must lie in "
                       f"[0, {tol:.4g}] nats per point, the ELBO gained over the second half "
                       f"of training (floor {floor:g}).")),
        _model(name="decoder_subspace_similarity", run=run, kind="ge", empirical=similarity,
               theoretical=float(min_similarity), tolerance=0.0,
               catches=["kl_formula", "reparam_scale"],
               detail=("Mean squared cosine of the principal angles between span(W) and the "
                       "top-k eigenvectors of the training covariance (1 at the optimum, "
                       "Tipping & Bishop 1999); the threshold is theory.min_subspace_similarity.")),
    ]


def beta_sweep_closed_form(run: str, optimum: LinearBetaOptimum, rate: tuple[float, float],
                           distortion: tuple[float, float], active_units: int,
                           moved: tuple[float, float] = (0.0, 0.0)) -> list[RawRecord]:
    """A linear beta-VAE's rate, distortion and number of active dimensions against the
    closed-form optimum at its beta (``theory.linear_beta``), from the training data's
    eigenvalues. Rate and distortion carry their test-set standard errors, combined with how
    much each still moved over the second half of training (``moved``: the optimizer's own
    measure of how far from converged it may be)."""
    b = optimum.beta
    return [
        _model(name="sweep_rate_closed_form", run=run, kind="equal", empirical=rate[0],
               theoretical=optimum.rate, stderr=math.hypot(rate[1], moved[0]),
               catches=["beta_term", "kl_formula", "reparam_scale"],
               detail=(f"Test-set rate R = E KL(q(z|x) || p(z)) at beta = {b:g} vs the closed "
                       f"form 1/2 sum_active log(lambda_j / (beta sigma^2)), sigma^2 = "
                       f"{optimum.sigma2:.4g}; error: test-set SE and the {moved[0]:.2g} nats "
                       "it moved over the second half of training.")),
        _model(name="sweep_distortion_closed_form", run=run, kind="equal",
               empirical=distortion[0], theoretical=optimum.distortion,
               stderr=math.hypot(distortion[1], moved[1]),
               catches=["beta_term", "likelihood_constant", "reparam_scale"],
               detail=(f"Test-set distortion D = -E log p(x|z) at beta = {b:g} vs the closed form "
                       f"d/2 (log(2 pi sigma^2) + 1); error: test-set SE and the {moved[1]:.2g} "
                       "nats it moved over the second half of training.")),
        _model(name="sweep_active_dimensions_closed_form", run=run, kind="exact",
               empirical=float(active_units), theoretical=float(optimum.active), tolerance=0.0,
               catches=["beta_term", "kl_formula"],
               detail=(f"Active units (Cov_x E_q[z_u] > 0.01) at beta = {b:g} vs the closed-form "
                       "count of eigenvalues above beta sigma^2.")),
    ]


def fixed_test_set_check(run: str, digest: str, expected: str) -> RawRecord:
    """The evaluated test points are the dataset's fixed preprocessing (binarized or dequantized
    once by the data stage, the same for every run): paired comparisons need them."""
    return _model(
        name="test_set_is_the_fixed_one", run=run, kind="exact",
        empirical=float(digest == expected), theoretical=1.0, tolerance=0.0,
        catches=["test_rebinarized"],
        detail=(f"SHA-256 of the test inputs this evaluation used ({digest[:12]}) vs the one the "
                f"data stage recorded for this decoder ({expected[:12]})."))


def exact_value_check(name: str, run: str, estimate: tuple[float, float], exact: float,
                      catches: list[str], detail: str) -> RawRecord:
    """An estimate with its SE against an exact value (two-sided)."""
    mean, se = estimate
    if not math.isfinite(se):
        se = math.nan
    return _model(name=name, run=run, kind="equal", empirical=float(mean),
                  theoretical=float(exact), stderr=float(se), catches=catches, detail=detail)


__all__ = ["GRAD_RTOL", "VALUE_RTOL", "beta_sweep_closed_form", "elbo_gap_check",
           "exact_value_check", "fixed_test_set_check", "is_converges_check",
           "linear_optimum_checks", "objective_matches_reference"]

"""Estimator self-tests: identities and properties that hold for any model parameters.

They test the estimators and the random numbers (Monte Carlo against analytic KL, the 1/sqrt(S)
scaling of the ELBO's error, L_1 <= L_5 <= ... <= L_K on common random numbers, the Alemi et
al. bounds, the telescoping TC decomposition), not the trained models: a model check
(``vaebench.theory.model_checks``) is what a wrong model, objective or estimator fails. Each
builder returns raw records (``category="self-test"``) that ``records.finalize`` judges.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from vaebench.estimators import (
    as_float64,
    iw_bounds_crn,
    kl_mc_variance,
    kl_per_dim,
    mc_mean_se,
    se_over_points,
)
from vaebench.theory.records import (  # noqa: F401  (re-exported for callers)
    BUG_CLASSES,
    CheckRecord,
    RawRecord,
    bonferroni_z,
    finalize,
    record,
)

_record = record

def _mean_se_pair(name: str, value: object) -> tuple[float, float]:
    try:
        mean, se = value  # type: ignore[misc]
        mean, se = float(mean), float(se)
    except (TypeError, ValueError):
        raise TypeError(f"{name} entries must be (mean, se) pairs; got {value!r}") from None
    if se < 0.0:
        raise ValueError(f"{name} standard errors must be >= 0 (NaN: undetermined); got {se!r}")
    return mean, se


# 1 -----------------------------------------------------------------------------------------
def kl_check(run: str, mu: Tensor, logvar: Tensor, kl_mc: Tensor) -> RawRecord:
    """Monte Carlo KL (S, N) averaged vs the analytic KL averaged over the N rows.

    Theory: K&W 2014, appendix B; the estimator log q(z|x) - log p(z) is unbiased with the
    known variance ``kl_mc_variance`` per row, so SE^2 = sum_n Var_n / (N^2 S) (only eps is
    random, x fixed).
    """
    m = as_float64("mu", mu, 2)
    lv = as_float64("logvar", logvar, 2)
    k = as_float64("kl_mc", kl_mc, 2)
    s, n = k.shape
    if m.shape[0] != n:
        raise ValueError(f"kl_mc must have shape (S, {m.shape[0]}) to match mu; got {(s, n)}")
    se = math.sqrt(float(kl_mc_variance(m, lv).sum()) / (n * n * s))
    return _record(
        name="kl_mc_vs_analytic", run=run, kind="equal", empirical=float(k.mean()),
        theoretical=float(kl_per_dim(m, lv).sum()), stderr=se,
        detail=(f"Mean single-sample MC KL over S={s} draws x N={n} points vs the analytic "
                "KL (K&W 2014 app. B); stderr = sqrt(sum_n Var_n / (N^2 S)) from the exact "
                "variance sum_j [mu_j^2 sigma_j^2 + (sigma_j^2 - 1)^2 / 2], since only eps is "
                "random."),
    )


# 4 -----------------------------------------------------------------------------------------
def decomposition_check(run: str, elbo: Tensor, kl_to_post: Tensor, log_px: Tensor,
                        rtol: float = 1e-6) -> RawRecord:
    """ELBO + KL(q(z|x) || p(z|x)) = log p(x) per point, exactly (Lucas et al. 2019).

    The record holds the worst point (largest relative residual); tolerance
    rtol * max(1, |log p(x)|) there.
    """
    e = as_float64("elbo", elbo, 1)
    k = as_float64("kl_to_post", kl_to_post, 1)
    lp = as_float64("log_px", log_px, 1)
    if not e.shape == k.shape == lp.shape:
        raise ValueError(f"elbo, kl_to_post and log_px must have the same shape; got "
                         f"{tuple(e.shape)}, {tuple(k.shape)}, {tuple(lp.shape)}")
    lhs = e + k
    rel = (lhs - lp).abs() / lp.abs().clamp(min=1.0)
    rel = torch.where(torch.isnan(rel), torch.full_like(rel, math.inf), rel)
    i = int(rel.argmax())
    theo = float(lp[i])
    return _record(
        name="linear_decomposition", run=run, kind="exact",
        empirical=float(lhs[i]), theoretical=theo, tolerance=rtol * max(1.0, abs(theo)),
        detail=(f"ELBO + KL(q || p(z|x)) vs exact log p(x) at the worst of {lp.shape[0]} points "
                f"(an identity, so the tolerance is floating point, rtol {rtol:g})."),
    )


# 5 -----------------------------------------------------------------------------------------
def bound_order_checks(run: str, log_w: Tensor, ks: Sequence[int] = (1, 5, 50, 500),
                       log_px_exact: Tensor | None = None) -> list[RawRecord]:
    """L_k <= L_k' for consecutive k < k' (Burda et al. 2016, Theorem 1) on common random
    numbers, and L_K <= log p(x) when the exact log p(x) is given.

    d = L_k'(x) - L_k(x) uses the first k and first k' of the same K draws per point. The
    record tests the mean of d >= 0 with SE = spread of d across points / sqrt(N): there is
    one draw of d per point, so the within-point variance cannot be estimated, and the
    across-point spread estimates E_x Var_eps(d) + Var_x E_eps(d), which is at least the
    fixed-x variance (conservative) and exactly the variance of a test-set mean. Since
    gap_k - gap_k' = L_k' - L_k point by point, these records are also the test that the gap
    log p(x) - L_k shrinks with k (not repeated, so Bonferroni counts it once).
    """
    lw = as_float64("log_w", log_w, 2)
    big_k, n = lw.shape
    ks_sorted = sorted({int(k) for k in ks})
    if not ks_sorted or ks_sorted[0] < 1 or ks_sorted[-1] > big_k:
        raise ValueError(f"ks must be integers in 1..{big_k} (K of log_w); got {list(ks)}")
    bounds = iw_bounds_crn(lw, ks_sorted)
    lp = None
    if log_px_exact is not None:
        lp = as_float64("log_px_exact", log_px_exact, 1)
        if lp.shape[0] != n:
            raise ValueError(f"log_px_exact must have shape ({n},); got {tuple(lp.shape)}")
    records = []
    for k, k2 in zip(ks_sorted[:-1], ks_sorted[1:], strict=True):
        mean, se = se_over_points(bounds[k2] - bounds[k])
        gap_note = ""
        if lp is not None:
            gap_note = (f" Gaps log p(x) - L_k: {float((lp - bounds[k]).mean()):.4g} (k={k}), "
                        f"{float((lp - bounds[k2]).mean()):.4g} (k={k2}).")
        records.append(_record(
            name=f"iw_bound_order_k{k}_le_k{k2}", run=run, kind="ge", empirical=mean,
            theoretical=0.0, stderr=se,
            detail=(f"Mean of L_{k2} - L_{k} over {n} points on common random numbers must be "
                    ">= 0 (Burda et al. 2016, Thm 1; equivalently the gap to log p(x) shrinks); "
                    "stderr is the spread of the difference across points / sqrt(N), one draw "
                    "per point, which is conservative for fixed x." + gap_note),
        ))
    return records


# 6 -----------------------------------------------------------------------------------------
def _var_of_sample_variance(pooled: Tensor, s: int) -> Tensor:
    """Var of the 1/(S-1) sample variance of S iid draws, per column, from pooled moments.

    Var(s^2) = mu4 / S - sigma^4 (S - 3) / (S (S - 1)), the standard moment result for the
    unbiased sample variance (for Gaussian draws it equals 2 sigma^4 / (S - 1)).
    """
    centred = pooled - pooled.mean(0)
    mu4 = (centred ** 4).mean(0)
    var = pooled.var(dim=0, correction=1)
    return mu4 / s - var * var * (s - 3) / (s * (s - 1))


def empirical_elbo_checks(run: str, elbo_small: Tensor, elbo_large: Tensor) -> list[RawRecord]:
    """Two independent MC ELBO estimates over the same fixed points: (S1, N) and (S2, N).

    (a) "equal": the S1-draw dataset mean vs the S2-draw one, stderr sqrt(SE1^2 + SE2^2)
    (independent draws; each SE from ``mc_mean_se``).
    (b) "equal": SE1 / SE2 vs sqrt(S2 / S1), since SE_j^2 = A_j / (N^2 S_j) with
    A_j = sum_x s_{x,j}^2 estimating the same sum_x sigma_x^2. Delta method:
    log(SE1/SE2) = 1/2 log(S2/S1) + 1/2 (log A_1 - log A_2), so
    Var log(SE1/SE2) ~ (Var A_1 + Var A_2) / (4 (sum_x sigma_x^2)^2) with
    Var A_j = sum_x Var(s_{x,j}^2), Var(s^2) = mu4 / S - sigma^4 (S - 3) / (S (S - 1)); the
    per-point sigma_x^2 and mu4_x are estimated from both samples pooled (same distribution
    under the hypothesis), and stderr = sqrt(S2/S1) sqrt(Var log ratio).
    """
    e1 = as_float64("elbo_small", elbo_small, 2)
    e2 = as_float64("elbo_large", elbo_large, 2)
    s1, n = e1.shape
    s2 = e2.shape[0]
    if e2.shape[1] != n:
        raise ValueError(f"elbo_large must have shape (S2, {n}) to match elbo_small; "
                         f"got {tuple(e2.shape)}")
    if s1 < 2 or s2 < 2:
        raise ValueError(f"elbo_small and elbo_large need S >= 2 draws each; got S1={s1}, "
                         f"S2={s2}")
    m1, se1 = mc_mean_se(e1)
    m2, se2 = mc_mean_se(e2)
    pooled = torch.cat([e1, e2], dim=0)
    sum_var = float(pooled.var(dim=0, correction=1).sum())
    var_a1 = max(0.0, float(_var_of_sample_variance(pooled, s1).sum()))
    var_a2 = max(0.0, float(_var_of_sample_variance(pooled, s2).sum()))
    theo_ratio = math.sqrt(s2 / s1)
    if sum_var > 0.0:
        se_ratio = theo_ratio * math.sqrt((var_a1 + var_a2) / (4.0 * sum_var * sum_var))
    else:
        se_ratio = 0.0
    emp_ratio = se1 / se2 if se2 > 0.0 else math.nan
    return [
        _record(
            name="elbo_mc_small_vs_large", run=run, kind="equal", empirical=m1, theoretical=m2,
            stderr=math.sqrt(se1 * se1 + se2 * se2),
            detail=(f"Dataset ELBO from S1={s1} draws vs an independent S2={s2}-draw estimate "
                    "on the same points; stderr combines both MC standard errors (fixed x, "
                    "eps random)."),
        ),
        _record(
            name="elbo_se_scales_inv_sqrt_s", run=run, kind="equal", empirical=emp_ratio,
            theoretical=theo_ratio, stderr=se_ratio,
            detail=(f"SE(S1={s1}) / SE(S2={s2}) vs sqrt(S2/S1) = {theo_ratio:.4g} (1/sqrt(S) "
                    "scaling); stderr by the delta method from the sampling variance of the "
                    "per-point sample variances, mu4/S - sigma^4 (S-3)/(S(S-1)), moments "
                    "pooled over both samples."),
        ),
    ]


# 7 -----------------------------------------------------------------------------------------
def beta_sweep_checks(runs: Sequence[str], betas: Sequence[float],
                      rate: Sequence[tuple[float, float]],
                      distortion: Sequence[tuple[float, float]],
                      mi: Sequence[tuple[float, float]], entropy: float,
                      mi_source: str = "estimate",
                      mi_upper: Sequence[tuple[float, float]] | None = None,
                      upper_source: str = "leave-one-out upper bound") -> list[RawRecord]:
    """Rate-distortion checks over a beta sweep (Alemi et al. 2018, eqs. 4-6).

    For runs sorted by beta: the rate R is non-increasing in beta ("ge" on R_i - R_{i+1},
    stderr of independent runs combined); per run I <= R ("le") and H - D <= I ("le"), with
    D = -E log p(x|z) and H the data entropy (exact). ``mi`` is (mean, se) per run from
    ``mi_source``: "closed form" (linear-Gaussian, se 0) or "estimate" (the mixture
    estimator, a lower bound on I capped at log N, so I_est <= I <= R stays a valid test).
    H - D <= I is tested against ``mi_upper`` (an upper bound on I, e.g. the leave-one-out
    estimator), so H - D <= I <= I_upper keeps it valid; without it, against ``mi``. The I and
    R (or D) standard errors are combined as independent (they come from the same points; a
    positive correlation makes this conservative).
    """
    n = len(runs)
    if not (len(betas) == len(rate) == len(distortion) == len(mi) == n) or n == 0:
        raise ValueError(f"runs, betas, rate, distortion and mi must have the same non-zero "
                         f"length; got {len(runs)}, {len(betas)}, {len(rate)}, "
                         f"{len(distortion)}, {len(mi)}")
    if len(set(float(b) for b in betas)) != n:
        raise ValueError(f"betas must be distinct; got {list(betas)}")
    h = float(entropy)
    order = sorted(range(n), key=lambda i: float(betas[i]))
    r_pairs = [_mean_se_pair("rate", rate[i]) for i in order]
    d_pairs = [_mean_se_pair("distortion", distortion[i]) for i in order]
    i_pairs = [_mean_se_pair("mi", mi[i]) for i in order]
    upper = mi if mi_upper is None else mi_upper
    if mi_upper is None:
        upper_source = mi_source
    u_pairs = [_mean_se_pair("mi_upper", upper[i]) for i in order]
    names = [str(runs[i]) for i in order]
    bs = [float(betas[i]) for i in order]
    records = []
    for j in range(n - 1):
        (ra, sa), (rb, sb) = r_pairs[j], r_pairs[j + 1]
        records.append(_record(
            name=f"rate_nonincreasing_beta{bs[j]:g}_to_{bs[j + 1]:g}",
            run=f"{names[j]} -> {names[j + 1]}", kind="ge", empirical=ra - rb, theoretical=0.0,
            stderr=math.sqrt(sa * sa + sb * sb),
            detail=(f"Rate at beta={bs[j]:g} minus rate at beta={bs[j + 1]:g} must be >= 0 "
                    "(Alemi et al. 2018); stderr combines the two independent runs' SEs."),
        ))
    for j in range(n):
        (r, sr), (dist, sd), (i_mean, si) = r_pairs[j], d_pairs[j], i_pairs[j]
        records.append(_record(
            name="mi_le_rate", run=names[j], kind="le", empirical=i_mean, theoretical=r,
            stderr=math.sqrt(si * si + sr * sr),
            detail=(f"I(x;z) ({mi_source}) vs rate R at beta={bs[j]:g}: I <= R (Alemi et al. "
                    "2018); stderr combines both SEs as independent."),
        ))
        iu, su = u_pairs[j]
        records.append(_record(
            name="entropy_minus_distortion_le_mi", run=names[j], kind="le", empirical=h - dist,
            theoretical=iu, stderr=math.sqrt(sd * sd + su * su),
            detail=(f"H - D vs I(x;z) ({upper_source}) at beta={bs[j]:g}: H - D <= I (Alemi et "
                    "al. 2018), H exact; stderr combines the D and I SEs as independent."),
        ))
    return records


# 8 -----------------------------------------------------------------------------------------
def tc_decomposition_check(run: str, mi_tc_dwkl_sum: Tensor, kl_analytic: Tensor) -> RawRecord:
    """MI + TC + DWKL (per sample, (N,) or (S, N)) averaged vs the mean analytic KL (N,).

    Chen et al. 2018, eq. 2: the three MWS terms telescope to log q(z|x) - log p(z), an
    unbiased estimate of KL(q(z|x) || p(z)). The SE is the spread across samples of the
    residual sum - KL_analytic(x) / sqrt(count): subtracting each point's own analytic KL
    removes the across-x spread, leaving only the eps variance (fixed x).
    """
    s = as_float64("mi_tc_dwkl_sum", mi_tc_dwkl_sum, None)
    ka = as_float64("kl_analytic", kl_analytic, 1)
    if s.dim() not in (1, 2) or s.shape[-1] != ka.shape[0]:
        raise ValueError(f"mi_tc_dwkl_sum must have shape ({ka.shape[0]},) or "
                         f"(S, {ka.shape[0]}); got {tuple(s.shape)}")
    resid = (s - ka).reshape(-1)
    _, se = se_over_points(resid)
    return _record(
        name="tc_decomposition_sum_vs_kl", run=run, kind="equal", empirical=float(s.mean()),
        theoretical=float(ka.mean()), stderr=se,
        detail=("Mean of MI + TC + DWKL (minibatch-weighted sampling, Chen et al. 2018) vs the "
                "mean analytic KL; stderr is the per-sample spread of (sum - own analytic KL) "
                "/ sqrt(count), i.e. eps noise only."),
    )

"""Every check passes on correct inputs and fails on a planted error; finalize's arithmetic."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from vaebench.estimators import gaussian_entropy, mc_mean_se, se_over_points, tc_terms
from vaebench.theory.checks import (
    CheckRecord,
    beta_sweep_checks,
    bonferroni_z,
    bound_order_checks,
    decomposition_check,
    empirical_elbo_checks,
    finalize,
    kl_check,
    tc_decomposition_check,
)
from vaebench.theory.linear_vae import (
    kl_to_posterior,
    linear_gaussian_mi,
    linear_vae_elbo,
    optimal_diagonal_encoder,
)
from vaebench.theory.ppca import ppca_log_likelihood, ppca_posterior


def _verdicts(records):
    return [r.passed for r in finalize(records)]


# ---- finalize ---------------------------------------------------------------------------------
def test_bonferroni_z():
    assert bonferroni_z(0.01, 100) == pytest.approx(3.8906, abs=1e-4)
    assert bonferroni_z(0.01, 1) == pytest.approx(2.5758, abs=1e-4)
    assert bonferroni_z(0.05, 1) == pytest.approx(1.9600, abs=1e-4)
    with pytest.raises(ValueError, match="alpha must be in"):
        bonferroni_z(1.5, 3)


def test_finalize_applies_each_kind_with_holm():
    def rec(kind, emp, theo, stderr=None, tolerance=None):
        return CheckRecord(name=kind, run="r", kind=kind, empirical=emp, theoretical=theo,
                           stderr=stderr, tolerance=tolerance)

    alpha = 0.01
    records = [
        rec("equal", 1.0 + 0.5, 1.0, stderr=1.0),        # z = 0.5: kept
        rec("equal", 1.0 - 5.0, 1.0, stderr=1.0),        # z = -5: rejected at step 1
        rec("le", 5.0, 5.0 - 2.0, stderr=1.0),           # one-sided z = 2: p = 0.023 > 0.01/2
        rec("ge", -3.0, 0.0, stderr=1.0),                # one-sided p = 0.00135 < 0.01/3
        rec("le", 2.0 + 1e-7, 2.0, tolerance=1e-6),      # deterministic
        rec("ge", 0.89, 0.9, tolerance=0.0),             # deterministic threshold, fails
        rec("exact", 3.0 + 2e-6, 3.0, tolerance=1e-6),   # fails
        rec("gap", 9.5, 10.0, tolerance=1.0),            # gap 0.5 in [0, 1]
        rec("gap", 10.1, 10.0, tolerance=1.0),           # negative gap fails
        rec("gap", 8.0, 10.0, tolerance=1.0),            # gap 2 > 1 fails
        rec("exact", math.nan, 1.0, tolerance=1.0),      # NaN fails
    ]
    out = finalize(records, alpha=alpha)
    assert [r.passed for r in out] == [True, False, True, False, True, False, False, True,
                                       False, False, False]
    # p-values: two-sided for equal, one-sided for le/ge (scipy, independently)
    assert out[0].p == pytest.approx(2 * norm.sf(0.5))
    assert out[2].p == pytest.approx(norm.sf(2.0)) and out[3].p == pytest.approx(norm.cdf(-3.0))
    # Holm: sorted p = [p1, p3, p2, p0]; the rank-3 record (le, z = 2) is tested at alpha / 2
    assert out[2].tolerance == pytest.approx(norm.isf(alpha / 2) * 1.0, rel=1e-6)
    assert out[1].tolerance == pytest.approx(norm.isf(alpha / 8) * 1.0, rel=1e-6)
    assert out[4].z is None and records[0].passed is None  # inputs untouched
    assert "m = 4" in out[0].detail
    assert finalize(out)[0].detail == out[0].detail  # idempotent


def test_families_are_corrected_apart():
    """A model check is judged by Holm over the model checks only: self-tests do not raise
    its bar."""
    model = CheckRecord(name="m", run="r", kind="equal", empirical=2.7, theoretical=0.0,
                        stderr=1.0, category="model", catches=("kl_formula",))
    selftests = [CheckRecord(name=f"s{i}", run="r", kind="equal", empirical=0.0,
                             theoretical=0.0, stderr=1.0) for i in range(200)]
    assert not finalize([model, *selftests])[0].passed  # p = 0.007 < 0.01 with m = 1
    assert finalize([model.__class__(**{**model.__dict__, "category": "self-test"}),
                     *selftests])[0].passed  # among 201 self-tests the bar is higher
    with pytest.raises(ValueError, match="unknown bug classes"):
        CheckRecord(name="m", run="r", kind="exact", empirical=0.0, theoretical=0.0,
                    tolerance=0.0, category="model", catches=("typo",))


def test_finalize_exact_identity_with_zero_stderr_passes():
    r = CheckRecord(name="id", run="r", kind="ge", empirical=-1e-14, theoretical=0.0, stderr=0.0)
    assert finalize([r])[0].passed
    bad = CheckRecord(name="id", run="r", kind="ge", empirical=-1e-3, theoretical=0.0, stderr=0.0)
    assert not finalize([bad])[0].passed and finalize([bad])[0].z == -math.inf


def test_records_are_json_ready_dicts_and_nan_stderr_fails():
    log_w = torch.from_numpy(np.random.default_rng(0).normal(size=(50, 20)))
    records = bound_order_checks("run", log_w, ks=(1, 5, 50))
    restored = json.loads(json.dumps(records))
    assert [r.passed for r in finalize(restored)] == [r.passed for r in finalize(records)]
    undetermined = dict(restored[0], stderr=math.nan)
    out = finalize([undetermined])[0]
    assert out.passed is False and math.isnan(out.z)
    with pytest.raises(ValueError, match="unknown fields"):
        finalize([dict(restored[0], colour="red")])


def test_record_validation():
    with pytest.raises(ValueError, match="kind must be one of"):
        CheckRecord(name="x", run="r", kind="approx", empirical=0.0, theoretical=0.0, stderr=1.0)
    with pytest.raises(ValueError, match="needs a tolerance"):
        CheckRecord(name="x", run="r", kind="gap", empirical=0.0, theoretical=0.0)


# ---- 1. KL ------------------------------------------------------------------------------------
def test_kl_check_passes_and_fails_on_biased_kl():
    rng = np.random.default_rng(0)
    n, d, s = 4000, 10, 4
    mu = rng.standard_normal((n, d))
    logvar = rng.normal(-1.0, 0.5, (n, d))
    sd = np.exp(0.5 * logvar)
    z = mu + sd * rng.standard_normal((s, n, d))
    kl_mc = (norm.logpdf(z, mu, sd) - norm.logpdf(z)).sum(-1)
    args = (torch.from_numpy(mu), torch.from_numpy(logvar))
    record = kl_check("run", *args, torch.from_numpy(kl_mc))
    assert _verdicts([record]) == [True]
    # the known-variance stderr agrees with the one estimated from the draws themselves
    assert record["stderr"] == pytest.approx(mc_mean_se(torch.from_numpy(kl_mc))[1], rel=0.05)
    assert _verdicts([kl_check("run", *args, torch.from_numpy(kl_mc + 0.1))]) == [False]


# ---- linear-VAE fixtures ----------------------------------------------------------------------
def _linear_problem(n=300, d=6, k=3, seed=1):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((d, k))
    mu = rng.standard_normal(d)
    s2 = 0.5
    x = rng.standard_normal((n, k)) @ w.T + mu + math.sqrt(s2) * rng.standard_normal((n, d))
    v, b, dd = (t.numpy() for t in optimal_diagonal_encoder(w, mu, s2))
    v = v + 0.05 * rng.standard_normal((k, d))  # a good but imperfect encoder
    dd = 1.5 * dd
    return x, w, mu, s2, v, b, dd


def _log_weights(x, w, mu, s2, v, b, dd, draws, seed):
    """log w = log p(x|z) + log p(z) - log q(z|x) for z ~ q (draws, N), numpy float64."""
    rng = np.random.default_rng(seed)
    m = x @ v.T + b
    sd = np.sqrt(dd)
    z = m + sd * rng.standard_normal((draws, *m.shape))
    log_px_z = norm.logpdf(x, z @ w.T + mu, math.sqrt(s2)).sum(-1)
    return log_px_z + norm.logpdf(z).sum(-1) - norm.logpdf(z, m, sd).sum(-1)


# ---- 4. ELBO decomposition --------------------------------------------------------------------
def test_decomposition_check():
    x, w, mu, s2, v, b, dd = _linear_problem()
    elbo = linear_vae_elbo(x, w, mu, s2, v, b, dd).elbo
    gap = kl_to_posterior(x, w, mu, s2, v, b, dd)
    assert _verdicts([decomposition_check("run", elbo, gap, ppca_log_likelihood(x, w, mu, s2))]) \
        == [True]
    bad = ppca_log_likelihood(x, w, mu, 1.01 * s2)
    assert _verdicts([decomposition_check("run", elbo, gap, bad)]) == [False]


# ---- 5. bound order ---------------------------------------------------------------------------
def test_bound_order_checks_pass_on_correct_weights():
    x, w, mu, s2, v, b, dd = _linear_problem(n=300)
    log_w = torch.from_numpy(_log_weights(x, w, mu, s2, v, b, dd, 500, seed=5))
    log_px = ppca_log_likelihood(x, w, mu, s2)
    records = bound_order_checks("run", log_w, log_px_exact=log_px)
    assert [r["name"] for r in records] == ["iw_bound_order_k1_le_k5", "iw_bound_order_k5_le_k50",
                                         "iw_bound_order_k50_le_k500"]
    assert all(_verdicts(records))
    assert all(r["empirical"] > 0 for r in records[:3])  # the bound visibly tightens


def test_bound_order_checks_fail_when_broken():
    x, w, mu, s2, v, b, dd = _linear_problem(n=300)
    log_w = _log_weights(x, w, mu, s2, v, b, dd, 500, seed=6)
    broken = log_w - 0.05 * np.arange(500)[:, None]  # later draws systematically worse
    assert not all(_verdicts(bound_order_checks("run", torch.from_numpy(broken))))


def test_bound_order_with_exact_posterior_has_zero_gap():
    x, w, mu, s2, *_ = _linear_problem(n=50)
    mean, cov = ppca_posterior(x, w, mu, s2)
    rng = np.random.default_rng(7)
    chol = np.linalg.cholesky(cov.numpy())
    z = mean.numpy() + rng.standard_normal((500, 50, 3)) @ chol.T
    diff = z - mean.numpy()
    log_q = (-0.5 * np.einsum("snk,kl,snl->sn", diff, np.linalg.inv(cov.numpy()), diff)
             - 0.5 * np.linalg.slogdet(2 * np.pi * cov.numpy())[1])
    log_w = (norm.logpdf(x, z @ w.T + mu, math.sqrt(s2)).sum(-1) + norm.logpdf(z).sum(-1) - log_q)
    log_px = ppca_log_likelihood(x, w, mu, s2)
    np.testing.assert_allclose(log_w, np.broadcast_to(log_px.numpy(), log_w.shape), rtol=1e-10)
    assert all(_verdicts(bound_order_checks("run", torch.from_numpy(log_w), log_px_exact=log_px)))


# ---- 6. empirical ELBO and its SE ---------------------------------------------------------------
def test_empirical_elbo_checks():
    x, w, mu, s2, v, b, dd = _linear_problem(n=400)
    small = _log_weights(x, w, mu, s2, v, b, dd, 10, seed=8)
    large = _log_weights(x, w, mu, s2, v, b, dd, 160, seed=9)
    records = empirical_elbo_checks("run", torch.from_numpy(small), torch.from_numpy(large))
    assert _verdicts(records) == [True, True]
    assert records[1]["theoretical"] == pytest.approx(4.0)
    # a "large" estimate whose noise is halved (its SE does not scale as 1/sqrt(S))
    squeezed = large.mean(0) + 0.5 * (large - large.mean(0))
    records = empirical_elbo_checks("run", torch.from_numpy(small), torch.from_numpy(squeezed))
    assert _verdicts(records) == [True, False]
    # an offset estimate fails the agreement
    records = empirical_elbo_checks("run", torch.from_numpy(small), torch.from_numpy(large + 0.3))
    assert _verdicts(records)[0] is False


def test_se_ratio_stderr_matches_simulation():
    """The delta-method SE of SE1/SE2 against the spread over repeated experiments."""
    rng = np.random.default_rng(10)
    n, s1, s2 = 200, 4, 64  # the evaluate stage's defaults for S
    sd_x = rng.uniform(0.5, 2.0, n)
    ratios, stderrs = [], []
    for _ in range(300):
        small = sd_x * rng.standard_t(6, (s1, n))  # heavy tails: mu4 matters
        large = sd_x * rng.standard_t(6, (s2, n))
        rec = empirical_elbo_checks("r", torch.from_numpy(small), torch.from_numpy(large))[1]
        ratios.append(rec["empirical"])
        stderrs.append(rec["stderr"])
    assert np.std(ratios) == pytest.approx(np.mean(stderrs), rel=0.15)
    assert np.mean(ratios) == pytest.approx(4.0, abs=3 * np.std(ratios) / math.sqrt(300) + 0.02)


# ---- 7. beta sweep ----------------------------------------------------------------------------
def _sweep():
    """Exact-theory sweep on Gaussian data: linear encoders shrinking with beta, decoders fit by
    regression; R and D estimated on samples, I in closed form, H exact."""
    rng = np.random.default_rng(11)
    d, k, n = 4, 2, 20_000
    a = rng.standard_normal((d, d))
    cov_x = a @ a.T / d + 0.3 * np.eye(d)
    x = torch.from_numpy(rng.multivariate_normal(np.zeros(d), cov_x, n))
    v0 = rng.standard_normal((k, d))
    dd = torch.from_numpy(np.array([0.4, 0.6]))
    betas = [0.25, 0.5, 1.0, 2.0, 4.0]
    rate, dist, mi = [], [], []
    for beta in betas:
        v = torch.from_numpy(v0 / (1.0 + beta))
        cov_z = v @ torch.from_numpy(cov_x) @ v.T + torch.diag(dd)
        w = torch.from_numpy(cov_x) @ v.T @ torch.linalg.inv(cov_z)  # E[x | z] = W z
        resid = torch.from_numpy(cov_x) - w @ cov_z @ w.T
        s2 = float(torch.trace(resid) / d)
        out = linear_vae_elbo(x, w, torch.zeros(d, dtype=torch.float64), s2, v,
                              torch.zeros(k, dtype=torch.float64), dd)
        rate.append(se_over_points(out.kl))
        mean_r, se_r = se_over_points(-out.recon)
        dist.append((mean_r, se_r))
        mi.append((linear_gaussian_mi(v, dd, torch.from_numpy(cov_x)), 0.0))
    return [f"b{b}" for b in betas], betas, rate, dist, mi, gaussian_entropy(torch.from_numpy(cov_x))


def test_beta_sweep_checks_pass_on_consistent_sweep():
    runs, betas, rate, dist, mi, h = _sweep()
    records = beta_sweep_checks(runs, betas, rate, dist, mi, h, mi_source="closed form")
    assert len(records) == 4 + 2 * 5
    assert all(_verdicts(records))
    assert "closed form" in records[-1]["detail"]


def test_beta_sweep_checks_fail_on_planted_errors():
    runs, betas, rate, dist, mi, h = _sweep()
    increasing = beta_sweep_checks(runs, betas[::-1], rate, dist, mi, h)
    assert not all(_verdicts(increasing[:4]))
    too_much_mi = [(r + 1.0, se) for r, se in rate]
    verdicts = _verdicts(beta_sweep_checks(runs, betas, rate, dist, too_much_mi, h))
    assert not any(verdicts[4::2])  # every I <= R record fails
    # a distortion understated by 1 nat (e.g. a dropped normalizing constant) breaks H - D <= I
    understated = [(m - 1.0, se) for m, se in dist]
    verdicts = _verdicts(beta_sweep_checks(runs, betas, rate, understated, mi, h))
    assert not any(verdicts[5::2])  # every H - D <= I record fails


# ---- 8. TC decomposition ----------------------------------------------------------------------
def test_tc_decomposition_check():
    rng = np.random.default_rng(12)
    n, d = 4000, 5
    mu = rng.standard_normal((n, d))
    logvar = rng.normal(-1.0, 0.5, (n, d))
    sd = np.exp(0.5 * logvar)
    z = mu + sd * rng.standard_normal((n, d))
    log_q = norm.logpdf(z, mu, sd).sum(-1)
    log_p = norm.logpdf(z).sum(-1)
    t = [torch.from_numpy(a) for a in (z, mu, logvar, log_q, log_p)]
    terms = tc_terms(*t, dataset_size=n, batch_size=200)
    total = terms["mi"] + terms["tc"] + terms["dwkl"]
    kl = torch.from_numpy(0.5 * (mu ** 2 + sd ** 2 - 1 - logvar).sum(-1))
    assert _verdicts([tc_decomposition_check("run", total, kl)]) == [True]
    assert _verdicts([tc_decomposition_check("run", total + 0.1, kl)]) == [False]

"""Model checks: each passes on the right model and fails on a wrong one, against references
computed here independently (numpy/scipy float64, Monte Carlo, closed forms)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from vaebench import objectives
from vaebench.cells import Cell, run_spec
from vaebench.config import parse_params, read_yaml
from vaebench.models import build_model
from vaebench.models.base import DataInfo
from vaebench.theory import model_checks, reference
from vaebench.theory.linear_beta import linear_beta_optimum
from vaebench.theory.linear_vae import gaussian_aggregate_terms, kl_to_posterior
from vaebench.theory.ppca import ppca_log_likelihood
from vaebench.theory.records import finalize

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def verdicts(records):
    return [r.passed for r in finalize(records)]


def small_model(name: str, likelihood: str = "bernoulli", seed: int = 0):
    raw = read_yaml(ROOT / "presets" / "tiny.yaml")
    raw["train"].setdefault("betatc", {"hidden": [16], "latent_dim": 3, "epochs": 1,
                                       "batch_size": 16, "lr": 0.01, "alpha": 1.0,
                                       "beta": 6.0, "gamma": 1.0})
    raw["train"].setdefault("beta_vae", {"hidden": [16], "latent_dim": 3, "epochs": 1,
                                         "batch_size": 16, "lr": 0.01, "beta": 4.0})
    raw["study"]["models"] = [name] if name != "linear" else ["vae"]
    spec = run_spec(parse_params(raw), Cell(name, "digits" if name != "linear" else
                                            "linear-gaussian", 0,
                                            "linear" if name == "linear" else "grid"))
    torch.manual_seed(seed)
    dim = 12
    info = DataInfo(dim=dim, image_shape=None, kind="image" if likelihood == "bernoulli"
                    else "continuous", n_classes=3, size=500)
    model = build_model(name, spec.train, info, backend="eager")
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(32, dim, generator=gen)
    x = (x > 0.5).float() if likelihood == "bernoulli" else x
    y = torch.randint(0, 3, (32,), generator=gen)
    return model, x, (y if name == "cvae" else None)


@pytest.mark.parametrize("name", ["vae", "beta_vae", "cvae", "iwae", "betatc", "linear"])
def test_training_objective_matches_its_reference(name):
    model, x, y = small_model(name, "gaussian" if name == "linear" else "bernoulli")
    values = reference.objective_and_gradients(model, x, y, seed=123, dataset_size=500)
    assert verdicts(model_checks.objective_matches_reference("r", name, *values)) == [True, True]


def test_gradient_check_is_not_fooled_by_a_relu_kink_under_float32_rounding():
    """A first-layer pre-activation that float32 rounds above zero and float64 does not:
    the two precisions take different ReLU branches there, so float32 and float64 gradients of
    the same right objective differ by that unit's whole contribution. Both gradients of the
    check are float64, so the right model passes; the float32 gradient shows the jump."""
    model, x, y = small_model("vae")
    layer = model.encoder.net[0]
    w, b = layer.weight, layer.bias
    with torch.no_grad():
        dot64 = x.double() @ w.double().T                    # (points, units)
        dot32 = (x @ w.T).double()
        found = None
        for i, j in sorted(np.ndindex(*dot64.shape), key=lambda ij: -abs(
                float(dot32[ij] - dot64[ij]))):  # the largest float32 rounding first
            mid = torch.tensor(-(float(dot32[i, j]) + float(dot64[i, j])) / 2)
            cand = mid.float()
            for step in range(8):  # a few ulps around the midpoint
                b[j] = cand
                pre32 = float(layer(x)[i, j])
                pre64 = float(dot64[i, j] + cand.double())
                if (pre32 > 0) != (pre64 > 0):
                    found = (i, j)
                    break
                cand = torch.nextafter(cand, torch.tensor(math.inf if step % 2 else -math.inf))
            if found:
                break
        assert found, "no float32/float64 sign disagreement found"
    values = reference.objective_and_gradients(model, x, y, seed=123, dataset_size=500)
    assert verdicts(model_checks.objective_matches_reference("r", "vae", *values)) == [True, True]
    model.train()  # the float32 gradient of the same objective jumps at the kink
    model.zero_grad(set_to_none=True)
    value, _ = model.objective(x, y, 123)
    value.mean().backward()
    g32 = torch.cat([p.grad.reshape(-1).double() for p in model.parameters()])
    ref_grad = values[3]
    assert float((g32 - ref_grad).norm() / ref_grad.norm()) > 1e3 * model_checks.GRAD_RTOL


def test_reference_catches_beta_on_the_wrong_term(monkeypatch):
    """In the objective the model reports, the value check sees it. The beta-VAE trains on
    the backward pass written out (``vaebench.fused_step``), which restates the derivative
    rather than differentiating ``objectives.elbo``, so its gradient stays right; trained on
    autograd, the gradient check sees the bug too."""
    from vaebench import fused_step

    model, x, y = small_model("beta_vae")
    monkeypatch.setattr(objectives, "elbo", lambda log_px_z, kl, beta=1.0: beta * log_px_z - kl)
    values = reference.objective_and_gradients(model, x, y, seed=1, dataset_size=500)
    assert verdicts(model_checks.objective_matches_reference(
        "r", "beta_vae", *values, by_hand=True)) == [False, True]
    monkeypatch.setattr(fused_step, "unsupported", lambda model: "autograd")
    values = reference.objective_and_gradients(model, x, y, seed=1, dataset_size=500)
    assert verdicts(model_checks.objective_matches_reference("r", "beta_vae", *values)) == [
        False, False]


def test_reference_catches_a_wrong_hand_written_gradient(monkeypatch):
    """The gradient check compares the gradient the trainer steps on: a factor dropped from
    the backward pass written out fails it, while the value stays right."""
    from vaebench import fused_step

    model, x, y = small_model("vae")
    backward = fused_step._backward

    def encoder_off(net, outs, g, input_grad):  # the encoder's pass (no input gradient) off
        return backward(net, outs, g if input_grad else 1.01 * g, input_grad)

    monkeypatch.setattr(fused_step, "_backward", encoder_off)
    values = reference.objective_and_gradients(model, x, y, seed=1, dataset_size=500)
    assert verdicts(model_checks.objective_matches_reference(
        "r", "vae", *values, by_hand=True)) == [True, False]


def test_reference_catches_undetached_iwae_weights(monkeypatch):
    model, x, y = small_model("iwae")

    def undetached(log_w):
        w_norm = torch.softmax(log_w, dim=0)  # the planted bug: no .detach()
        surrogate = (w_norm * log_w).sum(0)
        return objectives.iwae_bound(log_w).detach() + (surrogate - surrogate.detach())

    import vaebench.models.iwae as iwae_module

    monkeypatch.setattr(iwae_module, "iwae_objective", undetached)
    values = reference.objective_and_gradients(model, x, y, seed=1, dataset_size=500)
    value_ok, grad_ok = verdicts(model_checks.objective_matches_reference("r", "iwae", *values))
    assert value_ok and not grad_ok  # the value is right, the gradient is not


def test_reference_catches_a_variance_for_a_scale(monkeypatch):
    import kernels.reference as ref

    model, x, y = small_model("vae")
    monkeypatch.setattr(ref, "reparameterize_with_eps",
                        lambda mu, logvar, eps: mu + torch.exp(logvar) * eps)
    values = reference.objective_and_gradients(model, x, y, seed=1, dataset_size=500)
    assert not any(verdicts(model_checks.objective_matches_reference("r", "vae", *values)))


def _linear(n=400, d=6, k=3, seed=1, scale=1.0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((d, k))
    mu = rng.standard_normal(d)
    s2 = 0.5
    x = rng.standard_normal((n, k)) @ w.T + mu + math.sqrt(s2) * rng.standard_normal((n, d))
    m_mat = w.T @ w + s2 * np.eye(k)
    v = scale * np.linalg.solve(m_mat, w.T)  # scale != 1: an encoder off the posterior
    b = -v @ mu
    dd = s2 / np.diag(m_mat)
    return x, w, mu, s2, v, b, dd


def _mc_log_weights(x, w, mu, s2, v, b, dd, draws, seed):
    rng = np.random.default_rng(seed)
    m = x @ v.T + b
    z = m + np.sqrt(dd) * rng.standard_normal((draws, *m.shape))
    return (norm.logpdf(x, z @ w.T + mu, math.sqrt(s2)).sum(-1) + norm.logpdf(z).sum(-1)
            - norm.logpdf(z, m, np.sqrt(dd)).sum(-1))


def test_elbo_gap_check_against_closed_forms():
    x, w, mu, s2, v, b, dd = _linear(scale=1.3)
    elbo_mc = torch.from_numpy(_mc_log_weights(x, w, mu, s2, v, b, dd, 8, seed=2))
    log_px = ppca_log_likelihood(x, w, mu, s2)
    kl_post = kl_to_posterior(x, w, mu, s2, v, b, dd)
    assert verdicts([model_checks.elbo_gap_check("r", elbo_mc, log_px, kl_post)]) == [True]
    assert float(kl_post.mean()) > 0.05  # a real gap, so the check has something to see
    # a likelihood off by a constant (half of log 2 pi per dimension dropped) fails
    shifted = elbo_mc + 0.5 * math.log(2 * math.pi) * x.shape[1]
    assert verdicts([model_checks.elbo_gap_check("r", shifted, log_px, kl_post)]) == [False]


def test_is_converges_and_catches_the_mean_of_log_w():
    x, w, mu, s2, v, b, dd = _linear(scale=1.3)
    log_w = torch.from_numpy(_mc_log_weights(x, w, mu, s2, v, b, dd, 2000, seed=3))
    log_px = ppca_log_likelihood(x, w, mu, s2)
    right = objectives.iwae_bound(log_w)
    assert verdicts([model_checks.is_converges_check("r", right, log_px, 2000)]) == [True]
    wrong = log_w.mean(0)  # the mean of log w: the ELBO, not log p(x)
    assert verdicts([model_checks.is_converges_check("r", wrong, log_px, 2000)]) == [False]


def test_beta_sweep_closed_form_check():
    eig = np.array([4.1, 3.1, 2.1, 1.1] + [0.1] * 16)
    opt = linear_beta_optimum(eig, 4, 4.0)
    good = model_checks.beta_sweep_closed_form("r", opt, (opt.rate + 0.01, 0.03),
                                               (opt.distortion - 0.05, 0.1), opt.active)
    assert verdicts(good) == [True, True, True]
    one = linear_beta_optimum(eig, 4, 1.0)  # what a model trained with beta on recon reaches
    bad = model_checks.beta_sweep_closed_form("r", opt, (one.rate, 0.03),
                                              (one.distortion, 0.1), one.active)
    assert verdicts(bad) == [False, False, False]


def test_gaussian_aggregate_terms_against_monte_carlo():
    rng = np.random.default_rng(4)
    d, k = 5, 3
    a = rng.standard_normal((d, d))
    cov = torch.from_numpy(a @ a.T / d + 0.1 * np.eye(d))
    v = torch.from_numpy(rng.standard_normal((k, d)) * 0.6)
    dd = torch.from_numpy(rng.uniform(0.2, 0.8, k))
    exact = gaussian_aggregate_terms(v, dd, cov)
    # rate E_x KL(q(z|x) || N(0, I)) from its own closed form, by sampling x
    xs = rng.multivariate_normal(np.zeros(d), cov.numpy(), 200_000)
    m = xs @ v.numpy().T
    rate = 0.5 * (dd.numpy().sum() + (m ** 2).sum(1) - k - np.log(dd.numpy()).sum())
    assert sum(exact.values()) == pytest.approx(rate.mean(), abs=4 * rate.std() / 450)
    # TC is zero exactly when the aggregate posterior's covariance is diagonal
    assert gaussian_aggregate_terms(torch.eye(k, d, dtype=torch.float64), dd,
                                    torch.eye(d, dtype=torch.float64))["tc"] == pytest.approx(0)


def test_fixed_test_set_check():
    assert verdicts([model_checks.fixed_test_set_check("r", "a" * 64, "a" * 64)]) == [True]
    assert verdicts([model_checks.fixed_test_set_check("r", "b" * 64, "a" * 64)]) == [False]


def test_linear_optimum_gap_uses_measured_convergence():
    ok = model_checks.linear_optimum_checks("r", -10.02, -10.10, -10.0, 0.99, 0.9)
    assert verdicts(ok) == [True, True]  # gap 0.02 < 0.08 still gained in the second half
    stalled = model_checks.linear_optimum_checks("r", -10.5, -10.5001, -10.0, 0.99, 0.9)
    assert verdicts(stalled) == [False, True]  # converged, but far from the optimum

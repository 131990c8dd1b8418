"""``kernels.log_q_at``: the score grad log q(z|x) at fixed z, checked on a Gaussian toy problem.

For q = N(mu, diag sigma^2) and f(z) = sum_j z_j^2, E_q f = sum_j (mu_j^2 + sigma_j^2), so
grad_mu E f = 2 mu and grad_logvar E f = sigma^2 exactly; for f(z) = a.z, grad_mu = a and
grad_logvar = 0. The REINFORCE estimate f(z) grad log q(z) averaged over S draws must match
these in float64 within Z_STAR standard errors (Bonferroni over the coordinates checked).
"""

from __future__ import annotations

import pytest
import torch

import kernels
from kernels import reference

Z_STAR = 4.5  # two-sided, family of 2 f's x 2 parameters x D coordinates, alpha ~ 1e-4
S = 200_000


def _reinforce_per_sample(f, mu, logvar, seed):
    """Per-sample REINFORCE gradients f(z_s) grad log q(z_s) for mu and logvar, (S, D) each.

    mu and logvar are repeated per sample as leaves, so one backward gives every sample's
    own gradient; z comes from the reparameterization with grad enabled, to check that
    ``log_q_at`` holds it fixed."""
    mu_s = mu.detach().expand(S, -1).clone().requires_grad_(True)
    lv_s = logvar.detach().expand(S, -1).clone().requires_grad_(True)
    z = kernels.reparameterize(mu_s, lv_s, 1, seed, backend="eager")
    surrogate = f(z).detach() * kernels.log_q_at(z, mu_s, lv_s)
    g_mu, g_lv = torch.autograd.grad(surrogate.sum(), (mu_s, lv_s))
    return g_mu, g_lv


def _within(estimates, exact):
    mean = estimates.mean(0)
    se = estimates.std(0) / estimates.shape[0] ** 0.5
    z = (mean - exact) / se
    return z.abs().max().item(), mean, se


@pytest.mark.parametrize("case", ["square", "linear"])
def test_reinforce_matches_the_closed_form_gradient(case):
    mu = torch.tensor([0.7, -1.2, 0.4], dtype=torch.float64)
    logvar = torch.tensor([-0.5, 0.3, 0.0], dtype=torch.float64)
    a = torch.tensor([1.5, -0.5, 2.0], dtype=torch.float64)
    if case == "square":
        f, exact_mu, exact_lv = (lambda z: (z * z).sum(-1)), 2 * mu, torch.exp(logvar)
    else:
        f, exact_mu, exact_lv = (lambda z: z @ a), a, torch.zeros(3, dtype=torch.float64)
    g_mu, g_lv = _reinforce_per_sample(f, mu, logvar, seed=11)
    z_mu, mean_mu, se_mu = _within(g_mu, exact_mu)
    z_lv, _, _ = _within(g_lv, exact_lv)
    assert z_mu < Z_STAR, (case, mean_mu, exact_mu, se_mu)
    assert z_lv < Z_STAR, (case, z_lv)
    # The test has power: a zero gradient (the with_log_probs trap) would be far outside.
    assert (exact_mu.abs() / se_mu > 2 * Z_STAR).all()


def test_score_is_the_closed_form_score_and_the_value_is_log_q():
    gen = torch.Generator().manual_seed(0)
    mu = torch.randn(4, 5, dtype=torch.float64, generator=gen).requires_grad_(True)
    logvar = torch.randn(4, 5, dtype=torch.float64, generator=gen).requires_grad_(True)
    z = torch.randn(3, 4, 5, dtype=torch.float64, generator=gen).requires_grad_(True)
    log_q = kernels.log_q_at(z, mu, logvar)
    expected = torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    torch.testing.assert_close(log_q, expected, rtol=1e-12, atol=1e-12)
    g_mu, g_lv = torch.autograd.grad(log_q.sum(), (mu, logvar))
    var = torch.exp(logvar)
    torch.testing.assert_close(g_mu, ((z - mu) / var).sum(0))
    torch.testing.assert_close(g_lv, (0.5 * ((z - mu) ** 2 / var - 1)).sum(0))
    assert log_q.grad_fn is not None
    assert torch.autograd.grad(log_q.sum(), z, allow_unused=True)[0] is None  # z held fixed


def test_with_log_probs_log_q_has_no_score():
    """The trap ``log_q_at`` exists for: the log q of ``reparameterize(with_log_probs=True)``
    is the same number, but differentiated with eps fixed its d/d mu is exactly 0."""
    mu, logvar = (torch.tensor([[0.3, -0.4]], dtype=torch.float64, requires_grad=True)
                  for _ in range(2))
    z, log_q, _ = kernels.reparameterize(mu, logvar, 4, seed=2, with_log_probs=True,
                                         backend="eager")
    torch.testing.assert_close(log_q, kernels.log_q_at(z, mu, logvar))
    (g_mu,) = torch.autograd.grad(log_q.sum(), mu, allow_unused=True)
    assert g_mu is None or torch.equal(g_mu, torch.zeros_like(g_mu))  # no path to mu
    (g_mu_at,) = torch.autograd.grad(kernels.log_q_at(z, mu, logvar).sum(), mu)
    assert g_mu_at.abs().min() > 0


def test_log_q_at_bad_inputs_name_the_argument():
    mu, logvar = torch.zeros(2, 3), torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"z must have shape \(2, 3\) or \(n_samples"):
        kernels.log_q_at(torch.zeros(2, 4), mu, logvar)
    with pytest.raises(TypeError, match="z must have mu's dtype"):
        kernels.log_q_at(torch.zeros(2, 3, dtype=torch.float64), mu, logvar)
    with pytest.raises(TypeError, match="z must be a torch.Tensor"):
        kernels.log_q_at([0.0], mu, logvar)
    assert reference.log_q_at(torch.zeros(5, 2, 3), mu, logvar).shape == (5, 2)

"""Objectives and likelihoods against hand-computed values and float64 references."""

from __future__ import annotations

import math

import torch
from torch.distributions import Bernoulli, Normal

from vaebench import likelihoods, objectives


def test_elbo_terms_by_hand():
    # x = (1, 0), logits = (0, log 3): p = (1/2, 3/4); log p(x|z) = log 1/2 + log 1/4
    x = torch.tensor([[1.0, 0.0]])
    logits = torch.tensor([[0.0, math.log(3.0)]])
    log_px = likelihoods.bernoulli_log_px(x, logits)
    assert torch.allclose(log_px, torch.tensor([math.log(0.5) + math.log(0.25)]))
    kl = torch.tensor([0.75])
    assert torch.allclose(objectives.elbo(log_px, kl), log_px - 0.75)
    assert torch.allclose(objectives.elbo(log_px, kl, beta=4.0), log_px - 3.0)


def test_likelihoods_match_torch_distributions_float64():
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(5, 7, generator=g) > 0.5).double()
    logits = torch.randn(3, 5, 7, generator=g, dtype=torch.float64)
    ref = Bernoulli(logits=logits).log_prob(x).sum(-1)
    assert torch.allclose(likelihoods.bernoulli_log_px(x, logits), ref)
    xc = torch.randn(5, 7, generator=g, dtype=torch.float64)
    mean = torch.randn(3, 5, 7, generator=g, dtype=torch.float64)
    logvar = torch.tensor(-0.7, dtype=torch.float64)
    ref = Normal(mean, torch.exp(0.5 * logvar)).log_prob(xc).sum(-1)
    assert torch.allclose(likelihoods.gaussian_log_px(xc, mean, logvar), ref)


def test_iwae_bound_identities():
    g = torch.Generator().manual_seed(1)
    log_w = torch.randn(50, 4, generator=g, dtype=torch.float64)
    # K = 1 is the ELBO; L_K = log mean exp
    assert torch.allclose(objectives.iwae_bound(log_w[:1]), log_w[0])
    assert torch.allclose(objectives.iwae_bound(log_w), log_w.exp().mean(0).log())
    # Jensen: L_K >= mean log w
    assert (objectives.iwae_bound(log_w) >= log_w.mean(0)).all()


def test_iwae_gradient_uses_detached_normalized_weights():
    g = torch.Generator().manual_seed(2)
    theta = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    feats = torch.randn(6, 3, generator=g, dtype=torch.float64)

    def log_w():
        return (theta * feats).sum(-1, keepdim=True) ** 2 / 3.0  # a nonlinear log w per sample

    lw = log_w()
    obj = objectives.iwae_objective(lw).sum()
    (grad,) = torch.autograd.grad(obj, theta)
    # the reference: sum_i w~_i grad log w_i with w~ constants (Burda et al. eq. 14)
    lw2 = log_w()
    wn = torch.softmax(lw2.detach(), 0)
    per_sample = [torch.autograd.grad(lw2[i, 0], theta, retain_graph=True)[0] for i in range(6)]
    ref = sum(wn[i, 0] * per_sample[i] for i in range(6))
    assert torch.allclose(grad, ref)
    assert torch.allclose(objectives.iwae_objective(lw.detach()), objectives.iwae_bound(lw.detach()))
    # letting gradients flow through w~ (PyTorch-VAE issue #34) gives a different gradient
    wrong = (torch.softmax(lw2, 0) * lw2).sum()
    (g_wrong,) = torch.autograd.grad(wrong, theta)
    assert not torch.allclose(g_wrong, ref)


def test_betatc_terms_telescope_to_log_q_minus_log_p():
    g = torch.Generator().manual_seed(3)
    m, k = 16, 3
    mu = torch.randn(m, k, generator=g, dtype=torch.float64)
    logvar = 0.3 * torch.randn(m, k, generator=g, dtype=torch.float64)
    eps = torch.randn(m, k, generator=g, dtype=torch.float64)
    z = mu + (0.5 * logvar).exp() * eps
    log_q = Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    log_p = Normal(0.0, 1.0).log_prob(z).sum(-1)
    t = objectives.betatc_terms(z, mu, logvar, log_q, log_p, dataset_size=1000)
    assert torch.allclose(t["mi"] + t["tc"] + t["dwkl"], log_q - log_p)
    # log q(z_i) by brute force with the MWS constant log(N M)
    dens = torch.stack([Normal(mu[j], (0.5 * logvar[j]).exp()).log_prob(z).sum(-1)
                        for j in range(m)], 1)
    log_qz = torch.logsumexp(dens, 1) - math.log(1000 * m)
    assert torch.allclose(t["mi"], log_q - log_qz)

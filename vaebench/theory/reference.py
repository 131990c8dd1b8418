"""Each model's training objective written a second time, independently, in float64.

The training code builds its objective from ``vaebench.likelihoods``, ``vaebench.objectives``
and the ``kernels`` latent layer. This module writes the same objectives from the papers with
``torch.distributions`` (another implementation of every density and KL), drawing z from the
same eps (``kernels.reference.standard_normal`` with the step's seed), so that the model check
``objective_matches_reference`` can compare value and gradient on a trained model:

- VAE, beta-VAE, CVAE, linear VAE: E_q log p(x|z) - beta KL(q(z|x) || N(0, I)), one draw
  (Kingma & Welling 2014, eq. 10; Higgins et al. 2017, eq. 4; Sohn et al. 2015);
- IWAE: log (1/k) sum_i p(x, z_i) / q(z_i|x), k draws (Burda et al. 2016, eq. 8); its gradient
  is the plain autograd of this value, the reference for the detached-weight estimator;
- beta-TCVAE: E log p(x|z) - alpha MI - beta TC - gamma DWKL with minibatch-weighted
  sampling, log q(z_i) ~ log sum_m q(z_i|x_m) - log(N M) (Chen et al. 2018, eq. 2 and sec. 3.1).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Normal, kl_divergence

from kernels.reference import standard_normal
from vaebench import fused_step


def _log_px(model, x: Tensor, z: Tensor, y: Tensor | None) -> Tensor:
    params = model.decode(z, y)
    if model.likelihood == "bernoulli":
        return Bernoulli(logits=params[0]).log_prob(x.expand_as(params[0])).sum(-1)
    mean, logvar = params
    return Normal(mean, torch.exp(0.5 * logvar).expand_as(mean)).log_prob(
        x.expand_as(mean)).sum(-1)


def reference_objective(model, x: Tensor, y: Tensor | None, seed: int,
                        dataset_size: int) -> Tensor:
    """The per-point training objective of ``model`` (already in float64) on batch ``x``."""
    mu, logvar = model.encode(x, y)
    std = torch.exp(0.5 * logvar)
    q, prior = Normal(mu, std), Normal(torch.zeros_like(mu), torch.ones_like(mu))
    k = int(getattr(model.cfg, "k", 1)) if model.name == "iwae" else 1
    eps = standard_normal(seed, (k, *mu.shape), dtype=torch.float64)
    z = mu + std * eps                                       # (k, B, D)
    log_px_z = _log_px(model, x, z if k > 1 else z[0], y)
    if model.name == "iwae":
        log_w = log_px_z + prior.log_prob(z).sum(-1) - q.log_prob(z).sum(-1)
        return torch.logsumexp(log_w, 0) - math.log(k)
    z = z[0]
    if model.name == "betatc":
        m = z.shape[0]
        pairs = Normal(mu[None], std[None]).log_prob(z[:, None])  # [i, m, j]
        log_nm = math.log(dataset_size * m)
        log_qz = torch.logsumexp(pairs.sum(-1), 1) - log_nm
        log_prod = (torch.logsumexp(pairs, 1) - log_nm).sum(-1)
        mi = q.log_prob(z).sum(-1) - log_qz
        tc = log_qz - log_prod
        dwkl = log_prod - prior.log_prob(z).sum(-1)
        c = model.cfg
        return log_px_z - c.alpha * mi - c.beta * tc - c.gamma * dwkl
    return log_px_z - model.beta * kl_divergence(q, prior).sum(-1)


def objective_and_gradients(model, x: Tensor, y: Tensor | None, seed: int,
                            dataset_size: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(code value, code gradient, reference value, reference gradient) on one batch.

    The code value is the model's own ``objective`` in the model's dtype; the reference value
    is ``reference_objective`` on a float64 copy. Both gradients (of the batch mean, flattened
    over every parameter) are taken in float64: the code's is the one the trainer steps on,
    on a float64 copy of the model (the backward pass written out, ``vaebench.fused_step``,
    for the models it covers; autograd of the model's own ``objective`` for the others), and
    the reference's is autograd of the reference on another copy. A ReLU network's gradient jumps where a
    pre-activation crosses zero, so a float32 gradient differs from a float64 one by a whole
    unit's contribution whenever some pre-activation lies within float32 rounding of zero (seen
    once in the default study: cvae on Fashion-MNIST, seed 1, Intel Xeon, one unit of 102400,
    relative error 1.3e-3); in float64 both follow the same branches, and only the order of
    operations separates them. The float32 GEMM paths have their own tests against float64
    (``tests/test_linear.py``, ``tests/kernels``).
    """
    model.train()
    with torch.no_grad():
        value, _ = model.objective(x, y, seed)
    code = copy.deepcopy(model).double()
    code.zero_grad(set_to_none=True)
    if fused_step.unsupported(code) is None:  # it sets the gradient of the loss, -mean
        fused_step.elbo_step(code, x.double(), y, seed)
        code_grad = -torch.cat([p.grad.reshape(-1) for p in code.parameters()])
    else:
        code_value, _ = code.objective(x.double(), y, seed)
        code_value.mean().backward()
        code_grad = torch.cat([p.grad.reshape(-1) for p in code.parameters()])
    twin = copy.deepcopy(model).double()
    twin.zero_grad(set_to_none=True)
    ref = reference_objective(twin, x.double(), y, seed, dataset_size)
    ref.mean().backward()
    ref_grad = torch.cat([p.grad.reshape(-1) for p in twin.parameters()])
    model.eval()
    return value.detach().double(), code_grad, ref.detach(), ref_grad

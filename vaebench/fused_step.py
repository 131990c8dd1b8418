"""The VAE's training step with its backward pass written out: the gradient of the negative
mean beta-ELBO for an MLP encoder and decoder, a Bernoulli decoder and the closed-form KL,
computed without autograd.

Why: on two CPU cores the autograd step of the 784-400-20 VAE spends a large share of its
time outside its eleven GEMMs and fused Adam, in elementwise kernels launched one per node of
the graph and in autograd's and Python's bookkeeping (the profile of
``benchmarks.train_throughput`` splits an epoch so, for the trainer and the minimal loop). The
derivative of this one objective is short enough to write by hand: the same GEMMs, in the
library ``set_gemm`` chose, and a handful of elementwise ops. The CVAE's label enters both
nets as a one-hot input, which needs no gradient.
``benchmarks.step_costs`` and ``benchmarks.train_throughput`` time it against the autograd step
and the minimal loop (``reports/benchmarks/``, CPU named).

The objective is the one ``GaussianLatentModel.objective`` maximizes for one sample, per point
(Kingma & Welling 2014, eq. 10; Higgins et al. 2017, eq. 4 for beta):

    f = log p(x|z) - w * KL(q(z|x) || p(z)),   z = mu + exp(logvar / 2) * eps,
    log p(x|z) = sum_j x_j l_j - softplus(l_j)   (l: the decoder's logits),
    KL = 1/2 sum_d (mu_d^2 + exp(logvar_d) - 1 - logvar_d)   (K&W 2014, appendix B),

with w = beta * kl_weight. For the loss L = -(1/B) sum_n f_n over a batch of B points:

    dL/dl      = (sigmoid(l) - x) / B,
    dL/dmu     = dL/dz + w mu / B,
    dL/dlogvar = dL/dz * eps * exp(logvar / 2) / 2 + w (exp(logvar) - 1) / (2 B),

and through each layer y = a W^T + b, dL/dW = g^T a, dL/db = sum_n g, dL/da = g W; through a
ReLU, g where its output is positive, else 0. The encoder's input needs no gradient. The
forward pass runs the very calls of the model's own (``linear``, ``reference.gaussian_kl``,
``likelihoods.bernoulli_log_px``), so the statistics it returns are those of
``model.objective`` to the bit; the gradients agree with autograd's to float64 round-off
(``tests/test_fused_step.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kernels import reference
from vaebench import likelihoods
from vaebench.models.base import GaussianLatentModel
from vaebench.nets.linear import Linear, _x_wt, linear, uses_onednn
from vaebench.nets.mlp import MLPDecoder, MLPEncoder


def unsupported(model: nn.Module) -> str | None:
    """Why ``elbo_step`` cannot train ``model`` (None: it can). It covers the models trained on
    the plain beta-ELBO (VAE, beta-VAE, CVAE) with MLP nets, a Bernoulli decoder without a
    clamp, the closed-form KL and the eager latent backend, in float32 or float64."""
    if not isinstance(model, GaussianLatentModel):
        return f"{type(model).__name__} is not a GaussianLatentModel"
    if type(model).objective is not GaussianLatentModel.objective:
        return f"model {model.name!r} has its own objective"
    if not (isinstance(model.encoder, MLPEncoder) and isinstance(model.decoder, MLPDecoder)):
        return f"arch {model.cfg.arch!r}: only the MLP nets are written out"
    if model.likelihood != "bernoulli" or model.cfg.bernoulli_eps is not None:
        return (f"likelihood {model.likelihood!r} with bernoulli_eps={model.cfg.bernoulli_eps}: "
                "only the unclamped Bernoulli decoder is written out")
    if model.cfg.kl_estimator != "analytic":
        return f"kl_estimator {model.cfg.kl_estimator!r}: only the closed-form KL is written out"
    if model.backend != "eager":
        return f"backend {model.backend!r}: the step draws eps as the eager backend does"
    return None


def _forward(net: nn.Sequential, a: Tensor) -> list[Tensor]:
    """Every layer's output in turn, the input first: [a, y_1, relu(y_1), y_2, ...]."""
    outs = [a]
    for layer in net:
        outs.append(linear(outs[-1], layer.weight, layer.bias) if isinstance(layer, Linear)
                    else layer(outs[-1]))
    return outs


def _backward(net: nn.Sequential, outs: list[Tensor], g: Tensor, input_grad: bool
              ) -> Tensor | None:
    """Write each parameter's .grad from g = dL/d(net's output); returns dL/d(net's input)
    if ``input_grad``."""
    for i in range(len(net) - 1, -1, -1):
        layer, a = net[i], outs[i]
        if not isinstance(layer, Linear):  # a ReLU: g where its output is positive
            g = torch.ops.aten.threshold_backward(g, outs[i + 1], 0)
            continue
        w, need_in = layer.weight, i > 0 or input_grad
        if uses_onednn(a, w):  # where the forward ran, as _OneDNNLinear.backward does
            layer.weight.grad = _x_wt(g.t(), a.t())
            g_in = _x_wt(g, w.t()) if need_in else None
        else:
            layer.weight.grad = g.t().mm(a)
            g_in = g.mm(w) if need_in else None
        layer.bias.grad = g.sum(0)
        g = g_in
    return g


def elbo_step(model: GaussianLatentModel, x: Tensor, y: Tensor | None, seed: int
              ) -> tuple[Tensor, dict[str, Tensor]]:
    """What ``model.objective(x, y, seed)`` returns (the per-point objective and its stats
    elbo, recon, kl) with every parameter's .grad set to the gradient of
    ``-objective.mean()``, as its ``backward()`` would set it. eps is drawn as the model draws
    it (``reference.standard_normal``; under the trainer's ``draws_ahead``, the eps drawn
    ahead). Raises ValueError for a model ``unsupported`` names; the trainer, which asks once,
    steps through ``elbo_step_unchecked``."""
    reason = unsupported(model)
    if reason is not None:
        raise ValueError(f"elbo_step cannot train this model: {reason}")
    return elbo_step_unchecked(model, x, y, seed)


@torch.no_grad()
def elbo_step_unchecked(model: GaussianLatentModel, x: Tensor, y: Tensor | None, seed: int
                        ) -> tuple[Tensor, dict[str, Tensor]]:
    """``elbo_step`` for a model already found supported (``unsupported(model) is None``),
    without asking again on every step."""
    c = model.condition(y)
    enc = _forward(model.encoder.net, x if c is None else torch.cat([x, c], dim=-1))
    mu, logvar = enc[-1].chunk(2, dim=-1)
    eps = reference.standard_normal(seed, (1, *mu.shape), mu.device,
                                    reference.acc_dtype(mu.dtype))[0]
    z = reference.reparameterize_with_eps(mu, logvar, eps)
    kl = reference.gaussian_kl(mu, logvar)
    dec = _forward(model.decoder.net, z if c is None else torch.cat([z, c], dim=-1))
    logits = dec[-1]
    recon = likelihoods.bernoulli_log_px(x, logits)
    w = model.beta * model.kl_weight
    elbo = recon - kl
    stats = {"elbo": elbo, "recon": recon, "kl": kl}

    scale = 1.0 / len(x)
    g = torch.sigmoid(logits).sub_(x).mul_(scale)  # dL/dl
    g_z = _backward(model.decoder.net, dec, g, input_grad=True)[:, :mu.shape[-1]]
    half_sigma = torch.exp(0.5 * logvar).mul_(0.5)
    g_mu = torch.add(g_z, mu, alpha=w * scale)
    g_logvar = (g_z * eps).mul_(half_sigma).add_(torch.expm1(logvar), alpha=0.5 * w * scale)
    _backward(model.encoder.net, enc, torch.cat([g_mu, g_logvar], dim=-1), input_grad=False)
    return (elbo if w == 1.0 else recon - w * kl), stats

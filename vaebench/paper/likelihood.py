"""The importance-sampled test log-likelihood of a published protocol: -L_S, S = 5000, batched.

L_S(x) = log (1/S) sum_s w_s with w_s = p(x, z_s) / q(z_s|x), z_s ~ q(z|x) (Burda et al. 2016,
eq. 8; the VampPrior's ``calculate_likelihood`` and Exemplar VAE's ``utils/evaluation.py`` use
the same estimator with S = 5000, one image at a time). Here the weights are streamed: each
decoder pass takes ``SAMPLE_CHUNK`` samples of ``POINT_CHUNK`` images (10,000 rows), and per
image only running sums are kept (float64): log sum w, log sum w^2, sum log w, sum (log w)^2.
Nothing of size S x N is stored, so S and N are limited by time alone.

From the same draws come, per image:
- the ELBO, the mean of log w over the S draws (an S-sample estimate of E_q log w);
- the Monte Carlo error of L_S by the delta method, Var(log mean w) ~ (S sum w~^2 - 1) / S
  with w~ the normalized weights (its usual first-order form; heavy-tailed weights make it an
  underestimate, so it is labelled as such);
- the Monte Carlo error of the ELBO, the sample variance of log w over S.

The draws of chunk (i, j) (image chunk i, sample chunk j) use seed ``step_seed(seed, i *
n_sample_chunks + j, STREAM)``: the estimate is a pure function of the model, the images, S
and the seed (the chunk sizes are constants of this module).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

import kernels

SAMPLE_CHUNK = 100  # importance samples per decoder pass
POINT_CHUNK = 100  # images per decoder pass
STREAM = 20  # kernels.step_seed stream of these draws (the evaluate stage uses 10..13)

LogWeights = Callable[[Tensor, int, int], Tensor]  # (x (N, D), S, seed) -> log w (S, N)


@dataclass(frozen=True)
class PerPoint:
    """Per-image results (float64, shape (N,))."""

    log_px: Tensor  # L_S
    log_px_mc_var: Tensor  # delta-method variance of L_S over the draws
    elbo: Tensor  # mean of log w over the S draws
    elbo_mc_var: Tensor  # variance of that mean over the draws, s^2 / S
    n_samples: int


def model_log_weights(model) -> LogWeights:
    """log w for a model with ``log_weights(x, y, n_samples, seed)`` (unconditional use).

    For the Gaussian-latent models' own ``log_weights`` with a Bernoulli decoder, the same
    quantity with the decoder's likelihood fused into one compiled loop (``_bernoulli_sum``):
    the eager path spends a quarter of its time in ``binary_cross_entropy_with_logits`` on a
    broadcast x; the fused one draws the same eps and agrees to float32 rounding
    (tests/test_paper.py).
    """
    from vaebench.models.base import GaussianLatentModel

    if (isinstance(model, GaussianLatentModel) and model.likelihood == "bernoulli"
            and type(model).log_weights is GaussianLatentModel.log_weights
            and type(model).decode is GaussianLatentModel.decode and model.n_classes is None):
        return lambda x, s, seed: _gaussian_bernoulli_log_weights(model, x, s, seed)
    return lambda x, s, seed: model.log_weights(x, None, s, seed)


def _bernoulli_sum(x: Tensor, logits: Tensor, bound: float) -> Tensor:
    """sum_j x_j a_j - softplus(a_j) with a = clamp(logits, -bound, bound): log p(x|z)."""
    a = logits.clamp(-bound, bound)
    return (x * a - torch.nn.functional.softplus(a)).sum(-1)


_bernoulli_sum_compiled = None


def _gaussian_bernoulli_log_weights(model, x: Tensor, n_samples: int, seed: int) -> Tensor:
    global _bernoulli_sum_compiled
    if _bernoulli_sum_compiled is None:
        _bernoulli_sum_compiled = torch.compile(_bernoulli_sum, dynamic=True)
    mu, logvar = model.encode(x)
    z, log_qz, log_pz = kernels.reparameterize(mu, logvar, n_samples, seed,
                                               with_log_probs=True, backend=model.backend)
    eps = model.cfg.bernoulli_eps
    bound = math.inf if eps is None else math.log((1.0 - eps) / eps)
    log_px_z = _bernoulli_sum_compiled(x, model.decoder(z), bound)
    return (log_px_z + log_pz - log_qz).reshape(n_samples, -1)


@torch.no_grad()
def importance_sampled(log_weights: LogWeights, x: Tensor, n_samples: int, seed: int,
                       progress: Callable[[int, int], None] | None = None) -> PerPoint:
    """Stream S = ``n_samples`` importance weights per row of ``x`` (N, D); see the module."""
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2 for a Monte Carlo error; got {n_samples}")
    n = x.shape[0]
    n_chunks = math.ceil(n_samples / SAMPLE_CHUNK)
    lse = torch.full((n,), -math.inf, dtype=torch.float64)
    lse2 = torch.full((n,), -math.inf, dtype=torch.float64)
    s1 = torch.zeros(n, dtype=torch.float64)
    s2 = torch.zeros(n, dtype=torch.float64)
    for i, a in enumerate(range(0, n, POINT_CHUNK)):
        b = min(a + POINT_CHUNK, n)
        for j in range(n_chunks):
            k = min(SAMPLE_CHUNK, n_samples - j * SAMPLE_CHUNK)
            lw = log_weights(x[a:b], k, kernels.step_seed(seed, i * n_chunks + j, STREAM))
            lw = lw.reshape(k, b - a).double()
            lse[a:b] = torch.logaddexp(lse[a:b], torch.logsumexp(lw, 0))
            lse2[a:b] = torch.logaddexp(lse2[a:b], torch.logsumexp(2.0 * lw, 0))
            s1[a:b] += lw.sum(0)
            s2[a:b] += (lw * lw).sum(0)
        if progress is not None:
            progress(b, n)
    s = float(n_samples)
    mean = s1 / s
    var = (s2 - s * mean * mean).clamp_min(0.0) / (s - 1.0)
    return PerPoint(log_px=lse - math.log(s),
                    log_px_mc_var=(s * torch.exp(lse2 - 2.0 * lse) - 1.0).clamp_min(0.0) / s,
                    elbo=mean, elbo_mc_var=var / s, n_samples=n_samples)


def summarize(per: PerPoint) -> dict[str, float]:
    """Dataset means and their errors, nats per image.

    ``*_se`` is the test-sampling error, the spread over images s/sqrt(N) (what changes if the
    test images were drawn anew); ``*_mc_se`` is the Monte Carlo error of the estimator over
    fixed images, sqrt(sum_x var_x) / N (reference sheet, Agreement tests).
    """
    n = per.log_px.numel()
    out = {"test_points": n, "importance_samples": per.n_samples}
    for name, values, mc_var in (("nll", -per.log_px, per.log_px_mc_var),
                                 ("elbo", per.elbo, per.elbo_mc_var)):
        out[name] = float(values.mean())
        out[f"{name}_se"] = float(values.std(correction=1) / math.sqrt(n)) if n > 1 else math.nan
        out[f"{name}_mc_se"] = float(mc_var.sum().sqrt() / n)
    return out

"""Importance-sampled log-likelihood, fast: log w (K, N) for L_k (Burda et al. 2016, eq. 7-8).

``importance_log_weights`` has the contract of ``vaebench.evaluate.importance_log_weights``:
the same draws (sample chunk j of ``k_chunk`` samples and point batch i use the seed
``kernels.step_seed(seed, j * 100_003 + i, STREAM_IW)``, so the first k of the K draws are the
common random numbers behind every L_k) and the same values, up to float32 summation order
(``tests/test_importance.py``). What makes it faster:

- each point batch is encoded once, not once per sample chunk;
- the decoder runs on blocks of at most ``rows`` (sample, point) rows, so its activations stay
  in cache instead of round-tripping through memory (and, above glibc's mmap threshold,
  faulting in fresh pages on every call);
- for a Bernoulli decoder whose last layer is linear, logits l = h W^T + b, the likelihood
  log p(x|z) = sum_i x_i l_i - softplus(l_i) takes its first term as h . (W^T x) + b . x,
  with W^T x computed once per point, so only softplus(l) is summed over the pixels, in
  torch's fused softplus kernel (``_softplus_rowsum``, compiled when the model's backend is
  ``compile``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import kernels
from vaebench.models import GaussianLatentModel
from vaebench.objectives import log_importance_weights

STREAM_IW = 12  # the seed stream of vaebench.evaluate's importance sampling
ROWS = 2048     # (sample, point) rows per decoder block


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield start, min(start + size, n)


# Above it softplus(l) is l to the last bit in float32 and float64 (exp(-40) < 1e-17, under
# half an ulp of 40 in either); torch's default, 20, would drop up to 2e-9 per pixel in float64.
SOFTPLUS_THRESHOLD = 40.0


def _softplus_rowsum_eager(logits: Tensor) -> Tensor:
    """sum_i softplus(l_i) over the last dim, in torch's fused softplus kernel: one pass over
    the logits where max(l, 0) + log1p(exp(-|l|)), as binary_cross_entropy_with_logits
    writes it, takes five (relu, abs, neg, exp, log1p) and an add. The two agree to float32
    round-off (``tests/test_importance.py``). ``benchmarks.is_nll`` times the whole evaluation
    against a straightforward one (``reports/benchmarks/is_nll-<vendor>.md``, CPU named)."""
    return F.softplus(logits, threshold=SOFTPLUS_THRESHOLD).sum(-1)


_compiled_rowsum = None


def _softplus_rowsum(logits: Tensor, compiled: bool) -> Tensor:
    global _compiled_rowsum
    if not compiled:
        return _softplus_rowsum_eager(logits)
    if _compiled_rowsum is None:
        _compiled_rowsum = torch.compile(_softplus_rowsum_eager, dynamic=True, fullgraph=True)
    return _compiled_rowsum(logits)


def _bernoulli_head(model: GaussianLatentModel) -> tuple[nn.Module, nn.Module] | None:
    """(hidden part, last Linear) of an unconditional Bernoulli MLP decoder, else None."""
    net = getattr(model.decoder, "net", None)
    if (model.likelihood != "bernoulli" or model.n_classes or not isinstance(net, nn.Sequential)
            or not isinstance(net[-1], nn.Linear)):
        return None
    return net[:-1], net[-1]


def _blocks(s: int, b: int, rows: int):
    """(sample slice, point slice) blocks of the (S, B) grid with at most ``rows`` cells:
    whole point rows of several samples, or part of one sample's points."""
    per = max(1, rows // max(b, 1))
    pts = min(b, rows)
    for s0, s1 in _batches(s, per):
        for p0, p1 in _batches(b, pts):
            yield slice(s0, s1), slice(p0, p1)


def _log_px_bernoulli(hidden: nn.Module, last: nn.Linear, x: Tensor, z: Tensor, rows: int,
                      compiled: bool) -> Tensor:
    """log p(x|z) (S, B) for z (S, B, D) through ``hidden`` then the linear ``last`` layer."""
    xw = F.linear(x, last.weight.t())                 # (B, H): W^T x per point
    xb = x @ last.bias                                # (B,):   b . x
    out = torch.empty(z.shape[:2], dtype=xw.dtype)
    for ss, ps in _blocks(z.shape[0], z.shape[1], rows):
        h = hidden(z[ss, ps])                         # (s, p, H)
        out[ss, ps] = (h * xw[ps]).sum(-1) + xb[ps] - _softplus_rowsum(last(h), compiled)
    return out


def _log_px_generic(model: GaussianLatentModel, x: Tensor, y: Tensor | None, z: Tensor,
                    rows: int) -> Tensor:
    """``model.log_px`` on blocks of at most ``rows`` (sample, point) rows."""
    out = None
    for ss, ps in _blocks(z.shape[0], z.shape[1], rows):
        lp = model.log_px(x[ps], z[ss, ps], None if y is None else y[ps])
        if out is None:
            out = torch.empty(z.shape[:2], dtype=lp.dtype)
        out[ss, ps] = lp
    return out


@torch.no_grad()
def importance_log_weights(model: GaussianLatentModel, x: Tensor, y: Tensor | None, k: int,
                           seed: int, bs: int, k_chunk: int = 100, rows: int = ROWS) -> Tensor:
    """log w (K, N) = log p(x|z) + log p(z) - log q(z|x), z ~ q(z|x), K draws per point.

    Same draws and values as ``vaebench.evaluate.importance_log_weights`` (see the module
    docstring); ``rows`` bounds the decoder's block and does not change the values beyond
    float32 summation order.
    """
    n = len(x)
    head = _bernoulli_head(model)
    compiled = model.backend == "compile"
    codes: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}
    out: Tensor | None = None
    for j, k0 in enumerate(range(0, k, k_chunk)):
        kk = min(k_chunk, k - k0)
        for i, (a, b) in enumerate(_batches(n, max(1, bs * 50 // max(kk, 1)))):
            xb, yb = x[a:b], None if y is None else y[a:b]
            if (a, b) not in codes:
                codes[(a, b)] = model.encode(xb, yb)
            mu, logvar = codes[(a, b)]
            z, log_q, log_p = kernels.reparameterize(
                mu, logvar, kk, kernels.step_seed(seed, j * 100_003 + i, STREAM_IW),
                with_log_probs=True, backend=model.backend)
            if kk == 1:
                z, log_q, log_p = z.unsqueeze(0), log_q.unsqueeze(0), log_p.unsqueeze(0)
            if head is not None:
                log_px = _log_px_bernoulli(*head, xb, z, rows, compiled)
            else:
                log_px = _log_px_generic(model, xb, yb, z, rows)
            log_w = log_importance_weights(log_px, log_p, log_q)
            if out is None:
                out = torch.empty(k, n, dtype=log_w.dtype)
            out[k0:k0 + kk, a:b] = log_w
    return out

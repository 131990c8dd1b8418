"""The ELBO's gradient with respect to the encoder: three estimators, their variance, and the
balance between the reconstruction and KL terms.

For q_phi(z|x) = N(mu, diag sigma^2) and the beta-ELBO E_q log p(x|z) - beta KL(q || p(z)),
the KL and its gradient are analytic, so every estimator below uses the exact KL gradient
and they differ only in how they estimate g = grad_phi E_q log p(x|z) from K draws per point:

- ``reparameterization`` (pathwise; Kingma & Welling 2014, eq. 10; Rezende et al. 2014):
  (1/K) sum_k grad_phi log p(x | mu_phi + sigma_phi eps_k);
- ``score_function`` (REINFORCE; Williams 1992; Mohamed et al. 2020, sec. 4):
  (1/K) sum_k f(z_k) grad_phi log q_phi(z_k|x) at fixed z_k, f = log p(x|z) (the score from
  ``kernels.log_q_at``);
- ``score_function_loo``: the same with the leave-one-out baseline
  b_k = (1/(K-1)) sum_{j != k} f(z_j) subtracted from f(z_k) (Kool, van Hoof & Welling 2019,
  "Buy 4 REINFORCE samples, get a baseline for free!"; the same baseline as VIMCO, Mnih &
  Rezende 2016, sec. 3). b_k is independent of z_k, so E[b_k grad log q(z_k)] = 0: unbiased.

Since the KL gradient is exact, the variance of each estimator of grad beta-ELBO is that of
its estimate of g, whatever beta; beta enters through the model it trained. All three are
unbiased for the same gradient (``tests/test_gradients.py`` checks their means
against the closed-form gradient of the linear VAE). One *replicate* is one minibatch
estimate: B points drawn afresh from the pool and K draws of eps per point, the same (x, eps)
for the three estimators, so their comparison is paired. Per-replicate gradients come from
``torch.func.vmap`` over ``torch.func.grad``; the decoder is held fixed.

Variance here is the trace of the covariance of a replicate, per parameter group (a layer's
weight and bias together), estimated unbiasedly over R replicates; intervals come from the
bootstrap over replicates (``scipy.stats.bootstrap``, BCa).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from torch.func import functional_call, grad, vmap

import kernels
from kernels.reference import reparameterize_with_eps, standard_normal
from vaebench.config import GradientStudyConfig  # noqa: F401  (the stage's schema)
from vaebench.gradient_results import ALL, GroupGradients
from vaebench.inputs import model_inputs
from vaebench.models import GaussianLatentModel

ESTIMATORS = ("reparameterization", "score_function", "score_function_loo")




@dataclass(frozen=True)
class EncoderProblem:
    """A Gaussian-latent model seen as functions of its encoder's parameters.

    ``encode(params, x) -> (mu, logvar)`` of shape (B, D); ``log_px(x, z) -> (K, B)`` with the
    decoder fixed; ``params`` the encoder's parameters (detached); ``groups`` maps a group name
    to its parameter names.
    """

    encode: Callable[[dict[str, Tensor], Tensor], tuple[Tensor, Tensor]]
    log_px: Callable[[Tensor, Tensor], Tensor]
    params: dict[str, Tensor]
    groups: dict[str, list[str]] = field(default_factory=dict)


def problem_from_model(model: GaussianLatentModel) -> EncoderProblem:
    """The encoder problem of an unconditional ``GaussianLatentModel`` (one group per module
    that owns parameters, e.g. ``net.0`` for a weight and its bias)."""
    if model.n_classes:
        raise ValueError("the gradient study takes unconditional models; got a conditional one")
    params = {k: v.detach() for k, v in model.encoder.named_parameters()}
    groups: dict[str, list[str]] = {}
    for name in params:
        groups.setdefault(name.rpartition(".")[0] or name, []).append(name)

    def encode(p: dict[str, Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
        return functional_call(model.encoder, p, (x,))

    def log_px(x: Tensor, z: Tensor) -> Tensor:
        return model.log_px(x, z)

    return EncoderProblem(encode, log_px, params, groups)


def _recon_surrogate(problem: EncoderProblem, estimator: str):
    """A scalar function of (params, x, eps) whose gradient is the estimator's estimate of
    grad (1/B) sum_b E_q log p(x_b|z). x: (B, d); eps: (K, B, D)."""

    def surrogate(params: dict[str, Tensor], x: Tensor, eps: Tensor) -> Tensor:
        mu, logvar = problem.encode(params, x)
        z = reparameterize_with_eps(mu, logvar, eps)
        if estimator == "reparameterization":
            return problem.log_px(x, z).mean()
        f = problem.log_px(x, z.detach()).detach()
        log_q = kernels.reference.log_q_at(z, mu, logvar)
        if estimator == "score_function_loo":
            k = f.shape[0]
            f = f - (f.sum(0, keepdim=True) - f) / (k - 1)
        return (f * log_q).mean()

    return surrogate


def recon_gradients(problem: EncoderProblem, x: Tensor, eps: Tensor, estimator: str,
                    chunk: int | None = 8) -> dict[str, Tensor]:
    """Per-replicate estimates of grad_phi (1/B) sum_b E_q log p(x_b|z): name -> (R, *shape).

    x: (R, B, d) minibatches (or (B, d), shared); eps: (R, K, B, D) standard normal draws.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; valid choices: {', '.join(ESTIMATORS)}")
    fn = grad(_recon_surrogate(problem, estimator))
    x_dim = 0 if x.dim() == 3 else None
    with torch.no_grad():  # grad() still differentiates; no graph into the fixed decoder
        return vmap(fn, in_dims=(None, x_dim, 0), chunk_size=chunk)(problem.params, x, eps)


def kl_gradient(problem: EncoderProblem, x: Tensor) -> dict[str, Tensor]:
    """Exact grad_phi (1/B) sum_b KL(q(z|x_b) || N(0, I)) (K&W 2014, appendix B)."""

    def mean_kl(params: dict[str, Tensor]) -> Tensor:
        mu, logvar = problem.encode(params, x)
        return kernels.reference.gaussian_kl(mu, logvar).mean()

    with torch.no_grad():
        return grad(mean_kl)(problem.params)


def flatten(grads: dict[str, Tensor], names: list[str], replicated: bool = True) -> Tensor:
    """Concatenate the named gradients into (R, P) (or (P,) when not ``replicated``)."""
    lead = 1 if replicated else 0
    return torch.cat([grads[n].flatten(lead) for n in names], dim=-1)


# ---------------------------------------------------------------------------------------
# Variance, with intervals from the bootstrap over replicates
# ---------------------------------------------------------------------------------------
def trace_variance(g: Tensor) -> float:
    """Unbiased trace of the covariance of the rows of g (R, P): sum_p Var(g_p)."""
    return float(g.double().var(dim=0, unbiased=True).sum())


@dataclass(frozen=True)
class Spread:
    """What the trace variance of R replicates g (R, P) needs, in float64: g itself when
    P <= R, else its Gram matrix g g^T (R, R). The spread of concatenated parameter groups is
    the sum of their Gram matrices (``+``)."""

    basis: Tensor
    is_gram: bool

    @classmethod
    def of(cls, g: Tensor) -> Spread:
        g = g.double()
        return cls(g, False) if g.shape[1] <= g.shape[0] else cls(g @ g.T, True)

    def gram(self) -> Tensor:
        return self.basis if self.is_gram else self.basis @ self.basis.T

    def __add__(self, other: Spread) -> Spread:
        if not (self.is_gram or other.is_gram):
            return Spread.of(torch.cat([self.basis, other.basis], dim=1))
        return Spread(self.gram() + other.gram(), True)

    @property
    def replicates(self) -> int:
        return len(self.basis)

    def trace(self, idx: np.ndarray | None = None) -> np.ndarray:
        """Trace variance of the replicates ``idx`` (..., R), a resample with repeats (all of
        them, once, by default).

        With c the count of each replicate in the resample, (R-1) tr Var =
        c . rowsq - (1/R) ||c g||^2, where rowsq_r = ||g_r||^2 = G_rr and ||c g||^2 = c^T G c.
        Computed in torch, on torch's thread pool (numpy's BLAS threads would fight torch's
        spinning ones).
        """
        if idx is None:
            idx = np.arange(self.replicates)
        r = idx.shape[-1]
        flat = torch.from_numpy(np.ascontiguousarray(idx).reshape(-1, r))
        counts = torch.zeros(len(flat), self.replicates, dtype=torch.float64)
        counts.scatter_add_(1, flat, torch.ones(flat.shape, dtype=torch.float64))
        if self.is_gram:
            rowsq, quad = self.basis.diagonal(), ((counts @ self.basis) * counts).sum(-1)
        else:
            rowsq, quad = self.basis.square().sum(-1), (counts @ self.basis).square().sum(-1)
        out = (counts @ rowsq - quad / r) / (r - 1)
        return out.reshape(idx.shape[:-1]).numpy()


def _bootstrap(stat, r: int, n_resamples: int, confidence: float, seed: int
               ) -> tuple[float, float]:
    from scipy.stats import bootstrap

    res = bootstrap((np.arange(r),), stat, vectorized=True, paired=True,
                    n_resamples=n_resamples, confidence_level=confidence, method="BCa",
                    batch=50, random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _spread(g: Tensor | Spread) -> Spread:
    return g if isinstance(g, Spread) else Spread.of(g)


def variance_interval(g: Tensor | Spread, n_resamples: int = 999, confidence: float = 0.95,
                      seed: int = 0) -> tuple[float, float, float]:
    """(trace variance, low, high) of replicates g (R, P), bootstrap BCa interval."""
    sp = _spread(g)
    low, high = _bootstrap(lambda idx, axis=-1: sp.trace(np.moveaxis(idx, axis, -1)),
                           sp.replicates, n_resamples, confidence, seed)
    return float(sp.trace()), low, high


def variance_ratio_interval(a: Tensor | Spread, b: Tensor | Spread, n_resamples: int = 999,
                            confidence: float = 0.95, seed: int = 0
                            ) -> tuple[float, float, float]:
    """(Var a / Var b, low, high) for paired replicates a, b (R, P): the same replicates are
    resampled for both (they share x and eps), bootstrap BCa interval."""
    sa, sb = _spread(a), _spread(b)

    def stat(idx, axis=-1):
        idx = np.moveaxis(idx, axis, -1)
        return sa.trace(idx) / sb.trace(idx)

    low, high = _bootstrap(stat, sa.replicates, n_resamples, confidence, seed)
    return float(sa.trace() / sb.trace()), low, high


def cosine(a: Tensor, b: Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0))


# ---------------------------------------------------------------------------------------
# One checkpoint: every estimator on the same replicates, and the recon/KL balance
# ---------------------------------------------------------------------------------------
def draw_replicates(pool: Tensor, r: int, b: int, k: int, latent_dim: int, seed: int
                    ) -> tuple[Tensor, Tensor]:
    """R minibatches of B distinct points of ``pool`` and eps (R, K, B, D), from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.stack([torch.randperm(len(pool), generator=gen)[:b] for _ in range(r)])
    eps = standard_normal(kernels.step_seed(seed, 0, 1), (r, k, b, latent_dim),
                          dtype=pool.dtype)
    return pool[idx], eps


def _agreement(a: Tensor, b: Tensor) -> float:
    """R ||mean(a - b)||^2 / tr Var(a - b) for paired replicates: about 1 when E a = E b."""
    diff = (a - b).double()
    return float(len(diff) * diff.mean(0).square().sum() / diff.var(0).sum())


def measure(problem: EncoderProblem, pool: Tensor, cfg: GradientStudyConfig, seed: int
            ) -> list[GroupGradients]:
    """Every estimator's replicates at one checkpoint, per group and for the whole encoder."""
    d = problem.encode(problem.params, pool[:1])[0].shape[-1]
    x, eps = draw_replicates(pool, cfg.replicates, min(cfg.batch_size, len(pool)),
                             cfg.samples, d, seed)
    recon = {e: recon_gradients(problem, x, eps, e) for e in ESTIMATORS}
    kl = kl_gradient(problem, pool)
    rows: dict[str, dict] = {}
    for name, names in problem.groups.items():
        flat = {e: flatten(recon[e], names) for e in ESTIMATORS}
        rep = flat["reparameterization"]
        rows[name] = {
            "spread": {e: Spread.of(flat[e]) for e in ESTIMATORS},
            "mean": {e: flat[e].double().mean(0) for e in ESTIMATORS},
            "kl": flatten(kl, names, replicated=False).double(),
            "agreement": {e: _agreement(flat[e], rep) for e in ESTIMATORS[1:]},
        }
    whole = list(rows.values())  # the whole encoder: groups concatenated
    rows[ALL] = {
        "spread": {e: sum((r["spread"][e] for r in whole[1:]), whole[0]["spread"][e])
                   for e in ESTIMATORS},
        "mean": {e: torch.cat([r["mean"][e] for r in whole]) for e in ESTIMATORS},
        "kl": torch.cat([r["kl"] for r in whole]),
        "agreement": {e: _agreement(flatten(recon[e], list(problem.params)),
                                    flatten(recon["reparameterization"], list(problem.params)))
                      for e in ESTIMATORS[1:]},
    }
    out = []
    for gi, (name, row) in enumerate(rows.items()):
        sp, g_recon = row["spread"], row["mean"]["reparameterization"]
        out.append(GroupGradients(
            group=name, size=int(row["kl"].numel()),
            variance={e: variance_interval(sp[e], cfg.bootstrap, cfg.confidence, seed + gi)
                      for e in ESTIMATORS},
            ratio={e: variance_ratio_interval(sp[e], sp["reparameterization"], cfg.bootstrap,
                                              cfg.confidence, seed + gi)
                   for e in ESTIMATORS[1:]},
            agreement=row["agreement"], recon_norm=float(g_recon.norm()),
            kl_norm=float(row["kl"].norm()), cos_recon_kl=cosine(g_recon, row["kl"])))
    return out


# ---------------------------------------------------------------------------------------
# The models the study measures: trained here, snapshots at chosen steps
# ---------------------------------------------------------------------------------------
def train_snapshots(model: GaussianLatentModel, x_train: Tensor, kind: str, levels: int | None,
                    cfg: GradientStudyConfig, seed: int) -> Iterator[int]:
    """Adam on ``model.objective`` (the beta-ELBO), minibatches drawn by index with dynamic
    binarization keyed by (seed, step), as the trainer does; yields at every step in
    ``cfg.checkpoints`` with the model at that step (step 0: the initialization)."""
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=True)
    gen = torch.Generator().manual_seed(seed)
    n = len(x_train)
    bs = min(cfg.batch_size, n)
    last = max(cfg.checkpoints)
    perm, pos = torch.randperm(n, generator=gen), 0
    for step in range(last + 1):
        if step in cfg.checkpoints:
            model.eval()
            yield step
            model.train()
        if step == last:
            return
        if pos + bs > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        idx = perm[pos:pos + bs]
        pos += bs
        xb = model_inputs(x_train.index_select(0, idx), kind, levels, model.likelihood,
                          kernels.step_seed(seed, step, 2), check=False)
        obj, _ = model.objective(xb, None, kernels.step_seed(seed, step, 0))
        opt.zero_grad(set_to_none=True)
        (-obj.mean()).backward()
        opt.step()

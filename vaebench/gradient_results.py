"""The typed contract of the gradient study: ``reports/gradients/gradients.json``.

The ``gradients`` stage (``pipelines/gradients.py``) builds a ``GradientStudyResult`` and
writes its JSON; the report reads it back through this class. A renamed field fails
validation, never a page silently.

Conventions: an ``Interval`` is (estimate, low, high) at ``config.confidence``, BCa bootstrap
over the R replicates; a variance is the trace of the covariance of one minibatch estimate of
the encoder's gradient of the beta-ELBO (nats per data point); ``ratio[e]`` is estimator
``e``'s variance over the reparameterization estimator's, paired on the same draws.
"""

from __future__ import annotations

from typing import Any

from vaebench.config import GradientStudyConfig
from vaebench.results import _Frozen

Interval = tuple[float, float, float]  # (estimate, low, high)
ALL = "all"  # the group of every encoder parameter; the others are its layers


class GroupGradients(_Frozen):
    """One parameter group at one checkpoint (``vaebench.gradients.measure``)."""

    group: str
    size: int
    variance: dict[str, Interval]  # estimator -> trace of the covariance
    ratio: dict[str, Interval]     # estimator -> its variance / reparam's
    agreement: dict[str, float]  # R ||mean(g_e - g_rep)||^2 / tr Var(g_e - g_rep): ~1 if unbiased
    recon_norm: float     # ||grad E_q log p(x|z)||, mean of the reparameterization replicates
    kl_norm: float        # ||grad KL||, exact, over the pool
    cos_recon_kl: float   # cos(grad recon, grad KL); > 0: raising recon raises the KL too


class Checkpoint(_Frozen):
    """The model of one beta after ``step`` Adam steps, and its gradients per group."""

    step: int
    elbo: float  # train-pool ELBO, nats per data point
    kl: float
    groups: list[GroupGradients]

    def group(self, name: str = ALL) -> GroupGradients:
        return next(g for g in self.groups if g.group == name)


class BetaRun(_Frozen):
    beta: float
    checkpoints: list[Checkpoint]


class GradientStudyResult(_Frozen):
    """What the gradients stage measured, with where and how."""

    date: str
    cpu: str
    threads: int
    torch: str
    machine: dict[str, Any]
    config: GradientStudyConfig
    dim: int      # data dimension
    n_pool: int   # training points the replicates draw from
    estimators: dict[str, str]  # estimator -> its label
    baseline: str
    verdict: str
    holds: bool   # every (beta, step) cell's lower bound of score function / reparam > 1
    agreement_range: dict[str, tuple[float, float]]
    runs: list[BetaRun]
    seconds: float

    def cells(self) -> list[tuple[BetaRun, Checkpoint]]:
        return [(run, ck) for run in self.runs for ck in run.checkpoints]

    @property
    def layers(self) -> list[str]:
        return [g.group for g in self.runs[0].checkpoints[0].groups if g.group != ALL]


def interval_text(t: Interval) -> str:
    """``estimate [low, high]`` at three significant digits."""
    return f"{t[0]:.3g} [{t[1]:.3g}, {t[2]:.3g}]"

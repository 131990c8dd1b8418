"""The training regimen of published protocols: KL warm-up, the IWAE learning-rate schedule,
early stopping on the validation ELBO, and Adam on normalized gradients.

Pure functions and a small state object; ``vaebench.train`` applies them. Every rule cites the
code it reproduces.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch

# Burda et al. 2016, sec. 5: 3^i passes at learning rate 0.001 * 10^(-i/7), i = 0..7.
BURDA_STAGES = 8


def kl_warmup_weight(epoch: int, warmup_epochs: int) -> float:
    """The KL weight of 1-based ``epoch``: min(1, epoch / warmup_epochs); 1 when warmup is 0.

    Linear warm-up as in the VampPrior code (jmtomczak/vae_vampprior, ``utils/training.py``,
    and sajadn/Exemplar-VAE, ``utils/training.py``: ``beta = epoch / args.warmup``, capped at 1,
    epochs counted from 1), so the first epoch trains with weight 1/warmup_epochs.
    """
    if epoch < 1:
        raise ValueError(f"epoch is counted from 1; got {epoch}")
    if warmup_epochs == 0:
        return 1.0
    return min(1.0, epoch / warmup_epochs)


def burda_stage(epoch: int) -> int:
    """The stage i of 0-based ``epoch`` in Burda et al.'s schedule (3^i epochs in stage i);
    epochs past the last stage stay in it."""
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0; got {epoch}")
    end = 0
    for i in range(BURDA_STAGES):
        end += 3 ** i
        if epoch < end:
            return i
    return BURDA_STAGES - 1


def burda_epochs() -> int:
    """The schedule's length: sum of 3^i for i = 0..7 = 3280 epochs."""
    return sum(3 ** i for i in range(BURDA_STAGES))


def burda_lr_factor(epoch: int) -> float:
    """The learning rate of 0-based ``epoch`` relative to the first stage's.

    The paper writes 0.001 * 10^(-i/7); the official code (yburda/iwae, ``experiments.py``)
    sets ``1e-4 * round(10 ** (1 - i / 7), 1)``, i.e. the factor rounded to two significant
    digits (1, 0.72, 0.52, 0.37, 0.27, 0.19, 0.14, 0.1). This is the code's rounding.
    """
    return round(10.0 ** (1.0 - burda_stage(epoch) / 7.0), 1) / 10.0


@torch.no_grad()
def normalize_gradients_(params: Iterable[torch.nn.Parameter], eps: float = 1e-7) -> None:
    """Scale each parameter's gradient to unit L2 norm: g / (||g||_2 + eps), in place.

    The ``AdamNormGrad`` optimizer of the VampPrior and Exemplar VAE code (``utils/optimizer.py``
    in both) normalizes every parameter tensor's gradient this way before the Adam update.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    norms = torch._foreach_norm(grads, 2)
    torch._foreach_add_(norms, eps)
    torch._foreach_div_(grads, norms)


@dataclass
class EarlyStopping:
    """Early stopping on the validation ELBO (higher is better), as in the VampPrior code
    (``utils/perform_experiment.py``; Exemplar VAE ``density_estimation.py``):

    - an epoch whose validation ELBO beats the best so far becomes the best (its weights are
      kept) and resets the counter;
    - otherwise the counter grows by one, but is reset to 0 while epoch < warmup_epochs;
    - training stops after the epoch at which the counter exceeds ``patience``.
    """

    patience: int
    warmup_epochs: int = 0
    best_value: float = float("-inf")
    best_epoch: int = 0
    counter: int = 0
    stopped_at: int = 0  # the epoch after which training stopped (0: not stopped)

    def update(self, epoch: int, value: float) -> bool:
        """Record 1-based ``epoch``'s validation ELBO; True when it is the new best."""
        if value > self.best_value:
            self.best_value, self.best_epoch, self.counter = value, epoch, 0
            return True
        self.counter += 1
        if epoch < self.warmup_epochs:
            self.counter = 0
        if self.counter > self.patience and not self.stopped_at:
            self.stopped_at = epoch
        return False

    @property
    def stop(self) -> bool:
        return self.stopped_at > 0

    def state(self) -> dict:
        return asdict(self)

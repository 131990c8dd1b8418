"""The train stage's logic: Adam on minibatches drawn by index from in-memory tensors.

A model the hand-written backward pass covers (``vaebench.fused_step``: the beta-ELBO of an
MLP VAE, beta-VAE or CVAE with a Bernoulli decoder) trains on it in one process; every other
model, and every run under torchrun, on autograd. ``TrainState.gradients`` says which.

Checkpoints are written atomically every epoch. Only an interrupted run resumes: a checkpoint
is picked up when its fingerprint (the hash of the parameters, seed, data, backend, GEMM
library and the source of every file the stage imports) matches and it has epochs left to
train. A finished run is never returned as it stands: run again (``dvc repro -f``), it trains
afresh. A NaN or infinite loss stops training with ``TrainingDiverged``; the last good
checkpoint stays.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import kernels
from vaebench import fused_step, parallel
from vaebench.inputs import (
    VAL_INPUT_STREAM,
    VAL_SEED_STREAM,
    check_stored,
    model_inputs,
    seeded_generator,
)
from vaebench.io import atomic_write, remove_temporaries
from vaebench.lookahead import LOOKAHEAD_STEPS, Batch, Lookahead
from vaebench.models import DataInfo, GaussianLatentModel, build_model
from vaebench.nets.linear import set_gemm
from vaebench.parallel import Shards
from vaebench.regimen import (
    EarlyStopping,
    burda_lr_factor,
    kl_warmup_weight,
    normalize_gradients_,
)

ONE_PROCESS = Shards()  # every shard of each batch in this process (vaebench.parallel)
CPU = torch.device("cpu")


MIDPOINT_FILE = "midpoint.pt"  # the model half-way through training
BY_HAND = "by hand (vaebench.fused_step)"


def midpoint_epoch(epochs: int) -> int:
    """The epoch whose model is kept beside the final one, half-way through training: the
    model checks measure from it how much the optimizer was still moving."""
    return epochs // 2


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainState:
    epoch: int = 0
    step: int = 0
    seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int = 0  # the epoch an interrupted run resumed from (0: trained from scratch)
    early_stopping: dict | None = None  # best epoch, its val ELBO, where it stopped
    gradients: str = "autograd"  # or BY_HAND: how the steps' gradients were computed


def data_info(bundle) -> DataInfo:
    return DataInfo(dim=bundle.dim, image_shape=bundle.image_shape, kind=bundle.kind,
                    n_classes=bundle.n_classes, size=len(bundle.x_train))


def as_tensors(x: np.ndarray, y: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    return torch.from_numpy(np.ascontiguousarray(x)), (
        None if y is None else torch.from_numpy(np.ascontiguousarray(y)).long())


def validation_batches(x: torch.Tensor, y: torch.Tensor | None, kind: str, levels: int | None,
                       likelihood: str, seed: int, batch_size: int = 1000) -> list[Batch]:
    """The held-out split as model inputs, batch by batch, with each batch's eps seed: fixed
    seeds, so the trainer prepares them once and validates every epoch on the same draws."""
    return [(model_inputs(x[start:start + batch_size], kind, levels, likelihood,
                          kernels.step_seed(seed, i, VAL_INPUT_STREAM)),
             None if y is None else y[start:start + batch_size],
             kernels.step_seed(seed, i, VAL_SEED_STREAM))
            for i, start in enumerate(range(0, len(x), batch_size))]


@torch.no_grad()
def evaluate_split(model: GaussianLatentModel, batches: list[Batch]) -> dict[str, float]:
    """Mean ELBO, reconstruction and KL (nats per point) over ``validation_batches``, one draw
    per point."""
    model.eval()
    sums: dict[str, float] = {}
    for xb, yb, eps_seed in batches:
        _, stats = model.objective(xb, yb, eps_seed)
        for k, v in stats.items():
            sums[k] = sums.get(k, 0.0) + float(v.sum())
    model.train()
    points = sum(len(xb) for xb, _, _ in batches)
    return {k: v / points for k, v in sums.items()}


def train(spec, bundle, out_dir: Path, tracker, fingerprint: str,
          progress: bool = True, on_epoch: Callable[[TrainState], None] | None = None,
          shards: Shards = ONE_PROCESS, device: torch.device = CPU,
          lookahead: int = LOOKAHEAD_STEPS) -> tuple[GaussianLatentModel, TrainState]:
    """Train ``spec`` on ``bundle``; write ``out_dir/checkpoint.pt`` every epoch. ``shards``:
    the part of each step's batch this process computes (``vaebench.parallel``; only the
    process with shard 0 validates and checkpoints). ``lookahead``: the steps whose inputs and
    eps are drawn together, before the first of them (``vaebench.lookahead``)."""
    cfg = spec.train
    seed = spec.seed
    torch.manual_seed(seed)
    set_gemm(spec.study.gemm)
    model = build_model(spec.model, cfg, data_info(bundle), backend=spec.study.backend)
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, eps=cfg.adam_eps,
                           betas=tuple(cfg.adam_betas), fused=True)  # one fused CPU kernel
    x_train, y_train = (None if t is None else t.to(device)
                        for t in as_tensors(bundle.x_train, bundle.y_train))
    x_val, y_val = (None if t is None else t.to(device)
                    for t in as_tensors(bundle.x_val, bundle.y_val))
    check_stored(x_train, bundle.kind, bundle.levels)  # once, not every minibatch
    val_batches = (validation_batches(x_val, y_val, bundle.kind, bundle.levels,
                                      model.likelihood, seed + 1) if shards.main else [])
    n = len(x_train)
    bs = min(cfg.batch_size, n)
    shards.check(bs, "train")
    step_objective = parallel.objective(model, shards)
    # the backward pass written out, where it covers the model, in one process with one shard
    # per step: it sets each .grad, where DDP's backward all-reduces them and a step's shards
    # in one process accumulate them through autograd
    by_hand = (not shards.distributed and len(shards.ranks) == 1
               and fused_step.unsupported(model) is None)
    batches = Lookahead(x_train, y_train, bs, bundle.kind, bundle.levels, model.likelihood, seed,
                        shards, lookahead)
    steps_per_epoch = batches.steps_per_epoch(n)
    epochs = cfg.total_epochs(n)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
             if cfg.lr_schedule == "cosine" else None)
    gen = seeded_generator(seed)
    state = TrainState(gradients=BY_HAND if by_hand else "autograd")
    stopper = (EarlyStopping(cfg.early_stopping.patience, cfg.kl_warmup_epochs)
               if cfg.early_stopping else None)
    if stopper is not None and shards.world > 1:  # only rank 0 validates, so only it could stop
        raise ValueError(f"{spec.run_id}: early_stopping needs one process; run it without "
                         f"torchrun (got {shards.world} processes)")
    best_model = None
    ckpt_path = out_dir / "checkpoint.pt"
    if shards.main and out_dir.is_dir():
        remove_temporaries(out_dir)  # a killed run's half-written checkpoint (the run is locked)
    ckpt = resumable_checkpoint(ckpt_path, fingerprint, epochs)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if sched is not None:
            sched.load_state_dict(ckpt["scheduler"])
        gen.set_state(ckpt["generator"])
        state = TrainState(**{**ckpt["state"], "resumed_from": ckpt["state"]["epoch"],
                              "gradients": state.gradients})
        if stopper is not None:
            stopper, best_model = EarlyStopping(**state.early_stopping), ckpt["best_model"]
    model.train()
    bar = tqdm(range(state.epoch, epochs), initial=state.epoch, total=epochs,
               desc=spec.run_id, disable=not progress, unit="epoch", leave=False)
    for epoch in bar:
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen)
        step_stats: list[dict[str, torch.Tensor]] = []  # averaged after the epoch's steps
        model.kl_weight = kl_warmup_weight(epoch + 1, cfg.kl_warmup_epochs)
        if cfg.lr_schedule == "burda":
            for group in opt.param_groups:
                group["lr"] = cfg.lr * burda_lr_factor(epoch)
        for shard_batches in batches.epoch(perm, state.step):
            opt.zero_grad(set_to_none=True)
            for xb, yb, eps_seed in shard_batches:  # one per process under torchrun
                obj, stats = (fused_step.elbo_step_unchecked(model, xb, yb, eps_seed) if by_hand else
                              step_objective(xb, yb, eps_seed))
                loss = -obj.mean()
                if not math.isfinite(loss.item()):
                    raise TrainingDiverged(
                        f"{spec.run_id}: loss is {loss.item()} at epoch {epoch + 1}, step "
                        f"{state.step}; the last good checkpoint (epoch {state.epoch}) is kept")
                if len(shards.ranks) > 1:
                    loss = loss / len(shards.ranks)  # the gradient of the global batch's mean
                if not by_hand:  # the step by hand has set every .grad
                    loss.backward()
                step_stats.append({k: v.detach() for k, v in stats.items()})
            if cfg.grad_normalization == "unit_norm":  # after DDP's all-reduce: the global one
                normalize_gradients_(model.parameters())
            opt.step()
            if sched is not None:
                sched.step()
            state.step += 1
        sums: dict[str, float] = {}
        for stats in step_stats:  # in step order, as if summed step by step
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + float(v.mean()) / len(shards.ranks)
        state.seconds += time.perf_counter() - t0
        sums = parallel.mean_over_ranks(sums, shards, device)
        if not shards.main:  # rank 0 validates, checkpoints and logs
            state.epoch = epoch + 1
            continue
        row = {f"train_{k}": v / steps_per_epoch for k, v in sums.items()}
        val = evaluate_split(model, val_batches)
        row.update({f"val_{k}": v for k, v in val.items()})
        if cfg.kl_warmup_epochs:
            row["kl_weight"] = model.kl_weight
        if stopper is not None and stopper.update(epoch + 1, val["elbo"]):
            best_model = {k: v.clone() for k, v in model.state_dict().items()}
        row["epoch"] = epoch + 1
        row["seconds"] = state.seconds
        state.history.append(row)
        state.epoch = epoch + 1
        state.early_stopping = None if stopper is None else stopper.state()
        tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch + 1)
        ckpt = {"fingerprint": fingerprint, "model": model.state_dict(),
                "optimizer": opt.state_dict(), "generator": gen.get_state(),
                "scheduler": None if sched is None else sched.state_dict(),
                "best_model": best_model, "state": state.__dict__}
        atomic_write(ckpt_path, lambda p, c=ckpt: torch.save(c, p))
        if state.epoch == midpoint_epoch(epochs):
            atomic_write(out_dir / MIDPOINT_FILE, lambda p: torch.save(model.state_dict(), p))
        bar.set_postfix(val_elbo=f"{val['elbo']:.2f}")
        if on_epoch is not None:
            on_epoch(state)
        if stopper is not None and stopper.stop:
            break
    model.kl_weight = 1.0
    if best_model is not None:  # early stopping keeps the best epoch's weights
        model.load_state_dict(best_model)
    model.eval()
    return model, state


def resumable_checkpoint(path: Path, fingerprint: str, epochs: int) -> dict | None:
    """The checkpoint at ``path`` if it belongs to an interrupted run of this very model
    (same fingerprint, fewer than ``epochs`` epochs done); None otherwise."""
    if not path.exists():
        return None
    ckpt = torch.load(path, weights_only=False, map_location="cpu")
    if ckpt.get("fingerprint") != fingerprint or ckpt["state"]["epoch"] >= epochs:
        return None
    if (ckpt["state"].get("early_stopping") or {}).get("stopped_at"):
        return None  # stopped early: finished
    return ckpt


def load_trained(spec, bundle, out_dir: Path
                 ) -> tuple[GaussianLatentModel, dict, GaussianLatentModel | None]:
    """The trained model from ``out_dir/checkpoint.pt`` on the CPU, its training state, and the
    model half-way through training (``MIDPOINT_FILE``; None for a one-epoch run)."""
    ckpt = torch.load(out_dir / "checkpoint.pt", weights_only=False, map_location="cpu")
    torch.manual_seed(spec.seed)
    set_gemm(spec.study.gemm)

    def build(state_dict) -> GaussianLatentModel:
        model = build_model(spec.model, spec.train, data_info(bundle), backend=spec.study.backend)
        model.load_state_dict(state_dict)
        model.eval()
        return model

    mid = out_dir / MIDPOINT_FILE
    mid_model = (build(torch.load(mid, weights_only=True, map_location="cpu"))
                 if mid.exists() else None)
    best = ckpt.get("best_model")  # early stopping: the best epoch's weights
    return build(ckpt["model"] if best is None else best), ckpt["state"], mid_model

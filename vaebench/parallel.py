"""One run across processes: data parallelism with ``torch.distributed``, launched by torchrun.

    torchrun --nproc_per_node=2 -m pipelines.train vae fashion-mnist --seed 0

Every process draws the run's permutation from the same generator, so all agree on step t's
global batch of B points; it is cut into W contiguous shards of B/W points and rank r computes
shard r. Shard r's random draws (binarization or dequantization noise, and eps) come from
``kernels.step_seed(seed, t, stream + STREAMS * r)``: shard 0 draws exactly what a one-process
run draws, every other shard has seed streams of its own. The objective is wrapped in
``DistributedDataParallel`` (gloo on the CPU, nccl on CUDA), whose backward all-reduces the
gradients to their mean over ranks, so each rank takes the same Adam step on the mean loss of
the global batch (Li et al. 2020, "PyTorch Distributed", VLDB). Only rank 0 validates,
checkpoints, logs and writes ``train.json``; the epoch's training statistics are averaged over
ranks first.

``Shards(W, (0, ..., W-1))`` computes all W shards in turn in one process and accumulates their
gradients: the same arithmetic without communication, the one-process reference a W-process
run equals within float tolerance (``tests/test_ddp.py``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
from torch import Tensor, nn

STREAMS = 4  # seed streams a shard uses: vaebench.train's TRAIN_*/VAL_* streams 0..3


class ParallelError(ValueError):
    """A run that cannot be split as asked (one line)."""


@dataclass(frozen=True)
class Shards:
    """The shards of each step's global batch that this process computes."""

    world: int = 1
    ranks: tuple[int, ...] = (0,)

    @property
    def distributed(self) -> bool:
        """Whether other processes compute the other shards (torchrun)."""
        return len(self.ranks) < self.world

    @property
    def main(self) -> bool:
        """Whether this process validates, checkpoints and logs (rank 0)."""
        return 0 in self.ranks

    def stream(self, base: int, rank: int) -> int:
        """Shard ``rank``'s seed stream for the draws of stream ``base``."""
        return base + STREAMS * rank

    def rows(self, idx: Tensor, rank: int) -> Tensor:
        """Shard ``rank`` of the global batch ``idx`` (contiguous, len(idx) / world points)."""
        size = len(idx) // self.world
        return idx[rank * size:(rank + 1) * size]

    def check(self, batch_size: int, where: str) -> None:
        if batch_size % self.world:
            raise ParallelError(
                f"{where}.batch_size: {batch_size} points do not split into {self.world} "
                f"equal shards (torchrun's WORLD_SIZE); use a multiple of {self.world}")


def from_env() -> Shards:
    """This process's shard under torchrun (``WORLD_SIZE``, ``RANK``); one shard otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Shards()
    return Shards(world, (int(os.environ["RANK"]),))


def device_for(study_device: str, shards: Shards) -> torch.device:
    """The run's device: the CPU, or this rank's GPU (``LOCAL_RANK``) for study.device cuda."""
    if study_device != "cuda":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ParallelError("study.device: 'cuda', but torch sees no CUDA device; valid "
                            "choices here: cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) if shards.distributed
                        else torch.cuda.current_device())


def init(shards: Shards, device: torch.device) -> None:
    """Join the process group torchrun set up (gloo on the CPU, nccl on CUDA)."""
    import torch.distributed as dist

    if shards.distributed and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def finish(shards: Shards) -> None:
    import torch.distributed as dist

    if shards.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def fingerprint(base: str, shards: Shards) -> str:
    """A checkpoint's fingerprint: shard draws depend on the world size, so a W-process run
    resumes only a W-process run (W = 1 keeps the one-process fingerprint)."""
    if shards.world == 1:
        return base
    return hashlib.sha256(f"{base}/world{shards.world}".encode()).hexdigest()[:16]


class _Objective(nn.Module):
    """``model.objective`` as a forward, for DistributedDataParallel to hook."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, y: Tensor | None, seed: int):
        return self.model.objective(x, y, seed)


def objective(model: nn.Module, shards: Shards):
    """The callable a training step runs, ``(x, y, seed) -> (objective, stats)``: the model's
    own, or its DDP wrapper, whose backward all-reduces the gradients."""
    if not shards.distributed:
        return model.objective
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(_Objective(model))


def mean_over_ranks(values: dict[str, float], shards: Shards,
                    device: torch.device | None = None) -> dict[str, float]:
    """Each value's mean over the ranks (float64, one all-reduce on ``device``, which nccl
    needs on the GPU); unchanged in one process."""
    if not shards.distributed or not values:
        return values
    import torch.distributed as dist

    keys = sorted(values)
    buf = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(buf)
    return {k: float(v) / shards.world for k, v in zip(keys, buf.tolist(), strict=True)}

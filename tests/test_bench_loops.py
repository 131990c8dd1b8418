"""The training benchmark's GEMM floor counts the GEMMs a training step really runs."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.loops import BATCH, PlainVAE, gemm_flops_per_step, plain_loss, step_gemms


def test_gemm_floor_has_the_flops_of_a_training_step():
    """torch's FLOP counter over one forward + backward of the 784-400-20 VAE counts exactly
    the GEMMs of ``step_gemms`` (the first layer's input gradient is never computed)."""
    torch.manual_seed(0)
    model = PlainVAE()
    x = torch.bernoulli(torch.full((BATCH, 784), 0.3))
    with FlopCounterMode(display=False) as counter:
        logits, mu, logvar = model(x)
        plain_loss(logits, x, mu, logvar).mean().backward()
    assert counter.get_total_flops() == gemm_flops_per_step()
    assert len(step_gemms()) == 11  # 4 forward, 4 weight gradients, 3 input gradients

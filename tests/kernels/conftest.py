"""Shared setup for the latent-layer kernel tests.

The tests run on the device named by ``$VAEBENCH_TEST_DEVICE`` (default ``cpu``; ``cuda`` on
a GPU machine: ``benchmarks/gpu_check.sh``). Every input comes from ``make_inputs`` (drawn on
the CPU from a fixed seed, then moved), and every reference is computed on the inputs' device.

On the CPU, Triton kernels run through Triton's interpreter. ``TRITON_INTERPRET=1`` must be
set before ``kernels.triton_latent`` decorates its kernels, so it is set when this file is
imported, before any test module is collected; a copy imported earlier without it is
reloaded. On CUDA the kernels are compiled for the GPU.
"""

from __future__ import annotations

import importlib
import os
import sys

import torch

DEVICE = torch.device(os.environ.get("VAEBENCH_TEST_DEVICE", "cpu"))
ON_CUDA = DEVICE.type == "cuda"
if not ON_CUDA:
    os.environ["TRITON_INTERPRET"] = "1"
    module = sys.modules.get("kernels.triton_latent")
    if module is not None and not module.INTERPRET:
        importlib.reload(module)

import pytest  # noqa: E402

if ON_CUDA and not torch.cuda.is_available():
    raise pytest.UsageError(f"VAEBENCH_TEST_DEVICE={DEVICE} but torch sees no CUDA device")


def make_inputs(shape, dtype=torch.float32, seed=0, requires_grad=False, device=None):
    """mu ~ N(0, 1), logvar ~ U(-2, 1): sigma between 0.37 and 1.65, on ``device``
    (default: the test device); the same values on every device."""
    gen = torch.Generator().manual_seed(seed)
    mu = torch.randn(shape, generator=gen, dtype=torch.float64)
    logvar = torch.rand(shape, generator=gen, dtype=torch.float64) * 3.0 - 2.0
    target = DEVICE if device is None else torch.device(device)
    mu, logvar = mu.to(target, dtype), logvar.to(target, dtype)
    return mu.requires_grad_(requires_grad), logvar.requires_grad_(requires_grad)


@pytest.fixture
def inputs():
    return make_inputs


@pytest.fixture
def device():
    return DEVICE


@pytest.fixture(autouse=True)
def _no_default_backend(monkeypatch):
    """Each test starts from automatic backend choice, whatever the environment says."""
    import kernels

    monkeypatch.delenv("VAEBENCH_BACKEND", raising=False)
    kernels.set_default_backend(None)
    yield
    kernels.set_default_backend(None)

"""Shared setup for the latent-layer kernel tests.

Triton kernels run on the CPU through Triton's interpreter here. ``TRITON_INTERPRET=1`` must
be set before ``kernels.triton_latent`` decorates its kernels, so it is set when this file is
imported, before any test module is collected; a copy imported earlier without it is reloaded.
"""

from __future__ import annotations

import importlib
import os
import sys

os.environ["TRITON_INTERPRET"] = "1"
if "kernels.triton_latent" in sys.modules and not sys.modules["kernels.triton_latent"].INTERPRET:
    importlib.reload(sys.modules["kernels.triton_latent"])

import pytest  # noqa: E402
import torch  # noqa: E402


def make_inputs(shape, dtype=torch.float32, seed=0, requires_grad=False):
    """mu ~ N(0, 1), logvar ~ U(-2, 1): sigma between 0.37 and 1.65."""
    gen = torch.Generator().manual_seed(seed)
    mu = torch.randn(shape, generator=gen, dtype=torch.float64)
    logvar = torch.rand(shape, generator=gen, dtype=torch.float64) * 3.0 - 2.0
    mu, logvar = mu.to(dtype), logvar.to(dtype)
    return mu.requires_grad_(requires_grad), logvar.requires_grad_(requires_grad)


@pytest.fixture
def inputs():
    return make_inputs


@pytest.fixture(autouse=True)
def _no_default_backend(monkeypatch):
    """Each test starts from automatic backend choice, whatever the environment says."""
    import kernels

    monkeypatch.delenv("VAEBENCH_BACKEND", raising=False)
    kernels.set_default_backend(None)
    yield
    kernels.set_default_backend(None)

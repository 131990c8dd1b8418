"""Backend choice and bad-input errors of the public API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import kernels

ROOT = Path(__file__).resolve().parents[2]


def test_backend_precedence(monkeypatch):
    assert kernels.resolve_backend("auto", "cpu") == "compile"
    assert kernels.resolve_backend(None, torch.device("cpu")) == "compile"
    monkeypatch.setenv("VAEBENCH_BACKEND", "eager")
    assert kernels.resolve_backend(None, "cpu") == "eager"
    kernels.set_default_backend("compile")
    assert kernels.resolve_backend(None, "cpu") == "compile"       # default beats env
    assert kernels.resolve_backend("eager", "cpu") == "eager"      # argument beats default
    kernels.set_default_backend("auto")
    assert kernels.resolve_backend(None, "cpu") == "eager"         # back to the env
    monkeypatch.setenv("VAEBENCH_BACKEND", "auto")
    assert kernels.resolve_backend(None, "cpu") == "compile"


def test_auto_picks_triton_on_cuda_devices():
    expected = "triton" if kernels._triton_installed() else "compile"
    assert kernels.resolve_backend("auto", "cuda") == expected
    assert kernels.resolve_backend("auto", torch.device("cuda", 0)) == expected


def test_unknown_backend_names_it_and_the_choices(monkeypatch, inputs):
    mu, logvar = inputs((2, 3))
    with pytest.raises(ValueError, match=r"unknown backend 'cuda'.*auto, eager, compile, triton"):
        kernels.reparameterize(mu, logvar, backend="cuda")
    with pytest.raises(ValueError, match="unknown backend 'fast'"):
        kernels.set_default_backend("fast")
    monkeypatch.setenv("VAEBENCH_BACKEND", "gpu")
    with pytest.raises(ValueError, match=r"\$VAEBENCH_BACKEND 'gpu'.*valid choices"):
        kernels.gaussian_kl(mu, logvar)


def test_triton_on_cpu_without_interpreter_is_a_clear_error(monkeypatch, inputs):
    mu, logvar = inputs((2, 3), device="cpu")
    monkeypatch.setattr(kernels, "_triton_interpreter", lambda: False)
    for op in (lambda: kernels.reparameterize(mu, logvar, backend="triton"),
               lambda: kernels.gaussian_kl(mu, logvar, backend="triton"),
               lambda: kernels.reparameterize_kl(mu, logvar, backend="triton")):
        with pytest.raises(ValueError, match="backend 'triton' needs a CUDA tensor, got device 'cpu'"):
            op()
    assert "triton" not in kernels.available_backends("cpu")


@pytest.mark.parametrize("call,error,message", [
    (lambda m, lv: kernels.reparameterize(m, lv[:, :2]), ValueError, "same shape"),
    (lambda m, lv: kernels.gaussian_kl(m.long(), lv.long()), TypeError, "mu must be a floating"),
    (lambda m, lv: kernels.gaussian_kl(m, lv.int()), TypeError, "logvar must be a floating"),
    (lambda m, lv: kernels.gaussian_kl(m, lv.double()), TypeError, "same dtype"),
    (lambda m, lv: kernels.reparameterize(m, lv, 0), ValueError, "n_samples must be an integer >= 1, got 0"),
    (lambda m, lv: kernels.reparameterize(m, lv, -2), ValueError, "n_samples .* got -2"),
    (lambda m, lv: kernels.reparameterize_kl(m, lv, 2.0), ValueError, "n_samples .* got 2.0"),
    (lambda m, lv: kernels.reparameterize_kl(m, lv, True), ValueError, "n_samples .* got True"),
    (lambda m, lv: kernels.reparameterize(m, lv, 1, seed=0.5), TypeError, "seed must be an integer"),
    (lambda m, lv: kernels.reparameterize(m[0, 0], lv[0, 0]), ValueError, "at least one dimension"),
    (lambda m, lv: kernels.gaussian_kl(m.cpu().numpy(), lv), TypeError,
     "mu and logvar must be torch.Tensor"),
    (lambda m, lv: kernels.gaussian_kl(m.to(torch.complex64), lv.to(torch.complex64)), TypeError,
     "mu must be a floating"),
])
def test_bad_inputs_raise_clear_errors(call, error, message, inputs):
    mu, logvar = inputs((3, 4))
    with pytest.raises(error, match=message):
        call(mu, logvar)


def test_seed_accepts_any_python_int(inputs):
    mu, logvar = inputs((3, 4))
    big = kernels.reparameterize(mu, logvar, seed=2**70 + 5, backend="eager")
    folded = kernels.reparameterize(mu, logvar, seed=(2**70 + 5) % 2**63, backend="eager")
    assert torch.equal(big, folded)
    assert torch.isfinite(kernels.reparameterize(mu, logvar, seed=-3, backend="eager")).all()


def test_import_is_cheap():
    """Importing kernels compiles nothing and does not import the Triton kernels."""
    code = ("import sys, kernels; import kernels.compiled; "
            "assert 'kernels.triton_latent' not in sys.modules, 'triton kernels imported'; "
            "assert not kernels.compiled._compiled, 'compiled at import'")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TRITON_INTERPRET", None)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env, timeout=120)

"""vaebench.nets.linear: the oneDNN route of Linear layers against float64 references."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from vaebench.config import ConfigError, parse_params
from vaebench.nets import linear as lin

needs_onednn = pytest.mark.skipif(not lin.onednn_available(), reason="torch without oneDNN")


@pytest.fixture
def onednn(monkeypatch):
    """The oneDNN route for every layer size (the size threshold set to zero)."""
    monkeypatch.setattr(lin, "ONEDNN_MIN_MACS", 0)
    previous = lin.current_gemm()
    lin.set_gemm("onednn")
    yield
    lin.set_gemm(previous)


def _layer(n_in: int, n_out: int, seed: int = 0) -> lin.Linear:
    torch.manual_seed(seed)
    return lin.Linear(n_in, n_out)


def _float64_grads(layer: lin.Linear, x: torch.Tensor, g: torch.Tensor):
    """Reference y, dL/dx, dL/dW, dL/db for L = <g, y>, in float64 with autograd."""
    w = layer.weight.detach().double().requires_grad_()
    b = layer.bias.detach().double().requires_grad_()
    x64 = x.detach().double().requires_grad_()
    y = x64 @ w.t() + b
    y.backward(g.double())
    return y.detach(), x64.grad, w.grad, b.grad


@needs_onednn
@pytest.mark.parametrize("shape", [(128, 784), (5, 3, 37), (1, 9), (257, 64)])
def test_forward_and_backward_match_float64(onednn, shape):
    layer = _layer(shape[-1], 23)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=gen).requires_grad_()
    y = layer(x)
    g = torch.randn(y.shape, generator=gen)
    y.backward(g)
    y64, gx, gw, gb = _float64_grads(layer, x, g)
    # float32 GEMMs with K <= 784 terms: relative error far below 1e-5 of the output scale
    for got, ref in [(y.detach(), y64), (x.grad, gx), (layer.weight.grad, gw), (layer.bias.grad, gb)]:
        assert got.dtype == torch.float32 and got.shape == ref.shape
        assert (got.double() - ref).abs().max() <= 1e-5 * ref.abs().max() + 1e-6


@needs_onednn
def test_strided_input_and_no_grad_path(onednn):
    layer = _layer(40, 7)
    base = torch.randn(6, 80)
    x = base[:, ::2]  # non-contiguous
    assert not x.is_contiguous()
    with torch.no_grad():
        y = layer(x)
    ref = x.double() @ layer.weight.double().t() + layer.bias.double()
    assert (y.double() - ref).abs().max() < 1e-5
    assert not y.requires_grad


@needs_onednn
def test_in_place_weight_updates_are_seen(onednn):
    """An optimizer updates weights in place; the op must not reuse a stale copy."""
    layer = _layer(50, 20)
    x = torch.randn(16, 50)
    with torch.no_grad():
        y1 = layer(x)
        layer.weight.mul_(2.0)
        layer.bias.mul_(2.0)
        y2 = layer(x)
    assert torch.allclose(y2, 2 * y1, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_repeatable_bit_for_bit(onednn):
    layer = _layer(300, 200)
    x = torch.randn(128, 300)
    outs = [layer(x).detach() for _ in range(5)]
    assert all(torch.equal(outs[0], o) for o in outs)


@needs_onednn
def test_input_grad_only_when_needed_and_bias_free(onednn):
    layer = lin.Linear(30, 10, bias=False)
    x = torch.randn(8, 30)  # no grad wanted for x
    layer(x).sum().backward()
    ref = x.double().sum(0).expand(10, 30)
    assert layer.bias is None
    assert (layer.weight.grad.double() - ref).abs().max() < 1e-5


def test_float64_and_small_layers_use_aten(monkeypatch):
    """float64 (gradcheck) and layers under the size threshold take F.linear, exactly."""
    previous = lin.current_gemm()
    calls = {"n": 0}
    real = lin._x_wt

    def counting(*args):
        calls["n"] += 1
        return real(*args)

    monkeypatch.setattr(lin, "_x_wt", counting)
    try:
        lin.set_gemm("auto")
        layer = _layer(20, 10).double()
        x = torch.randn(4, 20, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda t: layer(t), (x,))
        small = _layer(20, 10)
        xs = torch.randn(4, 20)
        assert torch.equal(small(xs), nn.functional.linear(xs, small.weight, small.bias))
        assert calls["n"] == 0
    finally:
        lin.set_gemm(previous)


def test_state_dict_is_nn_linear():
    a = _layer(12, 5)
    b = nn.Linear(12, 5)
    b.load_state_dict(a.state_dict())
    assert set(a.state_dict()) == {"weight", "bias"}
    x = torch.randn(3, 12)
    assert torch.allclose(a(x), b(x), atol=1e-6)


def test_bad_gemm_names_are_one_line():
    with pytest.raises(ValueError, match=r"unknown gemm 'mkl'; valid choices: auto, aten, onednn"):
        lin.set_gemm("mkl")
    raw = {"study": {"seeds": [0], "models": ["vae"], "datasets": ["digits"], "gemm": "blas"},
           "data": {"digits": {}}, "train": {"vae": {}}}
    with pytest.raises(ConfigError, match=r"study.gemm: unknown gemm 'blas'; valid choices: "
                                          r"auto, aten, onednn \(got 'blas'\)"):
        parse_params(raw)


@pytest.mark.parametrize("vendor,mkl,onednn,expected", [
    ("GenuineIntel", True, True, "aten"),     # MKL's own AVX-512 kernels
    ("AuthenticAMD", True, True, "onednn"),   # MKL's generic AVX2 path: oneDNN instead
    ("GenuineIntel", False, True, "onednn"),  # another BLAS: oneDNN
    ("", True, True, "onednn"),               # no x86 vendor (another architecture)
    ("AuthenticAMD", True, False, "aten"),    # no oneDNN in this build
])
def test_auto_resolves_by_build_and_vendor(monkeypatch, vendor, mkl, onednn, expected):
    """'auto' is a function of the torch build and the CPU vendor alone, never of a timing."""
    import vaebench.machine

    monkeypatch.setattr(vaebench.machine, "cpu_vendor", lambda: vendor)
    monkeypatch.setattr(torch.backends.mkl, "is_available", lambda: mkl)
    monkeypatch.setattr(lin, "onednn_available", lambda: onednn)
    assert lin.resolve_gemm("auto") == expected
    assert lin.resolve_gemm("aten") == "aten"


def test_cpu_vendor_reads_this_machine():
    from vaebench.machine import cpu_vendor

    text = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    assert (cpu_vendor() in text) and (cpu_vendor() != "" or "vendor_id" not in text)


def test_onednn_without_onednn_is_a_config_error(monkeypatch):
    """On a torch build without oneDNN, 'onednn' fails at validation, before any work;
    'auto' falls back to aten."""
    monkeypatch.setattr(lin, "onednn_available", lambda: False)
    raw = {"study": {"seeds": [0], "models": ["vae"], "datasets": ["digits"], "gemm": "onednn"},
           "data": {"digits": {}}, "train": {"vae": {}}}
    with pytest.raises(ConfigError, match=r"study.gemm: gemm 'onednn' is not available in this "
                                          r"torch build .*valid choices here: auto, aten"):
        parse_params(raw)
    assert lin.resolve_gemm("auto") == "aten"


@needs_onednn
@pytest.mark.parametrize("gemm", ["aten", "onednn"])
@pytest.mark.parametrize("rows,n_in,n_out,dtype", [
    (128, 784, 400, torch.float32),   # over the threshold
    (128, 20, 400, torch.float32),    # under it
    (128, 784, 400, torch.float64),   # gradcheck's dtype
    (0, 784, 400, torch.float32),     # empty
])
def test_uses_onednn_is_the_route_linear_takes(monkeypatch, gemm, rows, n_in, n_out, dtype):
    """``uses_onednn`` answers exactly where ``linear`` calls oneDNN (the one test that
    ``vaebench.fused_step`` relies on to run its backward GEMMs where the forward ran)."""
    calls = {"n": 0}
    real = lin._x_wt

    def counting(*args):
        calls["n"] += 1
        return real(*args)

    previous = lin.current_gemm()
    monkeypatch.setattr(lin, "_x_wt", counting)
    try:
        lin.set_gemm(gemm)
        w = torch.randn(n_out, n_in, dtype=dtype)
        x = torch.randn(rows, n_in, dtype=dtype)
        lin.linear(x, w)
        expected = (gemm == "onednn" and dtype == torch.float32 and rows > 0
                    and rows * n_in * n_out >= lin.ONEDNN_MIN_MACS)
        assert lin.uses_onednn(x, w) is expected
        assert calls["n"] == int(expected)
    finally:
        lin.set_gemm(previous)

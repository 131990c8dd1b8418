"""Fully connected layers whose CPU float32 GEMMs can run in oneDNN instead of the BLAS.

``Linear`` is ``torch.nn.Linear`` (same parameters, same state_dict) with one switch, the GEMM
library, set process-wide with ``set_gemm``:

- ``aten``: ``torch.nn.functional.linear``, i.e. the BLAS torch was built with (MKL on x86);
- ``onednn``: forward and both backward GEMMs through oneDNN's matmul
  (``torch.ops.mkldnn._linear_pointwise``), float32 in and out, float32 accumulation;
- ``auto``: ``aten`` on an Intel CPU when torch's BLAS is MKL; otherwise ``onednn`` where
  this torch has it, else ``aten``. The choice depends only on the torch build and the CPU
  vendor, never on a timing, so a given installation on a given machine always makes the
  same one (``resolve_gemm``).

Why: MKL's SGEMM dispatches on the CPU vendor. On Intel processors it runs its own AVX-512
kernels; on others it falls back to generic AVX2 code. oneDNN dispatches on the instruction set
alone. How much that matters varies from host to host, so ``make bench-train`` times the step's
GEMMs in both libraries on the machine at hand
(``reports/benchmarks/train_throughput-<vendor>.md``, CPU named). On an AMD EPYC (AVX-512, 2
cores; ``train_throughput-amd.md``, 2026-12-05) oneDNN took 458-481 us for the five large GEMMs
of the 784-400-20 VAE's step against MKL's 441-589 us, faster on four of the five; on an Intel
Xeon (AVX-512, 2 cores; ``train_throughput-intel.md``, 2026-12-03) MKL was the faster on the
three 128 x 784 x 400 GEMMs it timed, 407-544 us against 614-722 us. Both are float32 GEMMs;
they differ only in summation order (relative error ~1e-7 either way, checked against float64
in ``tests/test_linear.py``).

Anything other than float32 on the CPU (float64 for gradcheck, CUDA, bfloat16), and layers
smaller than ``ONEDNN_MIN_MACS`` multiply-adds per call, go through ``aten`` whatever the
switch says.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

GEMMS = ("auto", "aten", "onednn")
# Layers with fewer multiply-adds per call (rows x in x out) stay in aten under "onednn":
# there oneDNN's per-call overhead outweighs its kernels. `make bench-train` times every GEMM
# of the 784-400-20 VAE's step in both libraries, those under this size included, and keeps
# the table (reports/benchmarks/train_throughput-<vendor>.md, CPU named). A function of the
# shapes alone, so the choice is repeatable.
ONEDNN_MIN_MACS = 1 << 22
_gemm = "aten"


def onednn_available() -> bool:
    """Whether this torch build exposes oneDNN's dense linear op on the CPU."""
    return bool(torch.backends.mkldnn.is_available()
                and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


def mkl_runs_its_own_kernels() -> bool:
    """Whether aten's float32 GEMMs go to MKL on an Intel CPU, where MKL picks its AVX-512
    kernels (on other vendors' CPUs it runs generic AVX2 code)."""
    from vaebench.machine import cpu_vendor

    return torch.backends.mkl.is_available() and cpu_vendor() == "GenuineIntel"


def resolve_gemm(name: str) -> str:
    """``auto`` -> ``aten`` where MKL runs its own kernels (an Intel CPU), else ``onednn`` if
    available, else ``aten``; an unknown name is a ValueError."""
    if name not in GEMMS:
        raise ValueError(f"unknown gemm {name!r}; valid choices: {', '.join(GEMMS)}")
    if name == "auto":
        if mkl_runs_its_own_kernels():
            return "aten"
        return "onednn" if onednn_available() else "aten"
    if name == "onednn" and not onednn_available():
        raise ValueError("gemm 'onednn' is not available in this torch build "
                         "(torch.backends.mkldnn); valid choices here: auto, aten")
    return name


def set_gemm(name: str) -> str:
    """Set the process-wide GEMM library for ``Linear`` layers; returns the resolved name."""
    global _gemm
    _gemm = resolve_gemm(name)
    return _gemm


def current_gemm() -> str:
    return _gemm


def _x_wt(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """x @ w.T (+ b) in oneDNN for 2-D float32 CPU tensors (strided views allowed)."""
    return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    """y = x W^T + b on (N, in) inputs, with the three GEMMs of backprop in oneDNN:
    dL/dx = g W, dL/dW = g^T x, dL/db = sum_n g."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _x_wt(x, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor):
        x, weight = ctx.saved_tensors
        g = g.contiguous()
        gx = _x_wt(g, weight.t()) if ctx.needs_input_grad[0] else None
        gw = _x_wt(g.t(), x.t()) if ctx.needs_input_grad[1] else None
        gb = g.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb


def uses_onednn(x: Tensor, weight: Tensor) -> bool:
    """Whether ``linear(x, weight)`` runs its GEMMs in oneDNN: under ``set_gemm("onednn")``,
    for float32 CPU tensors of at least ``ONEDNN_MIN_MACS`` multiply-adds. The one test of
    it, so that a backward pass written out elsewhere (``vaebench.fused_step``) runs its GEMMs
    in the library the forward ran in."""
    return (_gemm == "onednn" and x.device.type == "cpu" and x.dtype == torch.float32
            and weight.dtype == torch.float32 and x.numel() > 0 and x.dim() >= 1
            and x.numel() * weight.shape[0] >= ONEDNN_MIN_MACS)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(x, weight, bias)`` with the GEMMs in the library chosen by ``set_gemm``."""
    if not uses_onednn(x, weight):
        return F.linear(x, weight, bias)
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])
    if not x2.is_contiguous():
        x2 = x2.contiguous()
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        y = _OneDNNLinear.apply(x2, weight, bias)
    else:
        y = _x_wt(x2, weight, bias)
    return y.view(*lead, weight.shape[0])


class Linear(nn.Linear):
    """``nn.Linear`` whose GEMMs follow ``set_gemm`` (parameters and state_dict unchanged)."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)

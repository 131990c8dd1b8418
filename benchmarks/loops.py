"""The floors vaebench's training loop is measured against, and where its time goes.

- ``MinimalLoop``, ``run_minimal``: the framework's own floor, a minimal eager step loop on the same
  784-400-20 VAE: batches gathered by index from a training set binarized once in memory,
  ``torch.randn`` noise, fused Adam, nothing else (no validation, no checkpoint, no stats).
  With ``compiled``, model and loss run under ``torch.compile``: whether compiling the whole
  step pays for the study's net, measured rather than assumed. One epoch at a time, it can
  run between two of the trainer's epochs: a comparison paired epoch by epoch.
- ``run_vaebench_compiled``: vaebench's own training step (its model, its exact dynamic
  binarization, its Philox eps, fused Adam) with model and objective under ``torch.compile``
  and eps drawn outside the graph (``vaebench_elbo``): would compiling the trainer's step pay?
- ``gemm_floor_epoch``: the step's GEMMs alone (forward, input and weight gradients of every
  Linear layer, as backprop runs them), an epoch's worth, in a given GEMM library.
- ``profile_breakdown``: torch.profiler over whole epochs of a loop, self CPU time grouped by
  kind of op; what no op accounts for (Python, numpy) is the remainder of the wall time.
- ``fashion_mnist_study``: the data and study parameters the benchmarks share, this VAE on
  Fashion-MNIST.
- ``paired_ratio``, ``interval_verdict``: a ratio of times measured repeat by repeat, with
  its interval, and what that interval says of a target.
- the probes of the machine's state (``gemm_probe_us``, ``copy_bandwidth_gbs``,
  ``adam_step_us``) are in ``benchmarks.probes``.
- ``per_cpu``: the name of a benchmark's report on this CPU's vendor, so that the tables of
  both vendors the targets name (AMD and Intel) stay committed side by side.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

BATCH = 128
SIZES = (784, 400, 20)  # data, hidden, latent
VENDOR_TAGS = {"GenuineIntel": "intel", "AuthenticAMD": "amd"}


def paired_ratio(values: list[float], base: list[float], level: float = 0.95
                 ) -> dict[str, float]:
    """``values[i] / base[i]`` for each repeat i (the two timed in the same repeat, so that a
    shared machine's slow drift in speed falls on both): their geometric mean, with its
    Student-t interval on the log scale."""
    from vaebench.stats import t_interval

    logs = [math.log(a / b) for a, b in zip(values, base, strict=True)]
    mean, _, half, n = t_interval(logs, level)
    return {"ratio": math.exp(mean), "low": math.exp(mean - half),
            "high": math.exp(mean + half), "n": n}


def latent_bytes(n: int, d: int, n_samples: int, mode: str, elem_bytes: int = 4) -> int:
    """Minimal DRAM traffic of ``reparameterize_kl`` on (N, D) inputs, M = N * D, b bytes per
    element: forward reads mu and logvar and writes z and kl, 2 M b + S M b + 4 N; backward
    reads grad_z, grad_kl, mu and logvar and writes grad_mu and grad_logvar,
    S M b + 4 N + 4 M b; ``mode`` is ``fwd`` or ``fwd+bwd`` (the sum)."""
    m = n * d
    forward = 2 * m * elem_bytes + n_samples * m * elem_bytes + 4 * n
    backward = n_samples * m * elem_bytes + 4 * n + 4 * m * elem_bytes
    return forward if mode == "fwd" else forward + backward


def interval_verdict(iv: dict[str, float], target: float, at_least: bool = False) -> str:
    """'met' when the whole interval lies on the target's side (at most the target, or at
    least it with ``at_least``), 'missed' when it lies wholly on the other side, 'undecided'
    when it straddles the target (more repeats, or a quieter machine, would decide)."""
    good, bad = (iv["low"] >= target, iv["high"] < target) if at_least else \
        (iv["high"] <= target, iv["low"] > target)
    return "met" if good else "missed" if bad else "undecided"


def shuffled(names: list[str], seed: int) -> list[str]:
    """``names`` in a fresh order for each repeat (seeded), so that no loop always runs after
    the same one: an order effect becomes noise in the interval instead of a bias."""
    import random

    order = list(names)
    random.Random(seed).shuffle(order)
    return order


def per_cpu(stem: str) -> str:
    """``stem-intel``, ``stem-amd`` (``stem-cpu`` for any other vendor): a report's name."""
    from vaebench.machine import cpu_vendor

    return f"{stem}-{VENDOR_TAGS.get(cpu_vendor(), 'cpu')}"


def fashion_mnist_study(root, epochs: int):
    """Fashion-MNIST (prepared under ``root/data`` if missing) and ``root/params.yaml`` with
    the vae set to this 784-400-20 MLP, batch 128, Adam 1e-3, for ``epochs`` epochs."""
    from vaebench import data
    from vaebench.config import load_params

    data_dir = root / "data" / "fashion-mnist"
    if not (data_dir / "manifest.json").exists():
        data.prepare("fashion-mnist", {}, data_dir)
    params = load_params(root / "params.yaml")
    params = params.model_copy(update={"train": {**params.train, "vae": {
        "arch": "mlp", "hidden": [SIZES[1]], "latent_dim": SIZES[2], "epochs": epochs,
        "batch_size": BATCH, "lr": 1e-3}}})
    return data.load(data_dir), params


class PlainVAE(nn.Module):
    """pytorch/examples' VAE: 784-400-20, the encoder's two heads as two Linear layers."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def forward(self, x, eps=None):
        h = F.relu(self.fc1(x))
        mu, logvar = self.fc21(h), self.fc22(h)
        eps = torch.randn_like(mu) if eps is None else eps
        z = mu + eps * torch.exp(0.5 * logvar)
        logits = self.fc4(F.relu(self.fc3(z)))
        return logits, mu, logvar


def plain_loss(logits, x, mu, logvar):
    """Negative ELBO per point: Bernoulli reconstruction plus the analytic KL."""
    rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)
    return rec + kl


def batch_loss(model: PlainVAE, x: torch.Tensor, eps: torch.Tensor | None = None
               ) -> torch.Tensor:
    """The minibatch's mean negative ELBO; eps drawn by the model (``torch.randn_like``) unless
    given. The compiled minimal loop gives it, drawn outside by torch.randn, so that the
    compiled and the eager step compute one function."""
    logits, mu, logvar = model(x, eps)
    return plain_loss(logits, x, mu, logvar).mean()


class MinimalLoop:
    """The minimal eager step loop (training steps, nothing else), one epoch per ``epoch()``.

    ``dynamic``: a fresh ``torch.bernoulli`` draw of every batch, as a user would binarize
    dynamically, instead of one binarization before any timing. ``compiled``: model and loss
    (forward and, through AOTAutograd, backward) under ``torch.compile``, eps drawn by
    ``torch.randn`` outside; the first epoch then includes the compilation, or its load from
    inductor's cache."""

    def __init__(self, x_train: np.ndarray, levels: int, seed: int, dynamic: bool = False,
                 compiled: bool = False):
        torch.manual_seed(seed)
        self.model = PlainVAE()
        self.step_loss = torch.compile(batch_loss) if compiled else batch_loss
        self.compiled, self.dynamic = compiled, dynamic
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3, fused=True)
        grey = torch.from_numpy(np.ascontiguousarray(x_train)).float() / (levels - 1)
        self.x = grey if dynamic else torch.bernoulli(grey)  # binarized once, in memory

    def epoch(self) -> float:
        """Train one epoch; its seconds."""
        t0 = time.perf_counter()
        n = len(self.x)
        perm = torch.randperm(n)
        for b in range(n // BATCH):
            self.step(self.x.index_select(0, perm[b * BATCH:(b + 1) * BATCH]))
        return time.perf_counter() - t0

    def step(self, xb: torch.Tensor) -> None:
        """One training step on the batch ``xb`` of ``self.x``'s rows."""
        if self.dynamic:
            xb = torch.bernoulli(xb)
        loss = self.step_loss(self.model, xb,
                              torch.randn(len(xb), SIZES[2]) if self.compiled else None)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


def run_minimal(x_train: np.ndarray, levels: int, epochs: int, seed: int, dynamic: bool = False,
                compiled: bool = False) -> tuple[list[float], PlainVAE]:
    """Seconds per epoch of ``epochs`` epochs of the ``MinimalLoop``, and its model."""
    loop = MinimalLoop(x_train, levels, seed, dynamic, compiled)
    return [loop.epoch() for _ in range(epochs)], loop.model


def vaebench_elbo(model, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The per-point ELBO that vaebench's VAE maximizes (``GaussianLatentModel.objective``: one
    sample, analytic KL), with eps given instead of drawn: z = mu + exp(logvar / 2) eps
    (Kingma & Welling 2014, eq. 10). Given eps = ``reference.standard_normal(seed, (1, N, D))[0]``
    it is the trainer's objective to the bit in eager mode (``tests/test_bench_loops.py``);
    the draw (numba's Philox) stays outside a compiled graph, the rest goes in."""
    from kernels import reference
    from vaebench.objectives import elbo

    mu, logvar = model.encode(x)
    z = reference.reparameterize_with_eps(mu, logvar, eps)
    return elbo(model.log_px(x, z), reference.gaussian_kl(mu, logvar))


def run_vaebench_compiled(spec, bundle, epochs: int, seed: int, compiled: bool = True,
                          by_hand: bool = False) -> tuple[list[float], nn.Module]:
    """Seconds per epoch of vaebench's training steps, as ``vaebench.train.train`` runs them
    for ``spec`` (its model and Adam, batches by index from a seeded permutation, the exact
    dynamic binarization and the eps of the trainer's seed streams, the finiteness check of
    each loss) with ``vaebench_elbo`` under ``torch.compile`` (``compiled``) and aten's
    GEMMs (oneDNN's custom autograd function does not trace). No validation, checkpoint or
    stats: compare it with vaebench's training steps alone. Its first epoch compiles, or loads
    inductor's cache. ``by_hand`` (eager only): the loss and gradients of
    ``vaebench.fused_step.elbo_step`` instead of autograd's, from the same eps."""
    import kernels
    from kernels import reference
    from vaebench.fused_step import elbo_step_unchecked as elbo_step  # as the trainer steps
    from vaebench.inputs import (
        TRAIN_EPS_STREAM,
        TRAIN_INPUT_STREAM,
        model_inputs,
        seeded_generator,
    )
    from vaebench.models import build_model
    from vaebench.nets.linear import set_gemm
    from vaebench.train import data_info

    if compiled and by_hand:
        raise ValueError("by_hand is the eager step written out; it has no compiled form")
    cfg = spec.train
    torch.manual_seed(seed)
    set_gemm("aten")
    model = build_model(spec.model, cfg, data_info(bundle), backend="eager")
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, eps=cfg.adam_eps,
                           betas=tuple(cfg.adam_betas), fused=True)

    def loss_of(x, eps):
        return -vaebench_elbo(model, x, eps).mean()

    step_loss = torch.compile(loss_of) if compiled else loss_of
    x_train = torch.from_numpy(np.ascontiguousarray(bundle.x_train))
    n, bs = len(x_train), cfg.batch_size
    gen, step, seconds = seeded_generator(seed), 0, []
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen)
        for b in range(n // bs):
            xb = model_inputs(x_train.index_select(0, perm[b * bs:(b + 1) * bs]), bundle.kind,
                              bundle.levels, model.likelihood,
                              kernels.step_seed(seed, step, TRAIN_INPUT_STREAM), check=False)
            eps_seed = kernels.step_seed(seed, step, TRAIN_EPS_STREAM)
            opt.zero_grad(set_to_none=True)
            if by_hand:  # draws the same eps from its seed, and sets every .grad
                loss = -elbo_step(model, xb, None, eps_seed)[0].mean()
            else:
                loss = step_loss(xb, reference.standard_normal(eps_seed, (1, bs, cfg.latent_dim))[0])
            if not math.isfinite(loss.item()):
                raise RuntimeError(f"loss is {loss.item()} at step {step}")
            if not by_hand:
                loss.backward()
            opt.step()
            step += 1
        seconds.append(time.perf_counter() - t0)
    model.eval()
    return seconds, model


def step_gemms() -> list[tuple[str, int, int, int]]:
    """The GEMMs of one training step, (name, M, K, N) for an (M x K) @ (K x N) product.

    Forward x W^T for each layer; backward dY W (input gradient; not for the first layer,
    whose input is data) and dY^T X (weight gradient). The encoder's two heads are one
    400 x 40 product in vaebench's MLP (``vaebench/nets/mlp.py``)."""
    d, h, k = SIZES
    b = BATCH
    layers = [("enc 784-400", b, d, h, False), ("enc 400-40", b, h, 2 * k, True),
              ("dec 20-400", b, k, h, True), ("dec 400-784", b, h, d, True)]
    out = []
    for name, m, fan_in, fan_out, input_grad in layers:
        out.append((f"{name} forward", m, fan_in, fan_out))
        if input_grad:
            out.append((f"{name} input grad", m, fan_out, fan_in))
        out.append((f"{name} weight grad", fan_out, m, fan_in))
    return out


def gemm_calls(lib: str, min_macs: int | None = None) -> list[Callable[[], torch.Tensor]]:
    """One call per GEMM of ``step_gemms``, on seeded random operands: in oneDNN where ``lib``
    is "onednn" and the GEMM has at least ``min_macs`` multiply-adds (default
    ``ONEDNN_MIN_MACS``, as vaebench's Linear decides; 0: every GEMM), else in aten."""
    from vaebench.nets.linear import ONEDNN_MIN_MACS, _x_wt

    min_macs = ONEDNN_MIN_MACS if min_macs is None else min_macs
    g = torch.Generator().manual_seed(0)
    calls = []
    for _, m, k, n in step_gemms():
        a = torch.randn(m, k, generator=g)
        wt = torch.randn(n, k, generator=g)  # (N, K): a @ wt.T, as F.linear stores weights
        if lib == "onednn" and m * k * n >= min_macs:
            calls.append(lambda a=a, wt=wt: _x_wt(a, wt))
        else:
            calls.append(lambda a=a, wt=wt: a @ wt.t())
    return calls


def gemm_floor_epoch(lib: str, steps: int) -> float:
    """Seconds for ``steps`` steps' GEMMs in ``lib`` ("aten": the BLAS behind nn.Linear;
    "onednn": oneDNN where vaebench's Linear would use it, aten below ``ONEDNN_MIN_MACS``)."""
    calls = gemm_calls(lib)
    for c in calls:  # warm-up
        c()
    t0 = time.perf_counter()
    for _ in range(steps):
        for c in calls:
            c()
    return time.perf_counter() - t0


def gemm_flops_per_step() -> int:
    return sum(2 * m * k * n for _, m, k, n in step_gemms())


CATEGORIES = {
    "GEMMs": ("aten::mm", "aten::addmm", "aten::bmm", "mkldnn::_linear_pointwise",
              "aten::_addmm_activation"),
    "optimizer (fused Adam)": ("aten::_fused_adam_", "aten::_fused_adamw_"),
}


def profile_breakdown(run: Callable[[], None]) -> dict[str, float]:
    """Seconds of ``run()`` by kind of work: GEMMs, the optimizer, every other torch op
    (elementwise, reductions, copies, indexing), and the rest of the wall time (Python,
    numpy, autograd bookkeeping), from torch.profiler's self CPU times."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        run()
        wall = time.perf_counter() - t0
    out = dict.fromkeys([*CATEGORIES, "other torch ops"], 0.0)
    for ev in prof.key_averages():
        if ev.key.startswith(("## Call", "Torch-Compiled", "autograd::engine")):
            continue
        secs = ev.self_cpu_time_total / 1e6
        kind = next((c for c, names in CATEGORIES.items() if ev.key in names), "other torch ops")
        out[kind] += secs
    out["Python, numpy and the rest"] = max(wall - sum(out.values()), 0.0)
    out["wall"] = wall
    return out

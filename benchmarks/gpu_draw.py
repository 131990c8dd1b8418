"""The noise draw alone on a CUDA GPU: where the Triton latent kernels' time goes.

The fused kernels (``kernels/triton_latent.py``) draw eps at flat position i as
``tl.randn(seed, i)``: one whole Philox-4x32-10 call (10 rounds, 4 words) and one Box-Muller
pair per normal, keeping 2 words and 1 normal; the backward draws it again. A stream of four
normals per Philox call (``tl.randn4x``: both outputs of two Box-Muller pairs) does a quarter
of the Philox work per normal. This script times, on one GPU, in one run:

- ``fill``: ``Tensor.fill_`` of the same float32 tensor, the write-only floor of any draw;
- ``copy``: ``Tensor.copy_`` of it (read + write), the bandwidth the CUDA target is set against;
- ``randn``: a kernel writing ``tl.randn(seed, i)`` and nothing else, the kernels' stream;
- ``randn4x``: a kernel writing ``tl.randn4x`` (four normals per counter), the other stream;
- ``torch.randn``: PyTorch's own generator filling the tensor;
- the triton backend's whole ``reparameterize_kl``, forward and forward + backward, at the
  benchmark's largest case (65536 x 256, S = 50), against its minimal bytes;
- ``z alone``: z = mu + exp(logvar / 2) eps fused with each stream's draw (the forward without
  its KL): how far would a randn4x stream lift the op itself?

Times are medians of CUDA-event timings (``triton.testing.do_bench``), not wall-clock rounds,
so launch overhead does not enter. Before timing, the ``randn`` kernel's output is checked
against ``kernels.reference.standard_normal`` (to float32 rounding), ``randn4x``'s moments
against N(0, 1), and each fused z against mu + sigma eps of its own draw, so a broken kernel
reports nothing. Run on a CUDA machine (``make gpu-check`` runs
it): ``python benchmarks/gpu_draw.py``; writes ``reports/kernels/gpu_draw_cuda.md`` and, with
``--out DIR``, a copy there.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import shutil
import sys
from pathlib import Path

import torch
import triton
import triton.language as tl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import kernels  # noqa: E402
from benchmarks.loops import latent_bytes  # noqa: E402
from kernels import reference  # noqa: E402
from vaebench.io import atomic_write_text  # noqa: E402

N, D, S = 65536, 256, 50  # the benchmark's largest case (kernels/bench/test_bench_latent.py)
BLOCK = 1024
SEED = 1


@triton.jit(do_not_specialize=["seed"])
def _randn_kernel(out_ptr, n, seed, BLOCK: tl.constexpr):
    """out[i] = tl.randn(seed, i): one Philox call per normal (the kernels' stream)."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    tl.store(out_ptr + offs, tl.randn(seed, offs), mask=offs < n)


@triton.jit(do_not_specialize=["seed"])
def _randn4x_kernel(out_ptr, n, seed, BLOCK: tl.constexpr):
    """Four normals per Philox call: counter c of this program's BLOCK counters gives
    out[base + k * BLOCK + c] for k = 0..3 (contiguous stores, one per output)."""
    pid = tl.program_id(0).to(tl.int64)
    lane = tl.arange(0, BLOCK).to(tl.int64)
    e0, e1, e2, e3 = tl.randn4x(seed, pid * BLOCK + lane)
    base = pid * 4 * BLOCK + lane
    tl.store(out_ptr + base, e0, mask=base < n)
    tl.store(out_ptr + base + BLOCK, e1, mask=base + BLOCK < n)
    tl.store(out_ptr + base + 2 * BLOCK, e2, mask=base + 2 * BLOCK < n)
    tl.store(out_ptr + base + 3 * BLOCK, e3, mask=base + 3 * BLOCK < n)


@triton.jit
def _z_store(mu_ptr, lv_ptr, z_ptr, pos, m, total, eps):
    """z[pos] = mu[pos % m] + exp(lv[pos % m] / 2) * eps where pos < total (K&W 2014, eq. 10)."""
    mask = pos < total
    j = pos % m
    mu = tl.load(mu_ptr + j, mask=mask, other=0.0)
    lv = tl.load(lv_ptr + j, mask=mask, other=0.0)
    tl.store(z_ptr + pos, mu + tl.exp(0.5 * lv) * eps, mask=mask)


@triton.jit(do_not_specialize=["seed"])
def _z_randn_kernel(mu_ptr, lv_ptr, z_ptr, m, total, seed, BLOCK: tl.constexpr):
    """z = mu + sigma eps over S samples, eps[i] = tl.randn(seed, i): the fused forward's
    reads, writes and draw, without its KL (2 M of the S M + 2 M floats it moves)."""
    pos = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    _z_store(mu_ptr, lv_ptr, z_ptr, pos, m, total, tl.randn(seed, pos))


@triton.jit(do_not_specialize=["seed"])
def _z_randn4x_kernel(mu_ptr, lv_ptr, z_ptr, m, total, seed, BLOCK: tl.constexpr):
    """The same z with four normals per Philox counter, laid out as ``_randn4x_kernel``'s."""
    pid = tl.program_id(0).to(tl.int64)
    lane = tl.arange(0, BLOCK).to(tl.int64)
    e0, e1, e2, e3 = tl.randn4x(seed, pid * BLOCK + lane)
    base = pid * 4 * BLOCK + lane
    _z_store(mu_ptr, lv_ptr, z_ptr, base, m, total, e0)
    _z_store(mu_ptr, lv_ptr, z_ptr, base + BLOCK, m, total, e1)
    _z_store(mu_ptr, lv_ptr, z_ptr, base + 2 * BLOCK, m, total, e2)
    _z_store(mu_ptr, lv_ptr, z_ptr, base + 3 * BLOCK, m, total, e3)


def z_randn(mu: torch.Tensor, lv: torch.Tensor, z: torch.Tensor, seed: int) -> None:
    """z (S, *mu.shape) from the kernels' stream, one Philox call per normal."""
    total = z.numel()
    _z_randn_kernel[(triton.cdiv(total, BLOCK),)](mu, lv, z, mu.numel(), total,
                                                   reference.fold_seed(seed), BLOCK=BLOCK)


def z_randn4x(mu: torch.Tensor, lv: torch.Tensor, z: torch.Tensor, seed: int) -> None:
    """z (S, *mu.shape) with four normals per Philox call."""
    total = z.numel()
    _z_randn4x_kernel[(triton.cdiv(total, 4 * BLOCK),)](mu, lv, z, mu.numel(), total,
                                                         reference.fold_seed(seed), BLOCK=BLOCK)


def draw_randn(out: torch.Tensor, seed: int) -> None:
    n = out.numel()
    _randn_kernel[(triton.cdiv(n, BLOCK),)](out, n, reference.fold_seed(seed), BLOCK=BLOCK)


def draw_randn4x(out: torch.Tensor, seed: int) -> None:
    n = out.numel()
    _randn4x_kernel[(triton.cdiv(n, 4 * BLOCK),)](out, n, reference.fold_seed(seed),
                                                   BLOCK=BLOCK)


def check(device: torch.device, n: int = (1 << 20) + 3) -> dict:
    """The randn kernel draws the reference stream (to float32 rounding of log and cos);
    randn4x's mean and variance lie within 6 standard errors of N(0, 1)'s. ``n`` is not a
    multiple of 4 * BLOCK, so a ragged tail exercises the masks."""
    got = torch.empty(n, device=device)
    draw_randn(got, SEED)
    want = reference.standard_normal(SEED, (n,), device)
    try:  # log and cos differ from torch's in the last bits, as in tests/kernels/test_rng.py
        torch.testing.assert_close(got, want, rtol=1e-6, atol=2e-6)
    except AssertionError as err:
        raise SystemExit(f"error: the randn kernel does not draw kernels.reference's stream: {err}") from None
    four = torch.full((n,), float("nan"), device=device)
    draw_randn4x(four, SEED)
    mean, var = four.double().mean().item(), four.double().var().item()
    if not (math.isfinite(mean) and abs(mean) < 6 / math.sqrt(n)
            and abs(var - 1) < 6 * math.sqrt(2 / n)):
        raise SystemExit(f"error: randn4x draws mean {mean:.4g}, variance {var:.4g}")
    # The fused z kernels: each equals mu + exp(lv / 2) eps with its draw kernel's eps.
    m = max(1, n // 3)
    gen = torch.Generator(device=device).manual_seed(4)
    mu = torch.randn(m, device=device, generator=gen)
    lv = torch.randn(m, device=device, generator=gen)
    for name, fused, draw in (("z_randn", z_randn, draw_randn),
                              ("z_randn4x", z_randn4x, draw_randn4x)):
        eps = torch.empty(3, m, device=device)
        draw(eps, SEED)
        z = torch.full((3, m), float("nan"), device=device)
        fused(mu, lv, z, SEED)
        try:
            torch.testing.assert_close(z, reference.reparameterize_with_eps(mu, lv, eps),
                                       rtol=1e-6, atol=1e-6)
        except AssertionError as err:
            raise SystemExit(f"error: {name} is not mu + sigma eps of its draw: {err}") from None
    return {"randn_matches_reference": n, "randn4x_mean": mean, "randn4x_var": var,
            "fused_z_checked": 3 * m}


def _ms(fn) -> float:
    from triton.testing import do_bench
    return do_bench(fn, warmup=25, rep=200, return_mode="median")


def _row(name: str, fn, nbytes: int) -> dict:
    ms = _ms(fn)
    return {"op": name, "ms": ms, "bytes": nbytes, "GB/s": nbytes / ms / 1e6}


def measure_draws(device: torch.device, numel: int) -> list[dict]:
    """fill, copy and the three draws of ``numel`` float32 values."""
    out = torch.empty(numel, device=device)
    src = torch.ones_like(out)
    return [_row("fill", lambda: out.fill_(1.0), 4 * numel),
            _row("copy", lambda: out.copy_(src), 8 * numel),
            _row("randn (tl.randn, kernels' stream)", lambda: draw_randn(out, SEED), 4 * numel),
            _row("randn4x (tl.randn4x)", lambda: draw_randn4x(out, SEED), 4 * numel),
            _row("torch.randn (Tensor.normal_)", lambda: out.normal_(), 4 * numel)]


def measure_op(device: torch.device) -> list[dict]:
    """The triton backend's reparameterize_kl at (N, D, S), forward and forward + backward,
    with the kernel benchmark's minimal bytes (``benchmarks.loops.latent_bytes``)."""
    gen = torch.Generator(device=device).manual_seed(0)
    mu = torch.randn(N, D, device=device, generator=gen)
    lv = 0.5 * torch.randn(N, D, device=device, generator=gen)

    def fwd():
        with torch.no_grad():
            kernels.reparameterize_kl(mu, lv, S, seed=SEED, backend="triton")

    mu_g, lv_g = mu.clone().requires_grad_(), lv.clone().requires_grad_()
    g_z, g_kl = torch.ones(S, N, D, device=device), torch.ones(N, device=device)

    def fwd_bwd():
        z, kl = kernels.reparameterize_kl(mu_g, lv_g, S, seed=SEED, backend="triton")
        torch.autograd.grad((z, kl), (mu_g, lv_g), (g_z, g_kl))

    z = torch.empty(S, N, D, device=device)
    z_bytes = (S + 2) * N * D * 4  # reads mu and logvar, writes z
    return [*(_row(f"triton reparameterize_kl {mode} {N}x{D} S={S}", fn,
                   latent_bytes(N, D, S, mode)) for mode, fn in (("fwd", fwd),
                                                                 ("fwd+bwd", fwd_bwd))),
            _row(f"z alone, randn stream {N}x{D} S={S}", lambda: z_randn(mu, lv, z, SEED),
                 z_bytes),
            _row(f"z alone, randn4x stream {N}x{D} S={S}", lambda: z_randn4x(mu, lv, z, SEED),
                 z_bytes)]


def render(rows: list[dict], meta: dict, checks: dict) -> str:
    by = {r["op"].split(" ")[0]: r for r in rows}
    fill, copy = by["fill"]["GB/s"], by["copy"]["GB/s"]
    lines = ["# The noise draw alone on a CUDA GPU (`benchmarks/gpu_draw.py`)", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items()]
    lines += [f"- checks: the randn kernel equals `kernels.reference.standard_normal` (rtol 1e-6, "
              f"atol 2e-6) "
              f"on {checks['randn_matches_reference']} elements; randn4x mean "
              f"{checks['randn4x_mean']:.2e}, variance {checks['randn4x_var']:.4f}; the fused "
              f"z kernels equal mu + exp(logvar / 2) eps of their draws on "
              f"{checks.get('fused_z_checked', 0)} elements", "",
              f"Medians of CUDA-event timings (`triton.testing.do_bench`). Draws write {S}x{N}x{D} "
              "float32 (bytes = those written); 'of fill' and 'of copy' are GB/s over the "
              "fill's (write-only) and the copy's (read + write) GB/s.", "",
              "| op | ms | GB | GB/s | of fill | of copy |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['op']} | {r['ms']:.3f} | {r['bytes'] / 1e9:.2f} | {r['GB/s']:.0f} "
                     f"| {r['GB/s'] / fill:.1%} | {r['GB/s'] / copy:.1%} |")
    r1, r4 = by["randn"]["ms"], by["randn4x"]["ms"]
    lines += ["", f"randn4x draws {r1 / r4:.2f}x faster than randn; the kernels' "
              f"stream alone reaches {by['randn']['GB/s'] / fill:.0%} of the write-only "
              f"floor, randn4x {by['randn4x']['GB/s'] / fill:.0%}."]
    zs = [r for r in rows if r["op"].startswith("z alone")]
    if len(zs) == 2:
        lines += [f"The fused z = mu + sigma eps alone (the forward without its KL; bytes: mu "
                  f"and logvar read, z written): {zs[0]['GB/s'] / copy:.0%} of copy with the "
                  f"kernels' stream, {zs[1]['GB/s'] / copy:.0%} with four normals per Philox "
                  f"call ({zs[0]['ms'] / zs[1]['ms']:.2f}x faster)."]
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="also copy the table here")
    args = ap.parse_args()
    if args.out is not None and not args.out.is_dir():
        raise SystemExit(f"error: --out {args.out}: not a folder")
    if not torch.cuda.is_available():
        raise SystemExit("error: torch sees no CUDA device; this measurement is for a GPU")
    device = torch.device("cuda")
    checks = check(device)
    rows = measure_draws(device, S * N * D) + measure_op(device)
    meta = {"date": dt.datetime.now().isoformat(timespec="seconds"),
            "device": torch.cuda.get_device_name(device), "torch": torch.__version__,
            "triton": triton.__version__, "command": "python benchmarks/gpu_draw.py"}
    text = render(rows, meta, checks)
    path = ROOT / "reports" / "kernels" / "gpu_draw_cuda.md"
    atomic_write_text(path, text)
    if args.out:
        shutil.copy(path, args.out / path.name)
    print(text)


if __name__ == "__main__":
    main()

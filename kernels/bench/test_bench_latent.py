"""Micro-benchmarks of the fused latent layer: ``reparameterize_kl`` on every backend.

Run from the repository root (the venv active), as one command:

    python -m pytest kernels/bench --benchmark-only

It times the backends side by side on mu, logvar of N x D in {256x32, 4096x64, 65536x128,
65536x256} float32, n_samples in {1, 5, 50}, forward alone and forward + backward, plus a
large ``Tensor.copy_`` for the device's copy bandwidth, and writes the table to
``reports/kernels/latent_bench_cuda.md``, or on the CPU ``latent_bench_cpu-<vendor>.md``, and
``.csv`` (atomically).

Backends: ``torch``, the baseline, is what a user would otherwise write (``torch.randn``
noise, autograd; not the same eps); ``eager`` (the counter-based reference), ``compile``
and, on CUDA, ``triton``. Within a case the backends run interleaved, round by round in
rotating order, so that drift in a shared machine's speed falls on all of them alike; each
gets one warm-up call (torch.compile compiles there), then enough rounds to fill about
``ROUND_BUDGET_S`` seconds (at least ``MIN_ROUNDS``, more for the backends a target
compares); the table gives medians. A target is judged from the speed-up paired round by
round (the two backends timed in the same rotation): its geometric mean with a 95% Student-t
interval on the log scale, met when the whole interval clears the target, missed when it lies
wholly below, undecided otherwise (``benchmarks.loops``, as the training benchmarks).
``VAEBENCH_BENCH_THREADS=k`` sets torch's CPU threads (on a shared machine one thread gives
stable numbers; the table records the count). On the CPU every backend is skipped above
2**27 sample elements (the n_samples=50 cases of the two largest sizes: minutes per case and
gigabytes of temporaries); skipped cases are listed.

Where the time goes: on the CPU, each case from the target sizes up also times the draw of
eps alone, interleaved with the backends (mode ``draw (fwd)`` or ``draw (fwd+bwd)``):
``torch.randn`` for the baseline, and for ``compile`` its own graph of Philox-4x32-10 and
Box-Muller writing eps (the stream every backend draws, ``kernels/compiled.py``). For each
target not met, the report sets the backend's time beside its draw, the baseline's draw and
the memory floor (minimal bytes at copy bandwidth), so a reader sees whether the draw alone
already exceeds the target's time.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import statistics
import time
from pathlib import Path

import pytest
import torch

import kernels
from benchmarks.loops import interval_verdict, latent_bytes, paired_ratio, per_cpu
from kernels import compiled
from vaebench.io import atomic_write_text
from vaebench.machine import cpu_model

ROOT = Path(__file__).resolve().parents[2]
REPORT_DIR = ROOT / "reports" / "kernels"

CUDA = torch.cuda.is_available()
if os.environ.get("VAEBENCH_BENCH_THREADS"):
    torch.set_num_threads(int(os.environ["VAEBENCH_BENCH_THREADS"]))
DEVICE = torch.device("cuda" if CUDA else "cpu")
DTYPE = torch.float32
SIZES = [(256, 32), (4096, 64), (65536, 128), (65536, 256)]
N_SAMPLES = [1, 5, 50]
MODES = ["fwd", "fwd+bwd"]
BACKENDS = ["torch", "eager", "compile"] + (["triton"] if CUDA else [])
DRAW = "draw"  # eps alone, timed within each CPU case from the target sizes up
DRAW_BACKENDS = () if CUDA else ("torch", "compile")
# torch's whole op over a backend's draw alone, against the speed-up a target asks for
DRAW_VERDICTS = {"missed": "rules the target out", "met": "leaves room", "undecided": "undecided"}

# CPU limits on S * N * D per backend (no limits on CUDA).
CPU_MAX_ELEMENTS = {"eager": 1 << 27, "compile": 1 << 27, "torch": 1 << 27}
ROUND_BUDGET_S = 0.5 if CUDA else 1.5
MIN_ROUNDS, MAX_ROUNDS = (5, 200) if CUDA else (3, 50)
# the backends a target compares get enough rounds for a paired interval
COMPARED = {"triton", "eager", "compile"} if CUDA else {"torch", "compile"}
COMPARED_MIN_ROUNDS = 8
COPY_BYTES = (1 << 30) if CUDA else (1 << 28)

# Targets (reported, never asserted). CPU: compile at least as fast as plain PyTorch in every
# case from N*D = 4096*64 up, forward and forward + backward, and at least 2x at 65536*128.
# CUDA: triton fwd+bwd at N*D >= 65536*128 against copy bandwidth, eager and compile.
CPU_TARGET = {"min_elements": 4096 * 64, "over_torch": 1.0,
              "big_shape": (65536, 128), "big_over_torch": 2.0}
CUDA_TARGET = {"min_elements": 65536 * 128, "copy_fraction": 0.85, "over_eager": 3.0,
               "over_compile": 1.3}

BYTES_FORMULA = ("bytes (b = bytes per input element, M = N*D): forward reads mu and logvar "
                 "and writes z and kl: 2*M*b + S*M*b + 4*N; backward reads grad_z, grad_kl, "
                 "mu and logvar and writes grad_mu and grad_logvar: S*M*b + 4*N + 4*M*b; "
                 "fwd+bwd is the sum; copy bandwidth counts read + write of the copied bytes")


def draw_mode(mode: str) -> str:
    """The mode of a draw row timed within a ``mode`` case: ``draw (fwd)``."""
    return f"{DRAW} ({mode})"


def minimal_bytes(n: int, d: int, n_samples: int, mode: str, elem_bytes: int = 4) -> int:
    """Minimal DRAM traffic of ``reparameterize_kl`` (``benchmarks.loops.latent_bytes``, see
    ``BYTES_FORMULA``), or of a draw row, which writes eps alone."""
    if mode.startswith(DRAW):
        return n_samples * n * d * elem_bytes
    return latent_bytes(n, d, n_samples, mode, elem_bytes)


def compile_draw(like, key, n_samples_p2: int, row_stride: int):
    """eps (S, N, D) alone, as the compile backend draws it inside its forward graph
    (``kernels.compiled._eps``; arguments as its forwards take them)."""
    n, d = like.shape
    return compiled._eps((n_samples_p2 - 2, n, d), key, row_stride, like.device, like.dtype)


def _make_draw(backend: str, n: int, d: int, n_samples: int):
    """A no-argument callable drawing the (S, N, D) noise of ``backend`` and nothing else."""
    if backend == "torch":
        return lambda: torch.randn((n_samples, n, d), device=DEVICE, dtype=DTYPE)
    like = torch.empty(n, d, device=DEVICE, dtype=DTYPE)
    key = compiled._key(1, 0, DEVICE)
    fn = compiled._compiled_fn("bench_compile_draw", compile_draw)
    return lambda: fn(like, key, n_samples + 2, n * d)


def _plain_torch(mu, logvar, n_samples):
    """The usual eager VAE code: torch.randn noise, autograd for the gradients."""
    eps = torch.randn((n_samples, *mu.shape), device=mu.device, dtype=mu.dtype)
    z = mu + torch.exp(0.5 * logvar) * eps
    kl = 0.5 * (mu * mu + torch.exp(logvar) - 1.0 - logvar).sum(-1)
    return (z if n_samples > 1 else z[0]), kl


def _make_step(backend: str, n: int, d: int, n_samples: int, mode: str):
    """A no-argument callable running one forward (and backward) on fresh-looking inputs.

    Forward alone runs under ``torch.no_grad`` (inference, as in evaluation), forward +
    backward with inputs that require grad (training)."""
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    mu = torch.randn(n, d, device=DEVICE, dtype=DTYPE, generator=gen)
    logvar = 0.5 * torch.randn(n, d, device=DEVICE, dtype=DTYPE, generator=gen)
    grad = mode == "fwd+bwd"
    mu.requires_grad_(grad)
    logvar.requires_grad_(grad)

    if backend == "torch":
        def op():
            return _plain_torch(mu, logvar, n_samples)
    else:
        def op():
            return kernels.reparameterize_kl(mu, logvar, n_samples, seed=1, backend=backend)

    z_shape = (n_samples, n, d) if n_samples > 1 else (n, d)
    g_z = torch.ones(z_shape, device=DEVICE, dtype=DTYPE) if grad else None
    g_kl = torch.ones(n, device=DEVICE, dtype=torch.float32) if grad else None

    def step():
        with torch.set_grad_enabled(grad):
            z, kl = op()
            if grad:
                torch.autograd.grad((z, kl), (mu, logvar), (g_z, g_kl))
        if CUDA:
            torch.cuda.synchronize()

    return step


def _rounds(step, least: int = MIN_ROUNDS) -> int:
    """Warm up (compiles), time one call, and size the rounds to the time budget (at least
    ``least``)."""
    step()
    t0 = time.perf_counter()
    step()
    once = time.perf_counter() - t0
    return int(min(MAX_ROUNDS, max(least, ROUND_BUDGET_S / max(once, 1e-9))))


def interleaved(steps: dict[str, object]) -> dict[str, list[float]]:
    """Seconds per call of each step, the steps run round by round in rotating order; each
    step runs its own number of rounds (``_rounds``) and drops out when it has them."""
    rounds = {name: _rounds(step, COMPARED_MIN_ROUNDS if name.split(" ")[0] in COMPARED
                            else MIN_ROUNDS)
              for name, step in steps.items()}
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for r in range(max(rounds.values())):
        for name in names[r % len(names):] + names[:r % len(names)]:
            if len(times[name]) < rounds[name]:
                t0 = time.perf_counter()
                steps[name]()
                times[name].append(time.perf_counter() - t0)
    return times


# --------------------------------------------------------------------------------------
# Result collection and the report
# --------------------------------------------------------------------------------------
RESULTS: list[dict] = []
SKIPPED: list[str] = []
COPY: dict[str, float] = {}


def device_name() -> str:
    if CUDA:
        return torch.cuda.get_device_name(DEVICE)
    return f"{cpu_model()} ({os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()})"


def report_stem() -> str:
    """``latent_bench_cuda``, or on the CPU ``latent_bench_cpu-<vendor>`` (``benchmarks.loops.
    per_cpu``): sessions land on either vendor, and a speed-up on one may vanish on the other."""
    return "latent_bench_cuda" if CUDA else per_cpu("latent_bench_cpu")


def triton_version() -> str:
    try:
        import triton
    except ImportError:
        return "not installed"
    return triton.__version__ + ("" if CUDA else " (installed; the triton backend needs CUDA)")


def _lookup(results, backend, n, d, s, mode):
    for r in results:
        if (r["backend"], r["N"], r["D"], r["S"], r["mode"]) == (backend, n, d, s, mode):
            return r
    return None


def speedup(row: dict, base: dict) -> dict[str, float]:
    """``row``'s speed-up over ``base`` (base's time over row's), paired round by round over the
    rounds both ran: geometric mean and 95% interval (``benchmarks.loops.paired_ratio``)."""
    n = min(len(row["times_s"]), len(base["times_s"]))
    return paired_ratio(base["times_s"][:n], row["times_s"][:n])


def _all(verdicts: list[str]) -> str:
    """Several conditions together: missed if one is missed, met if all are met."""
    return "missed" if "missed" in verdicts else "met" if set(verdicts) == {"met"} else "undecided"


def evaluate_targets(results: list[dict], copy_gbs: float, cuda: bool) -> list[dict]:
    """Add speedups, copy fractions and target verdicts to each result row (pure)."""
    rows = []
    for r in results:
        row = dict(r)
        key = (r["N"], r["D"], r["S"], r["mode"])
        base = {b: _lookup(results, b, *key) for b in ("torch", "eager", "compile")}
        row["GB/s"] = r["bytes"] / r["median_s"] / 1e9
        row["copy_fraction"] = row["GB/s"] / copy_gbs if copy_gbs else float("nan")
        for b in base:
            row[f"vs_{b}"] = base[b]["median_s"] / r["median_s"] if base[b] else float("nan")
        row["torch_paired"] = (speedup(r, base["torch"]) if base["torch"] and r["backend"] != "torch"
                               else None)
        row["target"], row["met"] = "", ""
        big = r["N"] * r["D"]
        if not cuda and r["backend"] == "compile" and r["mode"] in MODES \
                and big >= CPU_TARGET["min_elements"]:
            need = (CPU_TARGET["big_over_torch"] if (r["N"], r["D"]) == CPU_TARGET["big_shape"]
                    else CPU_TARGET["over_torch"])
            row["target"], row["need"] = f"compile >= {need:g}x torch", need
            row["met"] = ("n/a (torch skipped)" if not base["torch"] else
                          interval_verdict(row["torch_paired"], need, at_least=True))
        if cuda and r["backend"] == "triton" and r["mode"] == "fwd+bwd" \
                and big >= CUDA_TARGET["min_elements"]:
            t = CUDA_TARGET
            row["target"] = (f">= {t['copy_fraction']:.0%} copy, >= {t['over_eager']:g}x eager, "
                             f">= {t['over_compile']:g}x compile")
            checks = ["met" if row["copy_fraction"] >= t["copy_fraction"] else "missed"]
            for b, need in (("eager", t["over_eager"]), ("compile", t["over_compile"])):
                if base[b]:
                    checks.append(interval_verdict(speedup(r, base[b]), need, at_least=True))
            row["met"] = _all(checks)
        rows.append(row)
    return rows


def time_breakdown(rows: list[dict]) -> list[dict]:
    """For each target row not met whose case has draw rows: the backend's time, the target's
    time (torch's over the speed-up asked), its draw of eps alone and torch.randn's, the
    memory floor, and ``reach``: torch's whole op over the backend's draw alone, paired round
    by round: when even that lies wholly below the speed-up asked, the draw alone rules the
    target out; when it clears it, the draw leaves room (pure)."""
    out = []
    for r in rows:
        if not r["target"] or r["met"] == "met" or r["mode"] not in MODES:
            continue
        key = (r["N"], r["D"], r["S"])
        torch_op = _lookup(rows, "torch", *key, r["mode"])
        draw = _lookup(rows, r["backend"], *key, draw_mode(r["mode"]))
        torch_draw = _lookup(rows, "torch", *key, draw_mode(r["mode"]))
        if not (torch_op and draw and torch_draw):
            continue
        need = r["need"]
        reach = speedup(draw, torch_op)
        out.append({"case": f"{r['backend']} {r['N']}x{r['D']} S={r['S']} {r['mode']}",
                    "need": need, "op_s": r["median_s"], "torch_s": torch_op["median_s"],
                    "target_s": torch_op["median_s"] / need, "draw_s": draw["median_s"],
                    "torch_draw_s": torch_draw["median_s"],
                    "memory_s": r["median_s"] * r["copy_fraction"],  # bytes / copy bandwidth
                    "reach": reach,
                    "draw": DRAW_VERDICTS[interval_verdict(reach, need, at_least=True)]})
    return out


def render_breakdown(items: list[dict]) -> list[str]:
    if not items:
        return []
    head = ["case", "target", "its time ms", "target time ms", "its draw alone ms (share)",
            "torch.randn alone ms (share of torch)", "memory floor ms",
            "torch's op over its draw alone, paired", "the draw alone"]
    lines = ["", "Where the time goes, for each target not met: the backend's median time; the "
             "time the target asks for (torch's median over the speed-up); the backend's draw "
             "of eps alone (the Philox-4x32-10 and Box-Muller stream every backend shares), "
             "timed in the same case, and its share of the backend's time; torch.randn alone "
             "and its share of torch's time; the memory floor (minimal bytes at copy "
             "bandwidth); and torch's whole op over the backend's draw alone, paired round by "
             "round. When that interval lies wholly below the speed-up asked, the draw alone "
             "rules the target out: no fusion of the rest reaches it without a faster "
             "generator of the same stream; when it clears it, the draw leaves room and the "
             "rest of the op is what misses.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def ms(seconds: float) -> str:
        return _fmt(1e3 * seconds, ".1f")

    for b in items:
        lines.append("| " + " | ".join([
            b["case"], f">= {b['need']:g}x torch", ms(b["op_s"]), ms(b["target_s"]),
            f"{ms(b['draw_s'])} ({b['draw_s'] / b['op_s']:.0%})",
            f"{ms(b['torch_draw_s'])} ({b['torch_draw_s'] / b['torch_s']:.0%})",
            ms(b["memory_s"]), _interval(b["reach"]), b["draw"]]) + " |")
    return lines


def _fmt(x: float, spec: str) -> str:
    return "-" if x != x else format(x, spec)  # NaN -> "-"


def _interval(iv: dict | None) -> str:
    if not iv:
        return ""
    return f"{iv['ratio']:.2f} [{_fmt(iv['low'], '.2f')}, {_fmt(iv['high'], '.2f')}]"


def render_markdown(rows: list[dict], meta: dict, skipped: list[str]) -> str:
    lines = [f"# Latent-layer kernels: `reparameterize_kl` micro-benchmark ({meta['kind']})", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items() if k != "kind"]
    lines += ["", "Times are medians over the rounds; within a case the backends ran "
              "interleaved. GB/s = minimal bytes / median time; 'copy' is that over the measured "
              "copy bandwidth; 'x torch', 'x eager' and 'x compile' are the other backend's "
              "median time over this row's (above 1: this row is faster); 'x torch, paired' is "
              "the speed-up over torch round by round, geometric mean [95% t-interval], from "
              "which a target is met (the whole interval clears it), missed (the whole "
              "interval lies below) or undecided. `torch` is the "
              "baseline: plain PyTorch as a user would write it (torch.randn noise, autograd), "
              "which does not draw the same eps. Forward alone runs under torch.no_grad.", ""]
    head = ["backend", "N", "D", "S", "mode", "median ms", "min ms", "rounds", "GB/s", "copy",
            "x torch", "x eager", "x compile", "x torch, paired", "target", "met"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["backend"], str(r["N"]), str(r["D"]), str(r["S"]), r["mode"],
                 _fmt(1e3 * r["median_s"], ".3f"), _fmt(1e3 * r["min_s"], ".3f"),
                 str(r["rounds"]), _fmt(r["GB/s"], ".2f"), _fmt(r["copy_fraction"], ".1%"),
                 _fmt(r["vs_torch"], ".2f"), _fmt(r["vs_eager"], ".2f"),
                 _fmt(r["vs_compile"], ".2f"), _interval(r.get("torch_paired")), r["target"],
                 r["met"]]
        lines.append("| " + " | ".join(cells) + " |")
    verdicts = [r["met"] for r in rows if r["target"]]
    counted = ("met", "missed", "undecided")
    lines += ["", f"Targets met: {verdicts.count('met')} of {len(verdicts)} "
              f"({verdicts.count('missed')} missed, {verdicts.count('undecided')} undecided, "
              f"{sum(v not in counted for v in verdicts)} not measurable)."]
    lines += render_breakdown(time_breakdown(rows))
    if skipped:
        lines += ["", "Skipped cases:", ""] + [f"- {s}" for s in skipped]
    return "\n".join(lines) + "\n"


def render_csv(rows: list[dict], meta: dict) -> str:
    out = io.StringIO()
    fields = ["backend", "N", "D", "S", "mode", "median_s", "min_s", "rounds", "bytes", "GB/s",
              "copy_fraction", "vs_torch", "vs_eager", "vs_compile", "vs_torch_paired",
              "vs_torch_paired_low", "vs_torch_paired_high", "target", "met"]
    for k, v in meta.items():
        out.write(f"# {k}: {v}\n")
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows({**r, **({} if not r.get("torch_paired") else {
        "vs_torch_paired": r["torch_paired"]["ratio"], "vs_torch_paired_low":
        r["torch_paired"]["low"], "vs_torch_paired_high": r["torch_paired"]["high"]})}
        for r in rows)
    return out.getvalue()


@pytest.fixture(scope="session", autouse=True)
def report():
    """Write the table once every case has run."""
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    yield
    if not RESULTS:
        return
    kind = "cuda" if CUDA else "cpu"
    copy_gbs = COPY.get("GB/s", float("nan"))
    meta = {
        "kind": kind,
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "device": device_name(),
        "torch": torch.__version__,
        "triton": triton_version(),
        "dtype": str(DTYPE).replace("torch.", ""),
        "peak copy bandwidth": f"{copy_gbs:.2f} GB/s (Tensor.copy_ of "
                               f"{COPY_BYTES >> 20} MiB, median)",
        "minimal bytes": BYTES_FORMULA,
        "load average (start, end)": f"{load_start:.2f}, "
                                     f"{os.getloadavg()[0] if hasattr(os, 'getloadavg') else 0:.2f}",
        "command": "python -m pytest kernels/bench --benchmark-only",
    }
    rows = evaluate_targets(RESULTS, copy_gbs, CUDA)
    atomic_write_text(REPORT_DIR / f"{report_stem()}.md", render_markdown(rows, meta, SKIPPED))
    atomic_write_text(REPORT_DIR / f"{report_stem()}.csv", render_csv(rows, meta))
    for r in rows:
        if r["target"]:
            print(f"{r['backend']} {r['N']}x{r['D']} S={r['S']} {r['mode']}: "
                  f"x torch {_interval(r['torch_paired'])}, copy {r['copy_fraction']:.1%} "
                  f"-> {r['met']}")


# --------------------------------------------------------------------------------------
# The benchmarks
# --------------------------------------------------------------------------------------
def test_copy_bandwidth(benchmark):
    src = torch.ones(COPY_BYTES // 4, device=DEVICE, dtype=torch.float32)
    dst = torch.empty_like(src)

    def step():
        dst.copy_(src)
        if CUDA:
            torch.cuda.synchronize()

    benchmark.pedantic(step, rounds=_rounds(step) * 2, iterations=1)
    COPY["GB/s"] = 2 * COPY_BYTES / benchmark.stats.stats.median / 1e9


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n_samples", N_SAMPLES)
@pytest.mark.parametrize("n,d", SIZES, ids=[f"{n}x{d}" for n, d in SIZES])
def test_reparameterize_kl(benchmark, n, d, n_samples, mode):
    """Every backend on one case, interleaved; pytest-benchmark times the whole case."""
    elements = n_samples * n * d
    steps = {}
    for backend in BACKENDS:
        if not CUDA and elements > CPU_MAX_ELEMENTS[backend]:
            SKIPPED.append(f"{backend} {n}x{d} S={n_samples} {mode}: {elements} sample "
                           f"elements > CPU limit {CPU_MAX_ELEMENTS[backend]}")
            continue
        steps[backend] = _make_step(backend, n, d, n_samples, mode)
    if not steps:
        pytest.skip("over the CPU size limit for every backend")
    if n * d >= CPU_TARGET["min_elements"]:
        for backend in DRAW_BACKENDS:
            if backend in steps:
                steps[f"{backend} {draw_mode(mode)}"] = _make_draw(backend, n, d, n_samples)
    benchmark.group = f"{n}x{d} S={n_samples} {mode}"
    times = benchmark.pedantic(interleaved, args=(steps,), rounds=1, iterations=1)
    for name, ts in times.items():
        backend, _, row_mode = name.partition(" ")
        RESULTS.append({"backend": backend, "N": n, "D": d, "S": n_samples,
                        "mode": row_mode or mode, "median_s": statistics.median(ts),
                        "min_s": min(ts), "rounds": len(ts), "times_s": ts,
                        "bytes": minimal_bytes(n, d, n_samples, row_mode or mode)})

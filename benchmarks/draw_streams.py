"""Two Philox streams for eps on the CPU, timed in one run: would four normals per call pay?

The latent kernels draw eps at flat position i as ``tl.randn(seed, i)``: one whole
Philox-4x32-10 call per normal, keeping 2 of its 4 words and 1 of the 2 Box-Muller outputs
(``kernels/compiled.py``, ``kernels.reference``). Triton's ``randn4x`` keeps all four words and
both outputs of two Box-Muller pairs: a quarter of the Philox work per normal and half the
logarithms and square roots. Changing the stream changes every eps of every backend and the
study, so before that this script measures what it would buy on the CPU, at the kernel
benchmark's case whose forward target the draw rules out on Intel (65536 x 128, S = 5;
``reports/kernels/latent_bench_cpu-<vendor>.md``):

- ``torch.randn``: plain PyTorch's draw, the baseline of the kernel targets;
- ``randn (compile)``: the compile backend's own draw graph (``kernels.compiled._eps``);
- ``randn4x (compile)``: the same Philox rounds and Box-Muller written for four normals per
  counter, compiled with the same options.

Then the forward they would sit in (z = mu + sigma eps and kl, under ``no_grad``), since a
cheaper draw pays only if the op around it keeps the saving:

- ``fwd torch``: plain PyTorch (``torch.randn`` noise);
- ``fwd compile``: the compile backend as it is (``kernels.reparameterize_kl``);
- ``fwd compile, randn4x fused``: one graph drawing four normals per counter and writing z;
- ``fwd compile, randn4x two passes``: the randn4x draw written to a buffer, then a graph
  reading it for z and kl.

Each group runs interleaved, round by round in rotating order, one torch thread; each ratio is
paired round by round (geometric mean, 95% t-interval). Before timing, the randn4x graph is
checked against a float64 Box-Muller of ``kernels.reference.philox4x32``'s four words. Run:
``python -m benchmarks.draw_streams``; writes ``reports/kernels/draw_streams-<vendor>.md``.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import torch

from benchmarks.loops import paired_ratio, per_cpu
from kernels import compiled, reference
from vaebench.io import atomic_write_text
from vaebench.machine import cpu_model

N, D, S = 65536, 128, 5
ROUNDS = 12
ROOT = Path(__file__).resolve().parents[1]


def four_normals(u: list[torch.Tensor], numel: int) -> torch.Tensor:
    """The first ``numel`` of r cos and r sin of Box-Muller on uniforms (u0, u1), then on
    (u2, u3), counter after counter (in the uniforms' dtype)."""
    out = []
    for radius_u, angle_u in ((u[0], u[1]), (u[2], u[3])):
        r = torch.sqrt(-2.0 * torch.log(torch.clamp_min(radius_u, reference.UNIFORM_FLOOR)))
        angle = reference.TWO_PI * angle_u
        out += [r * torch.cos(angle), r * torch.sin(angle)]
    return torch.stack(out, dim=-1).reshape(-1)[:numel]


def eps4x(numel: int, key: torch.Tensor) -> torch.Tensor:
    """``numel`` normals, four per Philox counter: counter g gives positions 4g .. 4g + 3."""
    counter = torch.arange(-(-numel // 4), dtype=torch.int64) + key[2]
    words = compiled.philox_words(counter & reference.MASK32, counter >> 32, key[0], key[1])
    return four_normals([compiled.uniform_from_word(w) for w in words], numel)


def eps4x_float64(numel: int, seed: int) -> torch.Tensor:
    """The same stream from ``reference.philox4x32``'s words, Box-Muller in float64."""
    k0, k1 = reference.philox_key(seed)
    counter = torch.arange(-(-numel // 4), dtype=torch.int64)
    words = reference.philox4x32(counter & reference.MASK32, counter >> 32, k0, k1)
    return four_normals([reference.uniform_from_bits(w).double() for w in words], numel)


def compiled_eps4x():
    """``eps4x`` compiled as the compile backend compiles its graphs, once per process."""
    return compiled._compiled_fn("bench_eps4x", eps4x)


def draws(seed: int = 1) -> dict[str, object]:
    """Name -> a no-argument callable drawing S x N x D normals."""
    like = torch.empty(N, D)
    key = compiled._key(seed, 0, like.device)
    randn = compiled._compiled_fn("bench_compile_draw", compiled._eps)
    four = compiled_eps4x()
    return {"torch.randn": lambda: torch.randn(S, N, D),
            "randn (compile)": lambda: randn((S, N, D), key, N * D, like.device, like.dtype),
            "randn4x (compile)": lambda: four(S * N * D, key)}


def forward4x_fused(mu, lv, key, n_samples_p2: int):
    """z (S, N, D) from the randn4x stream and kl (N,), in one graph."""
    n, d = mu.shape
    s = n_samples_p2 - 2
    return forward_from_eps(mu, lv, eps4x(s * n * d, key).view(s, n, d))


def forward_from_eps(mu, lv, eps):
    """z and kl from a drawn eps (plain PyTorch's forward, and the second of two passes)."""
    return reference.reparameterize_with_eps(mu, lv, eps), compiled._kl(mu, lv)


def forwards(seed: int = 1) -> dict[str, object]:
    """Name -> a no-argument callable running the forward at (N, D, S) under no_grad."""
    import kernels

    gen = torch.Generator().manual_seed(0)
    mu = torch.randn(N, D, generator=gen)
    lv = 0.5 * torch.randn(N, D, generator=gen)
    key = compiled._key(seed, 0, mu.device)
    fused = compiled._compiled_fn("bench_forward4x_fused", forward4x_fused)
    draw = compiled_eps4x()
    rest = compiled._compiled_fn("bench_forward_from_eps", forward_from_eps)

    def plain():
        return forward_from_eps(mu, lv, torch.randn(S, N, D))

    def no_grad(fn):
        def run():
            with torch.no_grad():
                return fn()
        return run

    with torch.no_grad():  # the fused graph and the two passes compute the same z
        z1, z2 = fused(mu, lv, key, S + 2)[0], rest(mu, lv, draw(S * N * D, key).view(S, N, D))[0]
    if not torch.allclose(z1, z2, rtol=1e-5, atol=1e-5):
        raise SystemExit("error: the fused randn4x forward and its two passes disagree")
    return {"fwd torch": no_grad(plain),
            "fwd compile": no_grad(lambda: kernels.reparameterize_kl(mu, lv, S, seed=seed,
                                                                     backend="compile")),
            "fwd compile, randn4x fused": no_grad(lambda: fused(mu, lv, key, S + 2)),
            "fwd compile, randn4x two passes": no_grad(
                lambda: rest(mu, lv, draw(S * N * D, key).view(S, N, D)))}


def check(seed: int = 1, numel: int = 4099, compile: bool = True) -> float:
    """Largest |randn4x - float64 reference| over ``numel`` draws, of the compiled graph (or,
    with ``compile=False``, of ``eps4x`` run eagerly); stops above 1e-5."""
    key = compiled._key(seed, 0, torch.device("cpu"))
    four = compiled_eps4x() if compile else eps4x
    err = (four(numel, key).double() - eps4x_float64(numel, seed)).abs().max().item()
    if not err < 1e-5:
        raise SystemExit(f"error: the randn4x graph is off the float64 reference by {err:.3g}")
    return err


def interleaved(fns: dict[str, object], rounds: int) -> dict[str, list[float]]:
    names = list(fns)
    for fn in fns.values():  # compile, warm up
        fn()
        fn()
    times = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def table(times: dict[str, list[float]], first: str) -> list[str]:
    """Markdown rows: each entry's median and its paired speed-ups over the first two."""
    names = list(times)
    lines = [f"| {first} | median ms | {names[0]} over this | {names[1]} over this |",
             "|---|---|---|---|"]
    for name, ts in times.items():
        cells = []
        for base in names[:2]:
            iv = paired_ratio(times[base], ts)
            cells.append(f"{iv['ratio']:.2f} [{iv['low']:.2f}, {iv['high']:.2f}]")
        med = sorted(ts)[len(ts) // 2]
        lines.append(f"| {name} | {med * 1e3:.1f} | {cells[0]} | {cells[1]} |")
    return lines


def render(draw_times: dict[str, list[float]], fwd_times: dict[str, list[float]],
           meta: dict[str, str], err: float) -> str:
    lines = ["# Two Philox streams for eps on the CPU (`benchmarks/draw_streams.py`)", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items()]
    lines += [f"- check: randn4x (compile) within {err:.2g} of its float64 reference", "",
              f"{S} x {N} x {D} float32 normals per draw, {ROUNDS} interleaved rounds per "
              "table. 'over this' is the row's paired speed-up: the other row's time over "
              "this row's, round by round, geometric mean [95% t-interval].", ""]
    lines += table(draw_times, "draw")
    lines += ["", "The forward (z and kl, under no_grad) around each draw:", ""]
    lines += table(fwd_times, "forward")
    return "\n".join(lines) + "\n"


def main() -> None:
    torch.set_num_threads(1)
    err = check()
    load = os.getloadavg()[0]
    draw_times = interleaved(draws(), ROUNDS)
    fwd_times = interleaved(forwards(), ROUNDS)
    meta = {"date": dt.datetime.now().isoformat(timespec="seconds"),
            "device": f"{cpu_model()} ({os.cpu_count()} logical CPUs, torch threads 1)",
            "torch": torch.__version__,
            "load average (start, end)": f"{load:.2f}, {os.getloadavg()[0]:.2f}",
            "command": "python -m benchmarks.draw_streams"}
    text = render(draw_times, fwd_times, meta, err)
    atomic_write_text(ROOT / "reports" / "kernels" / f"{per_cpu('draw_streams')}.md", text)
    print(text)


if __name__ == "__main__":
    main()

"""The epoch-paired runs of the training benchmark, pair by pair.

``benchmarks.train_throughput.run_epoch_paired`` runs vaebench's trainer and, after each of its
epochs, an epoch of another loop (the minimal loop, the GEMM floor), so that the two epochs of
a pair see the same speed of the shared machine. These pure functions pool the pairs, each
run's first left out (its warm-up), and give the ratio epoch by epoch with its interval, the
seconds added, and the pairs split by the memory bandwidth measured beside them.
"""

from __future__ import annotations

import numpy as np

from benchmarks.loops import paired_ratio


def epoch_pairs(runs: list[list[float]], beside: list[list[float]]
                ) -> list[tuple[float, float]]:
    """(this loop's epoch, the epoch run beside it), pooled over runs, each run's first epoch
    (its warm-up) left out."""
    return [(a, b) for run, other in zip(runs, beside, strict=True)
            for a, b in list(zip(run, other, strict=True))[1:]]


def epoch_paired(runs: list[list[float]], beside: list[list[float]]) -> dict[str, float]:
    """This loop's epochs over the epochs run beside them (``run_epoch_paired``), epoch by
    epoch (``epoch_pairs``; ``loops.paired_ratio``)."""
    pairs = epoch_pairs(runs, beside)
    return paired_ratio([a for a, _ in pairs], [b for _, b in pairs])


def epoch_added_seconds(runs: list[list[float]], beside: list[list[float]]) -> dict[str, float]:
    """The seconds this loop's epoch adds to the epoch run beside it, pair by pair as in
    ``epoch_paired``: the mean difference with its 95% Student-t interval. Where the machine
    switches between speeds, the ratio moves with the speed and this does less."""
    from vaebench.stats import t_interval

    mean, _, half, n = t_interval([a - b for a, b in epoch_pairs(runs, beside)], 0.95)
    return {"seconds": mean, "low": mean - half, "high": mean + half, "n": n}


def by_bandwidth(runs: list[list[float]], beside: list[list[float]], gbs: list[list[float]],
                 adam_us: list[list[float]] | None = None) -> dict[str, dict[str, float]]:
    """``epoch_paired`` apart for the pairs measured at high and at low memory bandwidth: those
    whose copy probe (``probes.copy_bandwidth_gbs``, run after each pair) read at or above the
    median of all the pairs' probes, and those below it. Each: the ratio with its interval,
    the pairs' median GB/s, the median epoch of each side and, where given, the median Adam
    probe (``probes.adam_step_us``, run beside the copy probe)."""
    pairs = epoch_pairs(runs, beside)
    probes = [g for run in gbs for g in run[1:]]  # as epoch_pairs: each run's first left out
    if len(probes) != len(pairs):
        raise ValueError(f"{len(probes)} bandwidth probes for {len(pairs)} epoch pairs")
    adam = [a for run in adam_us for a in run[1:]] if adam_us else None
    cut = float(np.median(probes))
    out = {}
    for half, keep in (("high", lambda g: g >= cut), ("low", lambda g: g < cut)):
        chosen = [i for i, g in enumerate(probes) if keep(g)]
        if len(chosen) < 2:
            continue
        mine, floor = [pairs[i][0] for i in chosen], [pairs[i][1] for i in chosen]
        out[half] = {**paired_ratio(mine, floor),
                     "gbs": float(np.median([probes[i] for i in chosen])),
                     "epoch_s": float(np.median(mine)), "floor_s": float(np.median(floor)),
                     "adam_us": (None if adam is None
                                 else float(np.median([adam[i] for i in chosen])))}
    return out


def bandwidth_lines(result: dict, gemm: str) -> list[str]:
    """The stretch's epoch pairs split by the memory bandwidth measured beside them
    (``by_bandwidth``), as report lines; none where that was not measured."""
    split = result.get("over_gemm_floor_by_bandwidth") or {}
    lines = []
    for k, halves in split.items():
        lib = gemm if k == "vaebench paired" else result.get("gemm_other", "aten")
        parts = [f"at {name} bandwidth (median {h['gbs']:.1f} GB/s) {h['ratio']:.2f} "
                 f"[{h['low']:.2f}, {h['high']:.2f}] ({h['n']} pairs; median epoch "
                 f"{h['epoch_s']:.2f} s, median floor {h['floor_s']:.2f} s, so "
                 f"{h['epoch_s'] - h['floor_s']:.2f} s outside the GEMMs"
                 + ("" if h.get("adam_us") is None else
                    f"; Adam probe {h['adam_us']:.0f} µs per step") + ")"
                 for name, h in halves.items()]
        lines.append(f"- vaebench with `{lib}`, its epoch over its GEMM floor's: "
                     + "; ".join(parts) + ".")
    if not lines:
        return []
    return ["The stretch in the shared machine's two states (told apart by a memory-bandwidth "
            "probe, a 64 MiB copy timed after each pair of epochs, `probes.copy_bandwidth_gbs`; "
            "the pairs split at the run's median probe; each ratio as above, epoch by epoch, "
            "with its 95% interval; a description, not a judge):", "", *lines, ""]

"""The page of ``benchmarks.scaling``: reports/benchmarks/scaling.md from scaling.json.

Pure functions of the stored results; ``benchmarks.scaling`` measures and stores them. Two
halves of a queue measurement (``dvc repro`` and the queue) are paired only where they ran on
the same CPU model with the same code and parameters (``pairing``), and a ratio gets a verdict
only from an interval (``verdict``).
"""

from __future__ import annotations

import statistics

from benchmarks.loops import paired_ratio

MODES = ("dvc repro", "queue, 2 workers")
STORES = ("SQLite file", "PostgreSQL", "server on SQLite", "server on PostgreSQL")


def spread(values: list[float]) -> str:
    """median [min, max]"""
    return (f"{statistics.median(values):.2f} [{min(values):.2f}, {max(values):.2f}]"
            if len(values) > 1 else f"{values[0]:.2f}")


def where(r: dict) -> str:
    load = ", ".join(str(x) for x in r["load_average_1_5_15"])
    return f"{r['date']}, {r['cpu']}, {r['cores']} cores, load average {load} (1/5/15 min)"


def pairing(r: dict) -> tuple[bool, str]:
    """Whether the two halves of a queue part may be paired, and a sentence saying how they
    were measured: in one sitting, or in two on the same CPU model and the same code and
    parameters (``half_stamps``); halves on different CPUs or code are never paired."""
    stamps = r.get("half_stamps", {})
    if not all(stamps.get(mode) for mode in MODES):
        return True, ""  # one sitting (or one half only)
    a, b = (stamps[mode] for mode in MODES)
    if a["cpu"] != b["cpu"]:
        return False, f"the halves ran on different CPUs ({a['cpu']}; {b['cpu']})"
    if a.get("code_digest") is None or a.get("code_digest") != b.get("code_digest"):
        return False, ("the halves ran different code or parameters (scratch-copy digests "
                       f"{str(a.get('code_digest'))[:12]}, {str(b.get('code_digest'))[:12]})")
    if (a["date"], a.get("commit")) == (b["date"], b.get("commit")):
        return True, ""
    return True, (f"The halves ran in two sittings, `dvc repro` on {a['date']} (commit "
                  f"{str(a.get('commit'))[:7]}, load average {a['load_average_1_5_15'][0]}) and "
                  f"the queue on {b['date']} (commit {str(b.get('commit'))[:7]}, load average "
                  f"{b['load_average_1_5_15'][0]}), on the same CPU model with the same code "
                  f"and parameters (`scratch_code_digest` {a['code_digest'][:12]}); their GEMM "
                  "probes tell whether the machine ran at the same speed.")


def verdict(pairs: list[tuple[float, float]], probes: dict) -> str:
    """What the paired ratios dvc repro / queue allow one to say: from two repeats up, their
    geometric mean with its 95% interval and a verdict (the queue is faster when the whole
    interval lies above 1, slower when below); from one repeat, no verdict, and how far the
    halves' GEMM probes (the machine's speed as each started) lie apart. One sentence, its
    full stop left to the caller."""
    if len(pairs) >= 2:
        iv = paired_ratio([a for a, _ in pairs], [b for _, b in pairs])
        said = ("the queue is faster" if iv["low"] > 1 else "the queue is slower"
                if iv["high"] < 1 else "undecided")
        return (f" Paired over {iv['n']} repeats: {iv['ratio']:.2f} [{iv['low']:.2f}, "
                f"{iv['high']:.2f}] (geometric mean, 95% interval): {said}")
    first = [v[0] for v in (probes.get(mode) for mode in MODES) if v]
    drift = ("" if len(first) < 2 else f"; the halves' GEMM probes lie "
             f"{abs(first[0] / first[1] - 1):.0%} apart ({first[0]:.0f} and {first[1]:.0f} us)")
    return f" One repeat per half: a single ratio without an interval, so no verdict is drawn{drift}"


def queue_section(r: dict) -> list[str]:
    """A queue part of scaling.json as markdown; a part cut short (a half without its pair)
    shows what was measured and says the pair is missing."""
    probes = r.get("gemm_probe_us", {})
    seconds = {mode: r["seconds"].get(mode, []) for mode in MODES}
    rows = [f"| {k} | " + (f"{r['median_seconds'][k]:.1f}" if v else "not measured")
            + " | " + ", ".join(f"{t:.1f}" for t in v)
            + (" | " + ", ".join(f"{p:.0f}" for p in probes.get(k, [])) if probes else "")
            + " |" for k, v in seconds.items()]
    pairable, how = pairing(r)
    pairs = list(zip(*seconds.values(), strict=False)) if pairable else []  # both halves
    if r.get("reduced"):
        what = (f"`{r['params']}` cut to the vae on digits (2 epochs) and the beta sweep at beta "
                "1.0 (`benchmarks.scaling.reduced_study`), stages "
                f"`{' '.join(r['targets'])}` and what they need (not the report): a miniature, "
                "not the default study")
        title = "## The study on DVC's queue: a miniature"
    else:
        what = (f"`{r['params']}` at its full epochs, sizes and seeds"
                + (f", the grid cut to {', '.join(r['datasets'])} and no linear cells "
                   "(`benchmarks.scaling.study_slice`)" if r.get("datasets") else "")
                + f": stages `{' '.join(r['targets'])}` and what they need, "
                f"{r.get('stages', '?')} train and evaluate stages")
        title = ("## The study on DVC's queue: full-length stages" if r.get("datasets") else
                 "## The whole default study on DVC's queue")
    return [title, "", where(r) + ".", "",
            what + ". From a cold start in a fresh copy each time: one `dvc repro` (torch's "
            "default threads), against one experiment per seed "
            f"({', '.join(str(s) for s in r['seeds'])}) queued with `dvc exp run --queue "
            "-S study.seeds=[k]` and run by `vaebench queue -j 2` (1 torch thread per "
            f"worker); {max(len(v) for v in seconds.values())} repeat(s), interleaved; tracking off.", "",
            "| how | median wall time (s) | each repeat (s) |"
            + (" GEMM probe as the half started (us) |" if probes else ""),
            "|---|---|---|" + ("---|" if probes else ""), *rows, "",
            *([] if not probes else [
                "GEMM probe: the median time of one 128 x 784 x 400 GEMM just before each half "
                "(`benchmarks.probes.gemm_probe_us`); two halves compare only where their probes "
                "agree, the machine being a shared VM whose speed drifts.", ""]),
            *([how, ""] if pairable and how else []),
            ("Ratio dvc repro / queue, repeat by repeat: "
             f"{', '.join(f'{a / b:.2f}' for a, b in pairs)}.{verdict(pairs, probes)}" if pairs else
             f"**No ratio: {how}**" if not pairable else
             "**No ratio: the pair is incomplete** (a half is missing: measure it with "
             "`--half repro` or `--half queue`)")
            + ". On 2 cores the queue can at most halve the wall time, and it pays for its own "
            "costs: each experiment prepares its data, validates and reports on its own, and "
            "the workers' setup (celery, a git copy per experiment) costs seconds"
            + (f"; {len(r['seeds'])} experiments on 2 workers leave one core idle while the "
               "last runs alone on one thread" if len(r["seeds"]) % 2 else "") + ".", ""]


def render(results: dict) -> str:
    """scaling.md from the parts of scaling.json measured so far."""
    lines = ["# Scaling out: DVC's queue, Ray, MLflow on PostgreSQL", "",
             "Made by `python -m benchmarks.scaling queue|ray|tracking` "
             "(benchmarks/scaling.py); the numbers are in scaling.json. The machine is shared "
             "with other jobs: the load average is written beside each part.", ""]
    for part in ("queue_whole", "queue_slice", "queue"):
        if part in results:
            lines += queue_section(results[part])
    if "ray" in results:
        r = results["ray"]
        ms = r["median_ms"]
        lines += ["## Ray's overhead per task", "", where(r) + f"; Ray {r['ray']}, a local "
                  f"instance with 2 CPUs; medians of {r['tasks']} tasks, one at a time.", "",
                  "| what | median (ms) |", "|---|---|",
                  f"| a no-op task's round trip (submit, run, get) | {ms['noop_round_trip']:.1f} |",
                  f"| a no-op task, in a batch of {r['tasks']} (per task) | "
                  f"{ms['noop_per_task_in_a_batch']:.1f} |",
                  f"| the sweep's task running `true`, through Ray | "
                  f"{ms['sweep_task_via_ray']:.1f} |",
                  f"| the same, called directly | {ms['sweep_task_direct']:.1f} |",
                  f"| **Ray's overhead per sweep task** | **{ms['sweep_task_overhead']:.1f}** |",
                  f"| for scale: starting Python and importing torch, the least any stage "
                  f"costs | {ms['python_import_torch']:.0f} |",
                  "", f"Ray adds {ms['sweep_task_overhead']:.0f} ms to a task whose stage "
                  f"alone costs at least {ms['python_import_torch']:.0f} ms "
                  f"({100 * ms['sweep_task_overhead'] / ms['python_import_torch']:.1f}%); a "
                  "train or evaluate stage runs for seconds to minutes on top.", ""]
    if "tracking" in results:
        r = results["tracking"]
        med = r["median_ms_per_metric"]
        per = r["ms_per_metric"]

        def paired(store: str, mode: str) -> str:  # against the SQLite file, round by round
            return spread([a / b for a, b in zip(per[store][mode], per["SQLite file"][mode],
                                                  strict=True)])

        rows = [f"| {k} | {v['1 per call']:.1f} | {v['8 per call']:.1f} | "
                f"{paired(k, '1 per call')} | {paired(k, '8 per call')} |"
                for k, v in sorted(med.items(), key=lambda kv: STORES.index(kv[0]))]
        lines += ["## MLflow: time per logged metric", "", where(r) + f"; MLflow {r['mlflow']}"
                  f", PostgreSQL on loopback; {r['calls']} `log_metrics` calls per measurement "
                  f"through `vaebench.tracking.MLflowTracker`, {r['repeats']} repeats, "
                  "interleaved; medians.", "",
                  "| store | ms per metric, 1 per call | ms per metric, 8 per call (an epoch's "
                  "row) | relative to the SQLite file, 1 per call | relative, 8 per call |",
                  "|---|---|---|---|---|", *rows, "",
                  "Relative: the store's time over the SQLite file's in the same round, median "
                  "[min, max] over the rounds. A stage logs one row of ~8 metrics per epoch, on a "
                  "background thread (`BackgroundTracker`), off the training loop.", ""]
    return "\n".join(lines)

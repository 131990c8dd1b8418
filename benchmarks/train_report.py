"""The training benchmark's report: ratios with their intervals, verdicts and the table.

Pure functions of the result that ``benchmarks.train_throughput`` measures and stores as
``reports/benchmarks/train_throughput-<vendor>.json``: ``ratios`` pairs every loop with the
minimal loop, its GEMM floor and (compiled loops) its eager loop, repeat by repeat; ``warm_up``
and ``stage_cost`` say what compiling costs before it pays, in a run and in a train stage;
``render`` writes the markdown. ``--rerender`` recomputes them from a stored result.
"""

from __future__ import annotations

import numpy as np

from benchmarks.epoch_pairs import (
    bandwidth_lines,
    by_bandwidth,
    epoch_added_seconds,
    epoch_paired,
)
from benchmarks.loops import CATEGORIES, interval_verdict, paired_ratio, step_gemms
from vaebench.nets.linear import ONEDNN_MIN_MACS


def steady(runs: list[list[float]]) -> float:
    """Median epoch time over all runs, leaving out each run's first epoch (warm-up)."""
    return float(np.median([s for run in runs for s in (run[1:] or run)]))


def paired(runs: list[list[float]], base: list[list[float]]) -> dict[str, float]:
    """This loop's steady epoch over ``base``'s, repeat by repeat (``loops.paired_ratio``)."""
    return paired_ratio([steady([a]) for a in runs], [steady([b]) for b in base])


LABELS = {
    "vaebench paired": ("vaebench, whole epoch (`study.gemm: auto`, here `{gemm}`), each "
                        "followed by an epoch of the minimal loop (paired epoch by epoch: a "
                        "judge of the 1.1x target)"),
    "minimal paired": "the minimal loop's epochs run beside those",
    "vaebench paired other": ("vaebench, whole epoch, `study.gemm: {other}`, each followed by an "
                              "epoch of the minimal loop (paired epoch by epoch: a judge of the "
                              "1.1x target)"),
    "minimal paired other": "the minimal loop's epochs run beside those",
    "gemm floor paired": ("the GEMM floor's epochs run beside the first of those (its "
                          "library, `{gemm}`)"),
    "gemm floor paired other": ("the GEMM floor's epochs run beside the second of those (its "
                                "library, `{other}`)"),
    "vaebench": "vaebench, whole epoch (`study.gemm: auto`, here `{gemm}`)",
    "vaebench steps": "vaebench, training steps only (`{gemm}`)",
    "vaebench other": "vaebench, whole epoch, `study.gemm: {other}`",
    "vaebench other steps": "vaebench, training steps only, `study.gemm: {other}`",
    "minimal": "minimal eager loop (pre-binarized batches, torch.randn, fused Adam; aten)",
    "minimal dynamic": "the minimal loop binarizing each batch afresh with torch.bernoulli",
    "minimal compiled": ("the minimal loop with model and loss under torch.compile (its first "
                         "epoch compiles, or loads inductor's cache)"),
    "vaebench loop eager": ("vaebench's training step in a bare loop (its model, exact "
                            "binarization and Philox eps, fused Adam; aten), eager, on "
                            "autograd"),
    "vaebench loop compiled": ("the same loop with model and objective under torch.compile "
                               "(eps drawn outside the graph; its first epoch compiles, or "
                               "loads inductor's cache)"),
    "vaebench loop by hand": ("the same loop with the backward pass written out "
                              "(`vaebench.fused_step`, no autograd), as the trainer steps for "
                              "this VAE"),
    "gemm floor onednn": ("GEMM floor: the step's GEMMs alone in oneDNN (vaebench's Linear, "
                          "`study.gemm: onednn`)"),
    "gemm floor aten": "GEMM floor: the step's GEMMs alone in aten (nn.Linear's BLAS)",
    "dataloader": "pytorch/examples + DataLoader (a PIL image per item, as torchvision's)",
}
TARGETS = {"over_minimal": 1.1, "over_gemm_floor": 1.8}
# The epoch-paired runs (``run_epoch_paired``) and the minimal epochs beside them: the 1.1x
# target's judges, vaebench with the GEMM library ``auto`` picks and with the other one (one
# of the two is aten, the minimal loop's own, so that pair isolates vaebench's overhead).
EPOCH_PAIRS = {"vaebench paired": "minimal paired",
               "vaebench paired other": "minimal paired other"}
# The same runs and the GEMM-floor epochs beside them, in the run's own library: the judges
# of the 1.8x stretch, epoch by epoch.
FLOOR_PAIRS = {"vaebench paired": "gemm floor paired",
               "vaebench paired other": "gemm floor paired other"}


def floor_of(result: dict) -> dict[str, str]:
    """Each loop's GEMM floor: that of its own library (vaebench's as resolved, else aten)."""
    auto, other = result["gemm"]["vaebench"], result["gemm_other"]
    lib_of = {"vaebench": auto, "vaebench steps": auto, "vaebench paired": auto,
              "vaebench other": other, "vaebench other steps": other,
              "vaebench paired other": other}
    lib_of.update({v: lib_of[k] for k, v in FLOOR_PAIRS.items()})
    return {k: f"gemm floor {lib_of.get(k, 'aten')}" for k in result["epoch_seconds"]}


def ratios(result: dict) -> dict[str, dict]:
    """Every loop over the minimal loop and over its GEMM floor, paired repeat by repeat; the
    epoch-paired runs, epoch by epoch."""
    seconds, floors = result["epoch_seconds"], floor_of(result)
    by_epoch = {mine: epoch_paired(seconds[mine], seconds[beside])
                for mine, beside in EPOCH_PAIRS.items() if mine in seconds}
    floor_by_epoch = {mine: epoch_paired(seconds[mine], seconds[beside])
                      for mine, beside in FLOOR_PAIRS.items() if beside in seconds}
    return {"over_minimal": {k: by_epoch.get(k) or paired(v, seconds["minimal"])
                             for k, v in seconds.items()},
            "over_gemm_floor": {k: floor_by_epoch.get(k) or paired(v, seconds[floors[k]])
                                for k, v in seconds.items()},
            "over_gemm_floor_by_bandwidth": {
                mine: by_bandwidth(seconds[mine], seconds[beside],
                                   result["copy_gbs_paired"][mine],
                                   result.get("adam_us_paired", {}).get(mine))
                for mine, beside in FLOOR_PAIRS.items()
                if beside in seconds and mine in result.get("copy_gbs_paired", {})},
            "compiled_over_eager": {c: paired(seconds[c], seconds[e])
                                    for c, e in COMPILED_PAIRS.items() if c in seconds},
            "by_hand_over_autograd": {h: paired(seconds[h], seconds[e])
                                      for h, e in BY_HAND_PAIRS.items() if h in seconds},
            "epoch_added_seconds": {mine: epoch_added_seconds(seconds[mine], seconds[beside])
                                    for mine, beside in EPOCH_PAIRS.items() if mine in seconds}}


# Each compiled loop and the eager loop it is judged against (compile pays: the whole interval
# below 1, warm-up left out); ``warm_up`` says what its first epochs cost on top.
COMPILED_PAIRS = {"minimal compiled": "minimal", "vaebench loop compiled": "vaebench loop eager"}
# The step with its backward pass written out, and the autograd step it is judged against.
BY_HAND_PAIRS = {"vaebench loop by hand": "vaebench loop eager"}


def stage_cost(result: dict) -> dict | None:
    """A train stage's view of compiling vaebench's step. New processes train one epoch, eager
    and compiled (``fresh_process_seconds``): the first epoch a stage pays, imports, dynamo's
    tracing and inductor's cache load included. A stage of the study's E epochs for this cell
    then takes that plus E - 1 steady epochs of the same repeat's loop; the ratio of the two
    stage times, paired repeat by repeat, with its interval, says whether compiling pays
    there. ``epochs_to_pay`` describes the medians: the epochs after which the seconds
    compiling adds to the first epoch are saved back (None where nothing is saved)."""
    fresh = result.get("fresh_process_one_epoch_seconds")
    seconds = result["epoch_seconds"]
    if not fresh or "vaebench loop compiled" not in seconds:
        return None
    epochs = result["study_epochs"]["vae-fashion-mnist"]
    comp = [steady([r]) for r in seconds["vaebench loop compiled"]]
    eager = [steady([r]) for r in seconds["vaebench loop eager"]]
    n = min(len(fresh["eager"]), len(comp))
    stage_c = [fresh["compiled"][i] + (epochs - 1) * comp[i] for i in range(n)]
    stage_e = [fresh["eager"][i] + (epochs - 1) * eager[i] for i in range(n)]
    extra = float(np.median([c - e for c, e in zip(fresh["compiled"], fresh["eager"],
                                                   strict=True)]))
    saved = warm_up(seconds["vaebench loop compiled"],
                    seconds["vaebench loop eager"])["saved_per_epoch_s"]
    ratio = paired_ratio(stage_c, stage_e)
    return {"eager_s": float(np.median(fresh["eager"])),
            "compiled_s": float(np.median(fresh["compiled"])), "extra_s": extra,
            "saved_per_epoch_s": saved,
            "epochs_to_pay": (1.0 if extra <= 0 else 1.0 + extra / saved if saved > 0
                              else None),
            "study_epochs": epochs, "stage_ratio": ratio,
            "verdict": COMPILE_VERDICT[interval_verdict(ratio, 1.0)]}


def warm_up(compiled: list[list[float]], eager: list[list[float]]) -> dict[str, float]:
    """What compiling costs a run and when it has paid: the first epoch's extra seconds over
    the eager loop's first epoch, in the first run of the process (inductor's cache as found)
    and as the median over the later runs (a warm cache: the graphs load, nothing compiles),
    and the steady seconds saved per epoch (median over repeats; negative: compile is slower).
    ``epochs_to_pay``: the warm extra over the saving, the epochs a run must last for
    compiling to pay (None where nothing is saved)."""
    extra = [c[0] - e[0] for c, e in zip(compiled, eager, strict=True)]
    saved = float(np.median([steady([e]) - steady([c])
                             for c, e in zip(compiled, eager, strict=True)]))
    warm = float(np.median(extra[1:] or extra))
    return {"first_run_extra_s": extra[0], "warm_extra_s": warm, "saved_per_epoch_s": saved,
            "epochs_to_pay": warm / saved if saved > 0 else None}


COMPILE_VERDICT = {"met": "compile pays", "missed": "compile does not pay",
                   "undecided": "undecided"}
BY_HAND_VERDICT = {"met": "faster", "missed": "slower"}


def _ratio_cell(iv: dict[str, float], target: float | None, words: dict | None = None) -> str:
    text = f"{iv['ratio']:.2f} [{iv['low']:.2f}, {iv['high']:.2f}]"
    if target is None:
        return text
    verdict = interval_verdict(iv, target)
    return f"{text} ({(words or {}).get(verdict, verdict)})"


def render(result: dict, gemm: str, seed: int) -> str:
    med, seconds = result["steady_epoch_seconds"], result["epoch_seconds"]
    rows = []
    for k in (k for k in LABELS if k in med):  # the table's order, whatever the file's
        label = LABELS[k].format(gemm=gemm, other=result.get("gemm_other", "aten"))
        # the 1.8x stretch is judged epoch by epoch where the floor ran beside, else run by run
        judged = k in ([j for j, f in FLOOR_PAIRS.items() if f in med]
                       or ["vaebench", "vaebench other"])
        # the 1.1x target is judged epoch by epoch where that was measured, else run by run
        judges = [j for j in EPOCH_PAIRS if j in med] or ["vaebench", "vaebench other"]
        over_min = (_ratio_cell(result["over_minimal"][k], 1.0, COMPILE_VERDICT)
                    if k == "minimal compiled" else  # pays when the whole interval is below 1
                    _ratio_cell(result["over_minimal"][k],
                                TARGETS["over_minimal"] if k in judges else None))
        added = result.get("epoch_added_seconds", {}).get(k)
        if added is not None:  # what the pair's ratio rests on, in seconds
            over_min += (f"; adds {added['seconds']:+.3f} s [{added['low']:+.3f}, "
                         f"{added['high']:+.3f}] per epoch")
        if k == "vaebench loop compiled":  # judged against its own eager loop, not the minimal
            over_min += ("; over its eager loop " + _ratio_cell(
                result["compiled_over_eager"][k], 1.0, COMPILE_VERDICT))
        if k in result.get("by_hand_over_autograd", {}):
            over_min += ("; over its autograd loop " + _ratio_cell(
                result["by_hand_over_autograd"][k], 1.0, BY_HAND_VERDICT))
        over_floor = _ratio_cell(result["over_gemm_floor"][k], TARGETS["over_gemm_floor"]
                                 if judged or k in BY_HAND_PAIRS else None)
        runs = "; ".join(", ".join(f"{t:.2f}" for t in run) for run in seconds[k])
        elbo = result["test_elbo"].get(k)
        rows.append(f"| {label} | {med[k]:.2f} | {over_min} | {over_floor} | {runs} | "
                    f"{'' if elbo is None else f'{elbo:.2f}'} |")
    # earlier results timed the three 128 x 784 x 400 GEMMs alone
    gemm_us = result.get("gemm_microseconds") or result["gemm_microseconds_128x784x400"]
    # in the step's order (the stored json sorts its keys), the other names after
    order = {f"{name} ({m} x {k} x {n})": i for i, (name, m, k, n) in enumerate(step_gemms())}
    gemm_rows = [f"| {name} | " + " | ".join(f"{gemm_us[lib][name]:.0f}" for lib in gemm_us)
                 + " |" for name in sorted(gemm_us["aten"], key=lambda n: order.get(n, 99))]
    bd = {loop: result["breakdown_seconds"][loop] for loop in ("vaebench", "minimal")}
    kinds = [*CATEGORIES, "other torch ops", "Python, numpy and the rest"]
    bd_rows = [f"| {kind} | " + " | ".join(
        f"{bd[loop][kind]:.2f} ({bd[loop][kind] / bd[loop]['wall']:.0%})" for loop in bd) + " |"
        for kind in kinds]
    gf = result["gemm_floor_gflops"]
    warm_lines = []
    for c, e in COMPILED_PAIRS.items():
        if c in seconds and e in seconds:
            w = warm_up(seconds[c], seconds[e])
            pay = ("never pays (nothing saved per epoch)" if w["epochs_to_pay"] is None else
                   "pays from its first epoch" if w["epochs_to_pay"] <= 0 else
                   f"pays after {w['epochs_to_pay']:.1f} epochs")
            warm_lines.append(
                f"- {c} against {e}: first epoch {w['first_run_extra_s']:+.2f} s in the "
                f"process's first run, {w['warm_extra_s']:+.2f} s (median) on a warm cache; "
                f"{w['saved_per_epoch_s']:+.2f} s saved per steady epoch (median); so, on a "
                f"warm cache, it {pay}.")
    stage = stage_cost(result)
    if stage is not None:
        r = stage["stage_ratio"]
        pays = ("never" if stage["epochs_to_pay"] is None else
                f"after {stage['epochs_to_pay']:.1f} epochs")
        warm_lines.append(
            f"- a train stage's view: a new process that loads the data and trains one epoch "
            f"took {stage['eager_s']:.2f} s eager and {stage['compiled_s']:.2f} s compiled "
            f"(medians of {r['n']} each, interleaved, inductor's cache warm), so compiling "
            f"adds {stage['extra_s']:+.2f} s to a stage's first epoch and, at "
            f"{stage['saved_per_epoch_s']:+.2f} s saved per later epoch, pays back {pays}. A "
            f"stage of the study's {stage['study_epochs']} epochs (Fashion-MNIST VAE), "
            f"compiled over eager, paired repeat by repeat: {r['ratio']:.2f} [{r['low']:.2f}, "
            f"{r['high']:.2f}], **{stage['verdict']}**.")
    return "\n".join([
        "# Training throughput: vaebench against its floors and a DataLoader loop",
        "",
        f"{result['date']}, {result['device']}, {result['threads']} threads, torch "
        f"{result['torch']}, kernel backend `{result['backend']}`, load average "
        f"{result['load_average'][0]:.1f} at the start and {result['load_average'][1]:.1f} at "
        "the end (2 cores, shared). Fashion-MNIST "
        f"({result['n_train']} training images, {result['steps_per_epoch']} steps of 128 per "
        f"epoch), 784-400-20 MLP VAE, Adam 1e-3, {result['epochs']} epochs per run, "
        f"{result['repeats']} runs of each loop, interleaved (one run of every loop"
        + (", in a fresh seeded order" if result.get("order") == "shuffled" else "")
        + ", then the next). Targets: vaebench's whole epoch at most "
        f"{TARGETS['over_minimal']}x the minimal loop and at most {TARGETS['over_gemm_floor']}x "
        "the GEMM floor of its library (a stretch).",
        "",
        "| loop | median epoch (s) | x minimal loop | x GEMM floor | seconds per epoch, run by "
        "run | test ELBO (nats) |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "Median epoch: over all runs, leaving out each run's first epoch. 'x minimal loop' and "
        "'x GEMM floor': this loop's epoch over theirs (below 1: faster), paired run by run "
        "(each run's median steady epoch over that of the other loop's run in the same "
        "repeat), as the geometric mean over the "
        f"{result['repeats']} repeats with its 95% Student-t interval on the log scale. A "
        "target is met when the whole interval lies at or below it, missed when the whole "
        "interval lies above, and undecided otherwise. "
        + (f"The epoch-paired rows alone are judged against {TARGETS['over_minimal']}x, "
           "epoch by epoch: in each repeat one run of vaebench's trainer for "
           f"{result.get('paired_epochs')} epochs, each epoch followed (from the trainer's "
           "`on_epoch`, after validation and checkpoint) by one epoch of a minimal loop, so "
           "that the two epochs of a pair see the same speed of the shared machine; the ratio "
           "is the geometric mean over the pairs, each run's first left out ("
           f"{result['over_minimal']['vaebench paired']['n']} pairs), with its 95% Student-t "
           "interval. The minimal loop runs aten's GEMMs; the pair whose vaebench runs aten "
           "too measures vaebench's own overhead, the other adds the choice of GEMM library. "
           if "vaebench paired" in med else "")
        + ("After each minimal epoch of a pair, an epoch of the GEMM floor in the trainer's "
           f"own library runs too: those rows alone are judged against "
           f"{TARGETS['over_gemm_floor']}x the floor, epoch by epoch, the same way. "
           if "gemm floor paired" in med else "")
        + "The GEMM "
        "floor is that of the loop's own GEMM library ("
        + ", ".join(f"{k.removeprefix('gemm floor ')} {v:.0f} GFLOP/s" for k, v in gf.items())
        + "). The compiled minimal loop is judged against the eager one: compile pays when "
        "the whole interval lies below 1 (each run's first epoch, its warm-up, is left out of "
        "the ratio and shown in the run-by-run times). "
        + ("The loop with its backward pass written out is judged against the same loop "
           "with autograd (faster when the whole interval lies below 1) and, as the step the "
           f"trainer could run, against {TARGETS['over_gemm_floor']}x its GEMM floor. "
           if result.get("by_hand_over_autograd") else "")
        + "The whole vaebench epoch includes its validation pass and checkpoint. The test "
        "ELBO is one draw per point on the test set binarized once (seed "
        f"{seed}); the minimal loop trains on one fixed binarization, the others on dynamic "
        "binarization: vaebench's exact sampler (raw random bytes against the grey levels, "
        "`vaebench/data/preprocess.py`), the baselines' torch.bernoulli.",
        "",
        *bandwidth_lines(result, gemm),
        *(["What compiling costs before it pays (the first epoch against the eager loop's "
           "first epoch, run by run; a later run compiles a new function, so dynamo traces "
           "again and inductor's graphs load from its cache; a fresh process, such as a "
           "stage, also imports the compiler):", "", *warm_lines, ""] if warm_lines else []),
        "Where the time goes (torch.profiler self CPU time over one run of "
        f"{result['epochs']} epochs, profiled; the last row is the wall time no torch op "
        "accounts for: Python, numpy's binarization and Philox words, autograd bookkeeping):",
        "",
        "| work | " + " | ".join(bd) + " |",
        "|---|" + "---|" * len(bd),
        *bd_rows,
        "| wall (profiled) | " + " | ".join(f"{bd[loop]['wall']:.2f}" for loop in bd) + " |",
        "",
        ("The step's GEMMs, median microseconds per call (oneDNN timed at every size; "
         "vaebench's Linear sends those under `ONEDNN_MIN_MACS` = "
         f"{ONEDNN_MIN_MACS} multiply-adds to aten even under `study.gemm: onednn`):"
         if "gemm_microseconds" in result else
         "The 128 x 784 x 400 GEMMs, median microseconds per call:"),
        "",
        "| GEMM | " + " | ".join(gemm_us) + " |",
        "|---|" + "---|" * len(gemm_us),
        *gemm_rows,
        "",
    ])

"""The report's logic: from the runs to everything the report stage writes, nothing written here.

``build_report`` aggregates the runs over seeds, runs the paired comparisons, judges the checks
(model checks and self-tests as separate families), and collects the sentences of the
conventions; ``pipelines/report.py`` draws the figures and writes the files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pandas as pd

from vaebench.config import Params
from vaebench.report.aggregate import cells_frame, runs_frame
from vaebench.report.compare import ALPHA as COMPARISON_ALPHA
from vaebench.report.compare import Comparison, study_comparisons
from vaebench.report.runs import RunData
from vaebench.theory.records import CheckRecord, finalize

HEADLINE = ("elbo", "nll")  # per cell in reports/metrics.json, the file `dvc exp show` reads


@dataclass
class Report:
    params: Params
    runs: list[RunData]
    long: pd.DataFrame          # runs.csv: one row per (run, metric)
    cells: pd.DataFrame         # summary.csv: one row per cell, mean and 95% interval over seeds
    comparisons: list[Comparison]
    checks: list[CheckRecord]   # judged: model checks and self-tests
    sweep_note: str
    made: str = field(default_factory=lambda: date.today().isoformat())

    def family(self, category: str) -> list[CheckRecord]:
        return [c for c in self.checks if c.category == category]


def sweep_self_tests(runs: Sequence[RunData]) -> tuple[list[dict[str, Any]], str]:
    """Alemi et al.'s bounds over the beta sweep, per seed: the rate falls with beta, I <= R and
    H - D <= I (self-tests: they hold for any parameters). H is the exact data entropy."""
    from vaebench.theory.checks import beta_sweep_checks

    sweep = [r for r in runs if r.cell.group == "sweep"]
    if len({r.cell.beta for r in sweep}) < 2:
        return [], "The β sweep has fewer than two β values: no sweep self-tests."
    entropy = next((r.metrics.data_entropy for r in runs if r.cell.dataset == sweep[0].cell.dataset
                    and r.metrics.data_entropy is not None), None)
    if entropy is None:
        return [], (f"No run on {sweep[0].cell.dataset} reports the exact data entropy, so the "
                    "sweep's Alemi bounds were not tested.")
    records: list[dict[str, Any]] = []
    for seed in sorted({r.cell.seed for r in sweep}):
        rs = [r for r in sweep if r.cell.seed == seed]
        if len(rs) < 2:
            continue
        m = [r.metrics for r in rs]
        records += beta_sweep_checks(
            [r.cell.run for r in rs], [float(r.cell.beta) for r in rs],
            [(x.kl.mean, x.kl.se) for x in m], [(-x.recon.mean, x.recon.se) for x in m],
            [(x.mi.lower.mean, x.mi.lower.se) for x in m], entropy,
            mi_source="mixture lower bound",
            mi_upper=[(x.mi.upper.mean, x.mi.upper.se) for x in m])
    return records, (f"The sweep's Alemi et al. (2018) bounds per seed, H = {entropy:.4f} nats: "
                     "I_q(x; z) bracketed by the mixture lower bound (for I ≤ R) and the "
                     "leave-one-out upper bound (for H − D ≤ I).")


def build_report(params: Params, runs: Sequence[RunData]) -> Report:
    runs = list(runs)
    long = runs_frame(runs)
    sweep_records, sweep_note = sweep_self_tests(runs)
    checks = finalize([rec for r in runs for rec in r.records] + sweep_records,
                      alpha=params.theory.alpha)
    return Report(params, runs, long, cells_frame(long), study_comparisons(runs), checks,
                  sweep_note)


def _num(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def headline_metrics(report: Report) -> dict[str, Any]:
    """What ``dvc metrics show`` and ``dvc exp show`` print: the model-check counts and each
    cell's ELBO and NLL averaged over its seeds (every run's numbers are in runs.csv)."""
    model = report.family("model")
    cells = {row["cell"]: {k: _num(float(row[k])) for k in HEADLINE}
             for _, row in report.cells.iterrows()}
    return {"model_checks_total": len(model),
            "model_checks_passed": sum(c.passed for c in model),
            "cells": cells}


def theory_document(report: Report) -> dict[str, Any]:
    """The content of reports/theory.json (non-finite numbers written as null)."""
    def clean(c: CheckRecord) -> dict[str, Any]:
        return {k: _num(v) for k, v in c.to_dict().items()}

    out: dict[str, Any] = {"alpha": report.params.theory.alpha,
                           "rule": "Holm within each family (model checks, self-tests); "
                                   "one-sided p for le/ge, two-sided for equal; deterministic "
                                   "checks use their stated tolerance"}
    for category, key in (("model", "model_checks"), ("self-test", "self_tests")):
        fam = report.family(category)
        out[key] = {"total": len(fam), "passed": sum(c.passed for c in fam),
                    "failed": [f"{c.name} [{c.run}]" for c in fam if not c.passed],
                    "checks": [clean(c) for c in fam]}
    return out


def failure_line(report: Report) -> str | None:
    """One line naming every failed check (model checks first), or None when all pass."""
    failed = [c for c in report.checks if not c.passed]
    if not failed:
        return None
    failed.sort(key=lambda c: c.category != "model")
    return (f"{len(failed)} of {len(report.checks)} checks failed: "
            + ", ".join(f"{c.name} [{c.run}] ({c.category})" for c in failed))


def conventions(report: Report) -> list[str]:
    """The likelihood conventions of this study, one sentence each, from the runs' metrics."""
    runs = report.runs
    lines = ["All log-likelihoods, ELBOs, KLs and rates are in nats per data point (per image "
             "for image data sets), averaged over the test set."]
    nll = sorted({(r.metrics.nll_k, r.metrics.nll_points) for r in runs})
    lines.append("NLL = −L_k, the importance-weighted bound (Burda et al. 2016) with " + "; ".join(
        f"k = {k} importance samples on the first {p} test points" for k, p in nll) + ".")
    decoders: dict[tuple[str, str, str], list[str]] = {}
    for r in runs:
        m = r.metrics
        key = (m.likelihood, m.preprocessing, m.test_preprocessing)
        decoders.setdefault(key, [])
        if r.cell.dataset not in decoders[key]:
            decoders[key].append(r.cell.dataset)
    for (lik, train_pre, test_pre), datasets in sorted(decoders.items()):
        where = ", ".join(datasets)
        if train_pre == "none":
            lines.append(f"{lik.capitalize()} decoder on {where}: continuous data, used as stored.")
        else:
            lines.append(f"{lik.capitalize()} decoder on {where}: {train_pre} in training; the "
                         f"test set {test_pre}, the same for every run (checked: "
                         "test_set_is_the_fixed_one).")
    lines.append("bits/dim = NLL / (D · ln 2) on image data; Gaussian decoders on 8-bit images "
                 "add D · log 256 to the NLL first (the dequantization correction).")
    lines.append(f"Seeds: study.seeds = {report.params.study.seeds} train each cell; each run "
                 "draws its evaluation noise from a seed derived from the run, so runs are "
                 "independent replicates and a rerun gives the same numbers bit for bit on one "
                 "machine (across machines, within their errors: `vaebench verify`).")
    lines.append(f"Verdicts between models come only from paired intervals, with Holm's "
                 f"correction over all of them at α = {COMPARISON_ALPHA}.")
    return lines

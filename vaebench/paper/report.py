"""A paper preset's result beside the published number: intervals over seeds and a verdict.

Pure functions from per-seed metrics to one result document (``result``) and its markdown
(``markdown``); ``pipelines/paper.py`` reads the runs and writes both atomically.

The verdict is taken from an interval, never from a point estimate:
- d = (our mean NLL over seeds) - (published NLL);
- its half-width combines our Student-t interval over seeds, t_{n-1} s / sqrt(n), with the
  published ± read as the standard error of the published mean (the reading that gives the
  wider interval: the table does not say how many runs its ± spans), z * pm, in quadrature;
- "within" when the whole interval [d - h, d + h] lies inside [-tolerance, +tolerance];
  "above" (our NLL worse) when it lies wholly above +tolerance; "below" when it lies wholly
  below -tolerance; "inconclusive" otherwise, or with fewer than two seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from scipy import stats

VERDICTS = ("within", "above", "below", "inconclusive")


def t_interval(values: Sequence[float], level: float) -> dict[str, Any]:
    """Mean, sample SD and the Student-t half-width over ``values`` (NaN below two values)."""
    n = len(values)
    mean = sum(values) / n if n else math.nan
    if n < 2:
        return {"mean": mean, "sd": math.nan, "half_width": math.nan, "n": n}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "sd": sd, "half_width": half, "n": n}


def verdict(ours: dict[str, Any], published_nll: float, published_pm: float | None,
            tolerance: float, level: float) -> dict[str, Any]:
    """The interval for our NLL minus the published one, and what it says (see module)."""
    z = float(stats.norm.ppf(0.5 + level / 2))
    pub_half = z * (published_pm or 0.0)
    d = ours["mean"] - published_nll
    half = math.hypot(ours["half_width"], pub_half)
    lo, hi = d - half, d + half
    reason = ""
    if math.isnan(half):
        word, reason = "inconclusive", "fewer than two seeds: no interval over seeds"
    elif -tolerance <= lo and hi <= tolerance:
        word = "within"
    elif lo > tolerance:
        word = "above"
    elif hi < -tolerance:
        word = "below"
    else:
        word, reason = "inconclusive", f"the interval straddles ±{tolerance:g}"
    return {"difference": d, "interval": [lo, hi], "half_width": half, "tolerance": tolerance,
            "level": level, "verdict": word, "reason": reason}


def result(paper, variants: list[dict[str, Any]], machine: dict[str, str], date: str,
           note: str) -> dict[str, Any]:
    """The result document: one entry per variant with its seeds, aggregates and verdict.

    ``variants`` holds, per variant, ``name``, ``published`` (a Published or None), ``train``
    (the train block) and ``seeds``: the per-seed metrics from the paper evaluation.
    """
    out = {"name": paper.name, "date": date, "machine": machine, "note": note,
           "protocol": {"importance_samples": paper.importance_samples,
                        "test_points": paper.test_points or "all",
                        "test_binarization": paper.test_binarization,
                        "tolerance_nats": paper.tolerance, "level": paper.level,
                        "interval": "Student t over seeds (ours) combined in quadrature with "
                                    "the published ± read as a standard error"},
           "differences": list(paper.differences), "variants": []}
    for v in variants:
        seeds = sorted(v["seeds"], key=lambda m: m["seed"])
        entry: dict[str, Any] = {"name": v["name"], "train": v["train"], "seeds": seeds}
        for key in ("nll", "elbo"):
            entry[key] = t_interval([m[key] for m in seeds], paper.level)
            entry[key]["test_sampling_se"] = _rms([m[f"{key}_se"] for m in seeds])
            entry[key]["monte_carlo_se"] = _rms([m[f"{key}_mc_se"] for m in seeds])
        pub = v["published"]
        if pub is not None:
            entry["published"] = pub.model_dump()
            entry["comparison"] = verdict(entry["nll"], pub.nll, pub.pm, paper.tolerance,
                                          paper.level)
        out["variants"].append(entry)
    return out


def best_by_epoch(val_elbo: Sequence[float], every: int = 50) -> dict[str, float]:
    """The best validation ELBO reached by every ``every``-th epoch and by the last one: how
    far training still moved, and whether early stopping was near."""
    best, out = -math.inf, {}
    for epoch, value in enumerate(val_elbo, 1):
        best = max(best, value)
        if epoch % every == 0 or epoch == len(val_elbo):
            out[str(epoch)] = best
    return out


def unconverged_note(doc: dict[str, Any]) -> str | None:
    """When our NLL is above the published one and no seed stopped early, the measured sign
    that training was cut short: how much the best validation ELBO still rose over the last
    quarter of the epochs trained (mean over seeds)."""
    gains, ends = [], []
    for v in doc["variants"]:
        if (v.get("comparison") or {}).get("verdict") != "above":
            continue
        for m in v["seeds"]:
            by = {int(e): x for e, x in (m.get("val_elbo_best_by_epoch") or {}).items()}
            if (m.get("early_stopping") or {}).get("stopped_at") or len(by) < 2:
                continue
            last = max(by)
            earlier = [e for e in by if e <= 0.75 * last] or [min(by)]
            gains.append(by[last] - by[max(earlier)])
            ends.append((last, max(earlier)))
    if not gains:
        return None
    last, start = ends[0]
    return (f"Training was cut short: no seed reached early stopping, and the best validation "
            f"ELBO still rose by {sum(gains) / len(gains):.2f} nats (mean over {len(gains)} "
            f"seed(s)) from epoch {start} to epoch {last}, the last one trained. The published "
            "protocol trains until 50 epochs pass without a new best (at most 2000); the "
            "override of the epochs is the cause measured here; the differences below were not measured.")


def _rms(values: Sequence[float]) -> float:
    """The typical within-run error over seeds: the root mean square of the runs' errors."""
    return math.sqrt(sum(v * v for v in values) / len(values)) if values else math.nan


def _f(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def markdown(doc: dict[str, Any]) -> str:
    """The result as a markdown page: the comparison table, per-seed table, differences."""
    lvl = f"{doc['protocol']['level']:.0%}"
    lines = [f"# {doc['name']}: our run of a published protocol", "",
             f"{doc['date']}, {doc['machine'].get('cpu', '?')} "
             f"({doc['machine'].get('cpu_count', '?')} cores; torch "
             f"{doc['machine'].get('torch', '?')}, commit "
             f"{doc['machine'].get('git_commit', '?')[:12]}). {doc['note']}", "",
             f"NLL = −L_S with S = {doc['protocol']['importance_samples']} importance samples "
             f"on {doc['protocol']['test_points']} test images (binarization: "
             f"{doc['protocol']['test_binarization']}), nats per image. Intervals at {lvl}: "
             f"{doc['protocol']['interval']}. Verdict against a tolerance of "
             f"±{doc['protocol']['tolerance_nats']:g} nats: within / above / below when the "
             "whole interval of the difference lies inside / above / below it.", "",
             "| variant | our NLL (mean ± t half-width, n) | test-sampling SE | MC SE | our ELBO "
             "| published NLL | difference [interval] | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for v in doc["variants"]:
        nll, elbo = v["nll"], v["elbo"]
        pub = v.get("published")
        cmp_ = v.get("comparison")
        lines.append(
            f"| {v['name']} | {_f(nll['mean'])} ± {_f(nll['half_width'])} ({nll['n']}) | "
            f"{_f(nll['test_sampling_se'])} | {_f(nll['monte_carlo_se'], 3)} | "
            f"{_f(elbo['mean'])} ± {_f(elbo['half_width'])} | "
            + (f"{pub['nll']:.2f}" + (f" ± {pub['pm']:.2f}" if pub["pm"] is not None else "")
               if pub else "—") + " | "
            + (f"{_f(cmp_['difference'])} [{_f(cmp_['interval'][0])}, "
               f"{_f(cmp_['interval'][1])}] | **{cmp_['verdict']}**"
               + (f" ({cmp_['reason']})" if cmp_.get("reason") else "") if cmp_ else "— | —")
            + " |")
    lines += ["", "## Per seed", "",
              "| variant | seed | NLL | ELBO | best epoch | epochs trained | stopped early | "
              "active units | train wall (min) | evaluation wall (min) | wall per seed (min) "
              "| CPU per seed (min) |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for v in doc["variants"]:
        for m in v["seeds"]:
            es = m.get("early_stopping") or {}
            cost = m.get("cost") or {}
            cpu = (sum(cost[k]["cpu_seconds"] for k in ("train", "evaluate")) / 60
                   if cost else math.nan)
            lines.append(
                f"| {v['name']} | {m['seed']} | {_f(m['nll'])} | {_f(m['elbo'])} | "
                f"{es.get('best_epoch', '—')} | {m['epochs']} | "
                f"{'yes, at ' + str(es['stopped_at']) if es.get('stopped_at') else 'no'} | "
                f"{m['active_units']}/{m['latent_dim']} | {_f(m['train_stage_seconds'] / 60, 1)}"
                f" | {_f(m['eval_seconds'] / 60, 1)} | {_f(m['wall_seconds'] / 60, 1)} | "
                f"{_f(cpu, 1)} |")
    curves = [(v["name"], m) for v in doc["variants"] for m in v["seeds"]
              if m.get("val_elbo_best_by_epoch")]
    if curves:
        epochs = sorted({int(e) for _, m in curves for e in m["val_elbo_best_by_epoch"]})
        lines += ["", "## Best validation ELBO by epoch", "",
                  "| variant | seed | " + " | ".join(str(e) for e in epochs) + " |",
                  "|---|---|" + "---|" * len(epochs)]
        for name, m in curves:
            by = m["val_elbo_best_by_epoch"]
            lines.append(f"| {name} | {m['seed']} | "
                         + " | ".join(_f(by.get(str(e))) if str(e) in by else "" for e in epochs)
                         + " |")
    notes = sorted({m["extended"] for v in doc["variants"] for m in v["seeds"] if m.get("extended")})
    if notes:
        lines += [""] + [f"Note: {n}." for n in notes]
    for v in doc["variants"]:
        if v.get("published"):
            p = v["published"]
            lines += ["", f"Published: {p['source']}. {p['model']}: {p['protocol']}."]
            break
    cause = unconverged_note(doc)
    if cause:
        lines += ["", "## Likely cause of the gap", "", cause]
    if doc["differences"]:
        lines += ["", "## Remaining protocol differences", ""]
        lines += [f"- {d}" for d in doc["differences"]]
    return "\n".join(lines) + "\n"

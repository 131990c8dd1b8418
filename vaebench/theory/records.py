"""Check records, their two families, and their verdict (Holm's correction within a family).

A check compares an empirical number with theory. Two families are kept apart:

- **model checks** (``category="model"``): claims about the trained models and the objective
  they optimized, which a wrong model, objective or estimator fails. Each names the classes of
  bug it can catch (``catches``, keys of ``BUG_CLASSES``). The report's headline counts these.
- **self-tests** (``category="self-test"``): identities of the estimators and the random
  numbers that hold for any parameters. Useful, but not evidence about the models.

``finalize`` judges every record. A statistical record (kind equal/le/ge with a standard error)
gets z = (empirical - theoretical) / stderr and a p-value: two-sided for "equal", one-sided for
"le" (a violation is emp > theo) and "ge" (emp < theo). Holm's step-down correction (Holm 1979)
runs over the statistical records of each family separately at family-wise ``alpha``; a record
fails when Holm rejects it. Its ``tolerance`` is the critical z at its Holm step times the
standard error (plus a floating-point slack of ``FP_RTOL`` * max(1, |emp|, |theo|), so that an
exact identity with stderr 0 is not failed by rounding). Deterministic records use their own
stated tolerance: le/ge the same inequalities, "exact" |emp - theo| <= tolerance, "gap"
0 <= theo - emp <= tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
from scipy.stats import norm

KINDS = ("equal", "le", "ge", "exact", "gap")
STATISTICAL_KINDS = ("equal", "le", "ge")
CATEGORIES = ("model", "self-test")
FP_RTOL = 1e-9
Record = dict[str, Any]

# The classes of bug the model checks are designed for (each planted by tests/planted_bugs).
BUG_CLASSES = {
    "likelihood_constant": "a likelihood's normalizing constant",
    "kl_formula": "the KL's formula",
    "reparam_scale": "the reparameterization's scale (variance in place of standard deviation)",
    "prior_density": "the prior's density",
    "is_estimator": "the importance-sampling estimator (mean of log w in place of log-mean-exp)",
    "beta_term": "beta on the wrong term",
    "tc_constants": "the TC constants",
    "iwae_detach": "IWAE's normalized weights not detached",
    "test_rebinarized": "a test set re-binarized at every evaluation",
    "is_fast_path": "the fast importance-sampling path's likelihood (a term of the rewritten "
                    "Bernoulli log-density dropped)",
    "fused_backward": "the backward pass written out (a factor of the gradient through logvar "
                      "dropped)",
}


@dataclass(frozen=True)
class CheckRecord:
    """One comparison of an empirical number with theory; the verdict fields (``tolerance``
    for statistical records, ``z``, ``p``, ``passed``) are None until ``finalize``."""

    name: str
    run: str
    kind: str
    empirical: float
    theoretical: float
    stderr: float | None = None
    tolerance: float | None = None
    z: float | None = None
    p: float | None = None
    passed: bool | None = None
    detail: str = ""
    category: str = "self-test"
    catches: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {self.kind!r}")
        if self.category not in CATEGORIES:
            raise ValueError(f"category must be one of {', '.join(CATEGORIES)}; got "
                             f"{self.category!r}")
        unknown = [c for c in self.catches if c not in BUG_CLASSES]
        if unknown:
            raise ValueError(f"check {self.name!r}: unknown bug classes {unknown}; valid "
                             f"choices: {', '.join(BUG_CLASSES)}")
        object.__setattr__(self, "catches", tuple(self.catches))
        if self.stderr is not None and self.stderr < 0.0:
            raise ValueError(f"stderr must be >= 0, NaN (undetermined: the check fails) or "
                             f"None; got {self.stderr!r}")
        needs_tol = self.kind in ("exact", "gap") or self.stderr is None
        if needs_tol and self.tolerance is None:
            raise ValueError(f"check {self.name!r} of kind {self.kind!r} without a stderr needs "
                             "a tolerance")
        if self.kind in ("exact", "gap") and self.stderr is not None:
            raise ValueError(f"check {self.name!r}: kind {self.kind!r} is not statistical; "
                             "give a tolerance, not a stderr")

    @property
    def statistical(self) -> bool:
        """True for z-tested records: kind equal/le/ge with a standard error."""
        return self.kind in STATISTICAL_KINDS and self.stderr is not None

    def to_dict(self) -> Record:
        out = asdict(self)
        out["catches"] = list(self.catches)
        return out

    @classmethod
    def from_any(cls, record: CheckRecord | Record) -> CheckRecord:
        """A record from a ``CheckRecord`` or a dict with its fields."""
        if isinstance(record, cls):
            return record
        if not isinstance(record, dict):
            raise TypeError(f"a check record must be a CheckRecord or dict; got "
                            f"{type(record).__name__}")
        unknown = set(record) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"check record has unknown fields {sorted(unknown)}; valid fields: "
                             f"{', '.join(f.name for f in fields(cls))}")
        return cls(**{**record, "catches": tuple(record.get("catches", ()))})


class RawRecord(dict):
    """A builder's record: a JSON-ready dict with the fields of ``CheckRecord`` (verdict
    fields None). ``to_dict()`` returns a plain dict copy, as ``CheckRecord.to_dict`` does."""

    def to_dict(self) -> Record:
        return dict(self)


def record(**kwargs: Any) -> RawRecord:
    """A validated raw record (no verdict yet)."""
    return RawRecord(CheckRecord(**kwargs).to_dict())


def bonferroni_z(alpha: float, m: int) -> float:
    """Two-sided Bonferroni critical value z* = Phi^-1(1 - alpha / (2 m))."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")
    if isinstance(m, bool) or not isinstance(m, int | np.integer) or m < 1:
        raise ValueError(f"m must be an integer >= 1; got {m!r}")
    return float(norm.isf(alpha / (2.0 * int(m))))


def _fp_slack(emp: float, theo: float) -> float:
    return FP_RTOL * max(1.0, abs(emp), abs(theo))


def _p_value(kind: str, z: float) -> float:
    if math.isnan(z):
        return 0.0  # undetermined: rejected
    if kind == "equal":
        return float(2.0 * norm.sf(abs(z)))
    return float(norm.sf(z) if kind == "le" else norm.cdf(z))


def _z_crit(kind: str, level: float) -> float:
    return float(norm.isf(level / 2.0) if kind == "equal" else norm.isf(level))


def _judge_family(records: list[CheckRecord], alpha: float) -> list[CheckRecord]:
    stat = [i for i, r in enumerate(records) if r.statistical]
    m = len(stat)
    z_of: dict[int, float] = {}
    p_of: dict[int, float] = {}
    for i in stat:
        r = records[i]
        emp, theo, se = float(r.empirical), float(r.theoretical), float(r.stderr)
        diff = emp - theo
        if abs(diff) <= _fp_slack(emp, theo) and not math.isnan(diff):
            z = 0.0
        elif se > 0.0:
            z = diff / se
        else:
            z = math.nan if (math.isnan(se) or math.isnan(diff)) else math.copysign(math.inf, diff)
        z_of[i], p_of[i] = z, _p_value(r.kind, z)
    # Holm: the r-th smallest p (r = 1..m) is tested at alpha / (m - r + 1), stopping at the
    # first that is not rejected.
    order = sorted(stat, key=lambda i: p_of[i])
    rejected: set[int] = set()
    level_of: dict[int, float] = {}
    going = True
    for rank, i in enumerate(order, start=1):
        level_of[i] = alpha / (m - rank + 1)
        if going and p_of[i] < level_of[i]:
            rejected.add(i)
        else:
            going = False
    out = []
    for i, r in enumerate(records):
        emp, theo = float(r.empirical), float(r.theoretical)
        diff = emp - theo
        detail = r.detail.split(" [Holm")[0]
        if r.statistical:
            tol = _z_crit(r.kind, level_of[i]) * float(r.stderr) + _fp_slack(emp, theo)
            passed = i not in rejected
            detail = (f"{detail} [Holm over m = {m} statistical {r.category} checks at "
                      f"alpha = {alpha}; {'two' if r.kind == 'equal' else 'one'}-sided]")
            out.append(replace(r, tolerance=tol, z=z_of[i], p=p_of[i], passed=bool(passed),
                               detail=detail))
            continue
        tol = float(r.tolerance)  # type: ignore[arg-type]
        if r.kind in ("equal", "exact"):
            passed = abs(diff) <= tol
        elif r.kind == "le":
            passed = diff <= tol
        elif r.kind == "ge":
            passed = diff >= -tol
        else:  # gap
            passed = -_fp_slack(emp, theo) <= -diff <= tol
        if math.isnan(diff) or math.isnan(tol):
            passed = False
        out.append(replace(r, tolerance=tol, z=None, p=None, passed=bool(passed), detail=detail))
    return out


def finalize(records: Sequence[CheckRecord | Record], alpha: float = 0.01) -> list[CheckRecord]:
    """Verdicts for all records, Holm-corrected within the model-check family and within the
    self-test family; returns new records in the input order."""
    recs = [CheckRecord.from_any(r) for r in records]
    out: list[CheckRecord | None] = [None] * len(recs)
    for category in CATEGORIES:
        idx = [i for i, r in enumerate(recs) if r.category == category]
        for i, judged in zip(idx, _judge_family([recs[i] for i in idx], alpha), strict=True):
            out[i] = judged
    return out  # type: ignore[return-value]

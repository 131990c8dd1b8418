"""The typed contract of a paper preset's result: ``reports/paper/<name>.json``.

``vaebench paper`` (``pipelines/paper.py``) builds a ``PaperResult`` with
``vaebench.paper.report.result`` and writes its ``model_dump(mode="json")``; its markdown
(``reports/paper/<name>.md``) is rendered from the same object, and the report stage reads every
``reports/paper/*.json`` back through ``read_result``. A renamed or missing field fails
validation with the file and the field named, never a page silently.

Conventions (stated with every number in the markdown):
- NLL and ELBO are in nats per image; the NLL is −L_S with S = ``protocol.importance_samples``
  importance samples on ``protocol.test_points`` test images;
- per seed, ``*_se`` is the test-sampling error (the spread over test images, s / sqrt(N)) and
  ``*_mc_se`` the Monte Carlo error of the estimator on those fixed images;
- over seeds (``SeedInterval``), ``half_width`` is the Student-t half-width t_{n-1} s / sqrt(n)
  at ``protocol.level`` (NaN below two seeds), and ``test_sampling_se`` and ``monte_carlo_se``
  are the root mean square of the seeds' own errors;
- ``Comparison.interval`` is the interval of (our mean NLL) − (published NLL): our Student-t
  half-width combined in quadrature with the published ± read as a standard error; its
  ``verdict`` is one of ``VERDICTS`` (see ``vaebench.paper.report``).

Fields that a run may lack are optional: ``cost`` (no runner's record) and ``extended`` (a run
not extended from an earlier one) are left out of the JSON when absent, as are ``published``
and ``comparison`` of a variant that matches no published number; ``early_stopping`` (none
configured) and ``val_elbo_last`` (no epoch trained) are written as null.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field, ValidationError

from vaebench.paper.published import Published
from vaebench.results import _Frozen  # the contracts' one base: frozen, no extra fields

Verdict = Literal["within", "above", "below", "inconclusive"]
VERDICTS: tuple[str, ...] = get_args(Verdict)
Binarization = Literal["dataset", "vampprior"]


def _absent_if_none(value: Any) -> bool:
    return value is None


def _optional() -> Any:
    """A field left out of the JSON when it is None (the key was never written for it)."""
    return Field(None, exclude_if=_absent_if_none)


class StageCost(_Frozen):
    """One stage as the runner measured it: wall time and CPU time (user + system)."""

    wall_seconds: float
    cpu_seconds: float


class Cost(_Frozen):
    """The runner's record of one seed (``runs/<cell>/seed<k>/paper/cost.json``)."""

    train: StageCost
    evaluate: StageCost
    threads: int | None  # torch threads of every stage; None: the stage's own default
    nice: int

    @property
    def cpu_seconds(self) -> float:
        """CPU time of the seed: training and evaluation."""
        return self.train.cpu_seconds + self.evaluate.cpu_seconds


class EarlyStopping(_Frozen):
    """The early-stopping state at the end of training (``vaebench.regimen.EarlyStopping``)."""

    patience: int
    warmup_epochs: int
    best_value: float  # the best validation ELBO, nats per image
    best_epoch: int
    counter: int
    stopped_at: int  # the epoch after which training stopped; 0: it did not stop


class SeedResult(_Frozen):
    """One seed: the paper evaluation's metrics (``pipelines.paper evaluate``) and what the
    report adds from the run's training record and the runner."""

    run: str
    seed: int
    date: str
    machine: dict[str, str]
    nll: float  # −L_S, nats per image
    nll_se: float  # test-sampling error
    nll_mc_se: float  # Monte Carlo error over the fixed test images
    nll_mc_se_method: str
    elbo: float  # the S-sample ELBO (mean of the log weights), nats per image
    elbo_se: float
    elbo_mc_se: float
    importance_samples: int
    test_points: int
    test_binarization: Binarization
    active_units: int
    latent_dim: int
    epochs: int  # epochs trained
    early_stopping: EarlyStopping | None = None  # None: no early stopping configured
    val_elbo_last: float | None = None  # the last epoch's validation ELBO
    val_elbo_best_by_epoch: dict[str, float]  # epoch -> best validation ELBO up to it
    train_seconds: float  # the training loop
    train_stage_seconds: float  # the whole train stage
    eval_seconds: float
    wall_seconds: float  # train stage + evaluation
    cost: Cost | None = _optional()
    extended: str | None = _optional()  # the note of a run continued from an earlier one

    @property
    def curve(self) -> dict[int, float]:
        """The best validation ELBO by epoch, keyed by the epoch as a number."""
        return {int(e): x for e, x in self.val_elbo_best_by_epoch.items()}


class TInterval(_Frozen):
    """Mean, sample SD and Student-t half-width over seeds (SD and half-width NaN below two)."""

    mean: float
    sd: float
    half_width: float
    n: int


class SeedInterval(TInterval):
    """A metric over seeds, with the seeds' typical own errors (root mean square)."""

    test_sampling_se: float
    monte_carlo_se: float


class Comparison(_Frozen):
    """Our mean NLL minus the published one, its interval and the verdict it gives."""

    difference: float
    interval: tuple[float, float]  # (low, high) at ``level``
    half_width: float
    tolerance: float  # nats
    level: float
    verdict: Verdict
    reason: str  # why inconclusive; empty otherwise


class Protocol(_Frozen):
    """How every variant was scored and judged."""

    importance_samples: int  # S of −L_S
    test_points: int | Literal["all"]
    test_binarization: Binarization
    tolerance_nats: float
    level: float
    interval: str  # how the interval of the difference is made, in words


class Variant(_Frozen):
    """One combination of the preset's grid (``study`` without a grid) and its seeds."""

    name: str
    train: dict[str, Any]  # the train block it ran
    seeds: list[SeedResult]  # by seed
    nll: SeedInterval
    elbo: SeedInterval
    published: Published | None = _optional()  # None: no published number matches
    comparison: Comparison | None = _optional()


class PaperResult(_Frozen):
    """A paper preset run here, beside its published number (``reports/paper/<name>.json``)."""

    name: str
    date: str  # the latest evaluation
    machine: dict[str, str]  # ``vaebench.machine.machine_info`` of the first seed
    note: str  # how the stages ran
    protocol: Protocol
    differences: list[str]  # protocol differences that remain, overrides first
    variants: list[Variant]

    def curves(self) -> list[tuple[str, SeedResult]]:
        """(variant, seed) of every seed with a best-validation-ELBO curve."""
        return [(v.name, m) for v in self.variants for m in v.seeds if m.val_elbo_best_by_epoch]

    def curve_epochs(self) -> list[int]:
        """Every epoch at which some seed's curve has a value, in order."""
        return sorted({e for _, m in self.curves() for e in m.curve})

    def extended_notes(self) -> list[str]:
        return sorted({m.extended for v in self.variants for m in v.seeds if m.extended})

    def first_published(self) -> Published | None:
        return next((v.published for v in self.variants if v.published), None)


def validation_message(err: ValidationError, most: int = 3) -> str:
    """The fields a ValidationError names, with what is wrong, on one line."""
    parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()]
    more = f" (and {len(parts) - most} more)" if len(parts) > most else ""
    return "; ".join(parts[:most]) + more


def read_result(path: Path) -> PaperResult:
    """``reports/paper/<name>.json`` validated; a one-line ValueError naming the file and the
    fields when it does not follow the contract."""
    from vaebench.io import read_json

    raw = read_json(path, "written by `vaebench paper`")
    try:
        return PaperResult.model_validate(raw)
    except ValidationError as err:
        raise ValueError(f"{path}: {validation_message(err)} (written by another version of "
                         "`vaebench paper`? rerun `python -m pipelines.paper report PRESET`)"
                         ) from None

"""The gradient study's contract (vaebench.gradient_results) and the stage's verdict on it."""

from __future__ import annotations

import json

import pydantic
import pytest

from pipelines.gradients import render_markdown, summarize
from vaebench.config import GradientStudyConfig
from vaebench.gradient_results import BetaRun, Checkpoint, GradientStudyResult, GroupGradients

ESTIMATORS = ("reparameterization", "score_function", "score_function_loo")


def group(name: str, low: float) -> GroupGradients:
    """A group whose score-function ratio is 10 [low, 20]."""
    return GroupGradients(
        group=name, size=12, variance={e: (1.0, 0.5, 2.0) for e in ESTIMATORS},
        ratio={"score_function": (10.0, low, 20.0), "score_function_loo": (5.0, 2.0, 8.0)},
        agreement={"score_function": 1.1, "score_function_loo": 0.9},
        recon_norm=2.0, kl_norm=1.0, cos_recon_kl=0.5)


def study(lows: list[float]) -> list[BetaRun]:
    return [BetaRun(beta=1.0, checkpoints=[
        Checkpoint(step=s, elbo=-100.0, kl=3.0, groups=[group("net.0", low), group("all", low)])
        for s, low in enumerate(lows)])]


def result(runs: list[BetaRun]) -> GradientStudyResult:
    verdict, holds, agreement = summarize(runs, 0.95)
    return GradientStudyResult(
        date="2026-12-02T06:00:00", cpu="test CPU", threads=1, torch="2", machine={},
        config=GradientStudyConfig(), dim=64, n_pool=100, estimators={e: e for e in ESTIMATORS},
        baseline="LOO", verdict=verdict, holds=holds, agreement_range=agreement, runs=runs,
        seconds=1.0)


def test_the_known_result_holds_only_when_every_lower_bound_is_above_one():
    verdict, holds, agreement = summarize(study([3.0, 1.5]), 0.95)
    assert holds and "the lowest 95% lower bound is 1.5, above 1" in verdict
    assert "by at least 0 orders of magnitude" in verdict  # floor(log10 1.5)
    assert agreement == {"score_function": (1.1, 1.1), "score_function_loo": (0.9, 0.9)}
    verdict, holds, _ = summarize(study([3.0, 0.8]), 0.95)  # one cell's interval reaches below 1
    assert not holds and "0.8, not above 1" in verdict and "does not hold" in verdict


def test_the_json_round_trips_and_a_renamed_field_fails():
    r = result(study([3.0]))
    doc = json.loads(json.dumps(r.model_dump(mode="json")))
    assert GradientStudyResult.model_validate(doc) == r
    doc["runs"][0]["checkpoints"][0]["groups"][0]["cos"] = doc["runs"][0]["checkpoints"][0][
        "groups"][0].pop("cos_recon_kl")
    with pytest.raises(pydantic.ValidationError, match="cos_recon_kl"):
        GradientStudyResult.model_validate(doc)


def test_markdown_rows_come_from_the_result():
    md = render_markdown(result(study([3.0])))
    # ||grad recon - grad KL|| = sqrt(4 + 1 - 2 * 2 * 1 * 0.5) = sqrt(3); over ||grad recon|| = 2
    assert "| 1 | 0 | `net.0` | 12 | 2 | 1 | 0.50 | 0.500 | 0.87 | 10 |" in md
    assert "| 1 | 0 | -100.00 | 1 | 1 | 1 | 10 [3, 20] | 5 [2, 8] |" in md
    assert "score_function 1.10 to 1.10; score_function_loo 0.90 to 0.90." in md

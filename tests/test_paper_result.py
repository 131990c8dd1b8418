"""The contract of a paper preset's result (vaebench.paper.result): the committed
reports/paper/paper-fmnist.json validates, is what ``result`` computes from its own seeds (to the
byte, as written), and renders the committed markdown byte for byte; a renamed or misspelt
field fails naming the file and the field; fields a run lacks stay out of the JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pydantic
import pytest

from vaebench.paper.config import PaperConfig
from vaebench.paper.published import published
from vaebench.paper.report import INTERVAL, VariantRuns, markdown, result
from vaebench.paper.result import (
    Comparison,
    PaperResult,
    Protocol,
    SeedInterval,
    SeedResult,
    Variant,
    read_result,
)

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "reports" / "paper" / "paper-fmnist"
EXEMPLAR = "exemplar-vae-fashion-mnist-vae"


def seed_result(seed: int = 0, nll: float = 233.6, **change: Any) -> SeedResult:
    """One evaluated seed as ``pipelines.paper report`` gathers it; ``change`` overrides."""
    row = dict(
        run=f"vae-fashion-mnist/seed{seed}", seed=seed, date="2026-12-02",
        machine={"cpu": "Test CPU", "cpu_count": "2"}, nll=nll, nll_se=0.76, nll_mc_se=0.003,
        nll_mc_se_method="delta method", elbo=-nll - 3.7, elbo_se=0.76, elbo_mc_se=0.0004,
        importance_samples=5000, test_points=10000, test_binarization="vampprior",
        active_units=39, latent_dim=40, epochs=40,
        early_stopping=dict(patience=50, warmup_epochs=10, best_value=-236.6, best_epoch=39,
                            counter=1, stopped_at=0),
        val_elbo_last=-236.8, val_elbo_best_by_epoch={"20": -240.0, "40": -236.6},
        train_seconds=500.0, train_stage_seconds=495.0, eval_seconds=805.0, wall_seconds=1300.0,
        cost=dict(train=dict(wall_seconds=501.0, cpu_seconds=337.0),
                  evaluate=dict(wall_seconds=811.0, cpu_seconds=713.0), threads=1, nice=0))
    row.update(change)
    return SeedResult.model_validate(row)


def paper_config(**change: Any) -> PaperConfig:
    return PaperConfig(**{"name": "paper-fmnist", "published": [EXEMPLAR],
                          "test_binarization": "vampprior", **change})


def variant(seeds: list[SeedResult], verdict: str = "above") -> Variant:
    """A variant whose comparison says ``verdict``, whatever its seeds."""
    interval = SeedInterval(mean=233.6, sd=0.02, half_width=0.05, n=len(seeds),
                            test_sampling_se=0.76, monte_carlo_se=0.003)
    return Variant(name="study", train={}, seeds=seeds, nll=interval, elbo=interval,
                   published=published(EXEMPLAR), comparison=Comparison(
                       difference=4.9, interval=(4.6, 5.2), half_width=0.3, tolerance=1.0,
                       level=0.95, verdict=verdict, reason=""))


def paper_result(variants: list[Variant]) -> PaperResult:
    return PaperResult(
        name="paper-fmnist", date="2026-12-02", machine={"cpu": "Test CPU"}, note="",
        protocol=Protocol(importance_samples=5000, test_points="all", test_binarization="vampprior",
                          tolerance_nats=1.0, level=0.95, interval=INTERVAL),
        differences=[], variants=variants)


def test_the_committed_result_validates_and_renders_its_markdown_byte_for_byte():
    raw = json.loads(COMMITTED.with_suffix(".json").read_text(encoding="utf-8"))
    doc = PaperResult.model_validate(raw)
    assert doc.model_dump(mode="json") == raw
    assert markdown(doc).encode("utf-8") == COMMITTED.with_suffix(".md").read_bytes()
    assert read_result(COMMITTED.with_suffix(".json")) == doc


def test_result_recomputes_the_committed_file_from_its_own_seeds():
    """The intervals over seeds, the verdict and the protocol block, from the seeds alone
    (given in another order), written as the stage writes them: the committed bytes."""
    doc = read_result(COMMITTED.with_suffix(".json"))
    p = doc.protocol
    paper = PaperConfig(
        name=doc.name, published=[v.published.key for v in doc.variants if v.published],
        importance_samples=p.importance_samples,
        test_points=None if p.test_points == "all" else p.test_points,
        test_binarization=p.test_binarization, tolerance=p.tolerance_nats, level=p.level,
        differences=doc.differences)
    again = result(paper, [VariantRuns(v.name, v.train, v.published, v.seeds[::-1])
                           for v in doc.variants], doc.machine, doc.date, doc.note)
    assert again == doc
    written = json.dumps(again.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
    assert written == COMMITTED.with_suffix(".json").read_text(encoding="utf-8")


def test_a_renamed_or_misspelt_field_fails_naming_the_file_and_the_field(tmp_path):
    raw = json.loads(COMMITTED.with_suffix(".json").read_text(encoding="utf-8"))
    raw["variants"][0]["seeds"][1]["nll_stderr"] = raw["variants"][0]["seeds"][1].pop("nll_se")
    with pytest.raises(pydantic.ValidationError, match="nll_se"):
        PaperResult.model_validate(raw)
    path = tmp_path / "paper-fmnist.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError) as info:
        read_result(path)
    message = str(info.value)
    assert len(message.splitlines()) == 1 and message.startswith(f"{path}: ")
    assert "variants.0.seeds.1.nll_se: Field required" in message
    assert "variants.0.seeds.1.nll_stderr: Extra inputs are not permitted" in message
    raw = json.loads(COMMITTED.with_suffix(".json").read_text(encoding="utf-8"))
    raw["variants"][0]["comparison"]["verdict"] = "inside"  # not one of VERDICTS
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=r"variants\.0\.comparison\.verdict: Input should be"):
        read_result(path)


def test_what_a_run_lacks_stays_out_of_the_json_and_one_seed_gives_no_interval():
    lone = seed_result(0, cost=None, early_stopping=None, val_elbo_last=None)
    pair = [seed_result(1, 229.1, extended="extends studies/old"), seed_result(2, 229.3)]
    doc = result(paper_config(), [VariantRuns("alone", {"k": 1}, published(EXEMPLAR), [lone]),
                                  VariantRuns("unpublished", {"k": 5}, None, pair)],
                 {"cpu": "Test CPU"}, "2026-12-02", "a note")
    raw = json.loads(json.dumps(doc.model_dump(mode="json")))
    alone, unpublished = raw["variants"]
    assert "cost" not in alone["seeds"][0] and "extended" not in alone["seeds"][0]
    assert alone["seeds"][0]["early_stopping"] is None and alone["seeds"][0]["val_elbo_last"] is None
    assert unpublished["seeds"][0]["extended"] == "extends studies/old"
    assert "published" not in unpublished and "comparison" not in unpublished
    assert alone["comparison"]["verdict"] == "inconclusive" and math.isnan(alone["nll"]["half_width"])
    back = PaperResult.model_validate(raw)
    md = markdown(back)
    assert md == markdown(doc)
    assert "| alone | 233.60 ± n/a (1) | 0.76 | 0.003 | -237.30 ± n/a | 228.70 ± 0.15 | 4.90 " \
           "[n/a, n/a] | **inconclusive** (fewer than two seeds: no interval over seeds) |" in md
    assert "| unpublished | 229.20 ± 1.27 (2) | 0.76 | 0.003 | -232.90 ± 1.27 | — | — | — |" in md
    assert "| alone | 0 | 233.60 | -237.30 | — | 40 | no | 39/40 | 8.2 | 13.4 | 21.7 | n/a |" in md
    assert "| unpublished | 1 | 229.10 | -232.80 | 39 | 40 | no | 39/40 | 8.2 | 13.4 | 21.7 | " \
           "17.5 |" in md
    assert "\nNote: extends studies/old.\n" in md and "## Likely cause" not in md
    assert "## Remaining protocol differences" not in md and md.endswith("binarized once.\n")


def test_the_paper_report_command_writes_the_committed_files_from_the_seeds_files(tmp_path,
                                                                                   capsys):
    """`python -m pipelines.paper report` on the seeds' own files (metrics.json, cost.json and
    the training history, as the runner leaves them) writes the committed JSON and markdown,
    byte for byte; a metrics.json with a renamed field stops it in one line naming both."""
    import yaml

    from pipelines import paper as paper_stage

    doc = json.loads(COMMITTED.with_suffix(".json").read_text(encoding="utf-8"))
    for m in doc["variants"][0]["seeds"]:
        folder = tmp_path / "study" / "runs" / "vae-fashion-mnist" / f"seed{m['seed']}" / "paper"
        folder.mkdir(parents=True)
        m = dict(m)
        (folder / "cost.json").write_text(json.dumps(m.pop("cost")))
        best = {int(e): x for e, x in m.pop("val_elbo_best_by_epoch").items()}  # every 5 epochs
        history = [{"val_elbo": best.get(e, best[5 * math.ceil(e / 5)] - 1.0)}
                   for e in range(1, 41)]
        (folder.parent / "train").mkdir()
        (folder.parent / "train" / "train.json").write_text(json.dumps({"history": history}))
        (folder / "metrics.json").write_text(json.dumps(m))
    raw = yaml.safe_load((ROOT / "presets" / "paper-fmnist.yaml").read_text())
    raw["paper"]["differences"] = [d for d in doc["differences"] if not d.startswith("Override")]
    preset = tmp_path / "paper-fmnist.yaml"
    preset.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    overrides = ["train.vae.epochs=40", "train.vae.kl_warmup_epochs=10"]
    paper_stage.report(preset, study_dir=tmp_path / "study", out=out, set_=overrides)
    for ext in ("json", "md"):
        assert (out / f"paper-fmnist.{ext}").read_bytes() == COMMITTED.with_suffix(
            f".{ext}").read_bytes(), ext
    metrics = tmp_path / "study" / "runs" / "vae-fashion-mnist" / "seed1" / "paper" / "metrics.json"
    row = json.loads(metrics.read_text())
    row["nll_mc_error"] = row.pop("nll_mc_se")
    metrics.write_text(json.dumps(row))
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        paper_stage.report(preset, study_dir=tmp_path / "study", out=out, set_=overrides)
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1
    assert str(metrics) in err and "nll_mc_se: Field required" in err and "nll_mc_error" in err

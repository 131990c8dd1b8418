"""``benchmarks/evaluate_backends.py``'s pure parts: the one-cell study, the verdicts and the
page (the timing itself runs in ``make bench-evaluate``, not here)."""

from __future__ import annotations

import math

import pytest
import yaml

from benchmarks import evaluate_backends as eb
from benchmarks.evaluate_backends import MODES
from benchmarks.services import ROOT

PARAMS = (ROOT / "params.yaml").read_text()


def test_one_cell_keeps_the_study_s_sizes_and_refuses_an_unknown_cell():
    raw = yaml.safe_load(eb.one_cell(PARAMS, "iwae", "digits"))
    default = yaml.safe_load(PARAMS)
    assert raw["study"]["models"] == ["iwae"] and raw["study"]["datasets"] == ["digits"]
    assert raw["study"]["seeds"] == [0] and raw["study"]["linear"] == []
    assert raw["train"] == default["train"] and raw["evaluate"] == default["evaluate"]
    assert yaml.safe_load(eb.with_backend(PARAMS, "compile"))["study"]["backend"] == "compile"
    with pytest.raises(SystemExit, match="error: model 'vea' is not in the study; valid "
                                         "choices: vae, beta_vae"):
        eb.one_cell(PARAMS, "vea", "digits")


def test_compile_pays_only_where_the_whole_interval_is_above_one():
    seconds = {"eager": [10.0, 11.0, 9.0, 10.5],
               "compile, cold cache": [14.0, 15.0, 13.0, 14.2],   # slower every time
               "compile, warm cache": [9.0, 12.0, 8.0, 11.0]}     # faster, then slower
    up = eb.speedups(seconds)
    cold, warm = up["compile, cold cache"], up["compile, warm cache"]
    assert cold["verdict"] == "does not pay" and cold["high"] < 1.0
    assert warm["verdict"] == "undecided" and warm["low"] < 1.0 < warm["high"]
    ratios = [a / b for a, b in zip(seconds["eager"], seconds["compile, warm cache"],
                                    strict=True)]
    assert warm["ratio"] == pytest.approx(math.exp(sum(map(math.log, ratios)) / 4))
    seconds["compile, cold cache"] = [5.0, 5.4, 4.6, 5.1]
    assert eb.speedups(seconds)["compile, cold cache"]["verdict"] == "pays"


def test_the_page_has_a_row_per_mode_with_its_times():
    seconds = {m: [10.0 + i, 11.0 + i, 12.0 + i] for i, m in enumerate(MODES)}
    result = {"date": "2026-12-03", "device": "a CPU", "cores": 2, "torch": "2.13.0",
              "load_average": [1.0, 1.5], "gemm_probe_us": [250.0, 260.0, 255.0],
              "cell": "vae-fashion-mnist", "params": "params.yaml", "iw_k": 500,
              "iw_points": 1000, "repeats": 3,
              "seconds": seconds, "speedup": eb.speedups(seconds)}
    text = eb.render(result)
    assert "| eager | 11.0 | 1.00 | 10.0, 11.0, 12.0 |" in text
    assert "| compile, warm cache | 13.0 | 0.85 [" in text and "does not pay" in text
    assert "`evaluate@vae-fashion-mnist-0` of `params.yaml`" in text
    assert "K = 500 on 1000 test points" in text

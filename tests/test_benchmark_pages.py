"""Each committed benchmark page is what its module's ``render`` makes of the json committed
beside it: no number on a page is stale or typed by hand, and a page of an older run still
renders as it was. (train_throughput, whose ratios are recomputed first, is checked in
``test_bench_loops.py``; scaling, whose page gathers every part, in its own test file.)"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

PAGES = Path(__file__).resolve().parents[1] / "reports" / "benchmarks"
MODULES = ("step_costs", "data_path", "evaluate_backends", "is_nll", "dvc_overhead")


@pytest.mark.parametrize("name", MODULES)
def test_the_committed_pages_are_rendered_from_the_committed_numbers(name):
    render = importlib.import_module(f"benchmarks.{name}").render
    pages = sorted(PAGES.glob(f"{name}-*.json"))
    assert pages, f"no committed {name} page"
    for path in pages:
        assert render(json.loads(path.read_text())) == path.with_suffix(".md").read_text(), \
            path.name

"""Power of the model checks, measured by planting bugs: every class is caught by a named
model check, and the clean copy passes every check (the harness, on the micro study)."""

from __future__ import annotations

import pytest
from bugs import BUGS
from harness import run_micro_study, verdict

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clean():
    return run_micro_study(None)


def test_the_clean_copy_passes_every_check(clean):
    assert clean["crashed"] is None
    failed = [f"{c['name']} [{c['run']}]" for c in clean["checks"] if not c["passed"]]
    assert not failed
    assert {c["category"] for c in clean["checks"]} == {"model", "self-test"}


@pytest.mark.parametrize("bug", BUGS, ids=[b.cls for b in BUGS])
def test_planted_bug_is_caught_by_a_named_check(bug):
    row = verdict(bug, run_micro_study(bug))
    assert row["caught"], row
    assert row["crashed"] is None, row  # caught by a check, not by a crash

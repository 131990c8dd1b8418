"""Scratch copies of the project for the tests that run DVC, Ray or several processes on the
real stage commands (the copy itself: benchmarks/services.py), and a small study for them."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from benchmarks.services import project_env as env_for
from benchmarks.services import scratch_project as _scratch_project

ROOT = Path(__file__).resolve().parents[1]
__all__ = ["env_for", "micro_params", "run", "scratch_project"]


def micro_params(**study: Any) -> dict[str, Any]:
    """presets/tiny.yaml cut to one model on digits, one seed and two epochs (seconds a stage)."""
    raw = yaml.safe_load((ROOT / "presets" / "tiny.yaml").read_text())
    raw["study"].update({"seeds": [0], "models": ["vae"], "datasets": ["digits"],
                         "linear": [], **study})
    raw["train"]["vae"]["epochs"] = 2
    raw["sweep"]["betas"] = [1.0]
    raw["data"] = {"digits": {}, "linear-gaussian": raw["data"]["linear-gaussian"]}
    return raw


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600,
        check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=timeout, stdin=subprocess.DEVNULL)
    if check:
        assert out.returncode == 0, (f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n"
                                     f"{out.stderr[-3000:]}")
    return out


def scratch_project(work: Path, params: dict[str, Any]) -> dict[str, str]:
    """The project's code in ``work`` with ``params`` as params.yaml, in git with DVC."""
    return _scratch_project(work, yaml.safe_dump(params, sort_keys=False))

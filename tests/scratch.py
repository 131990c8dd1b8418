"""A scratch copy of the project (code, dvc.yaml, a params file) in a git + DVC repository, for
the tests that run DVC, Ray or several processes on the real stage commands."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def micro_params(**study: Any) -> dict[str, Any]:
    """presets/tiny.yaml cut to one model on digits, one seed and two epochs (seconds a stage)."""
    raw = yaml.safe_load((ROOT / "presets" / "tiny.yaml").read_text())
    raw["study"].update({"seeds": [0], "models": ["vae"], "datasets": ["digits"],
                         "linear_datasets": [], **study})
    raw["train"]["vae"]["epochs"] = 2
    raw["sweep"]["betas"] = [1.0]
    raw["data"] = {"digits": {}, "linear-gaussian": raw["data"]["linear-gaussian"]}
    return raw


def env_for(work: Path, **extra: str) -> dict[str, str]:
    """The environment a user's shell would have in ``work``: the venv first on PATH, no
    tracking server, and nothing that points at another checkout."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "VAEBENCH_NO_TRACK": "1",
           "TORCHINDUCTOR_CACHE_DIR": str(ROOT / ".cache" / "inductor"), **extra}
    for key in ("MLFLOW_TRACKING_URI", "VAEBENCH_ROOT", "PYTHONPATH", "VAEBENCH_THREADS"):
        if key not in extra:
            env.pop(key, None)
    return env


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600,
        check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=timeout, stdin=subprocess.DEVNULL)
    if check:
        assert out.returncode == 0, (f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n"
                                     f"{out.stderr[-3000:]}")
    return out


def scratch_project(work: Path, params: dict[str, Any]) -> dict[str, str]:
    """Copy the project's code and dvc.yaml into ``work`` with ``params`` as params.yaml, make it
    a git repository with one commit and DVC initialised; return the environment to run in."""
    for name in ("vaebench", "kernels", "pipelines"):
        shutil.copytree(ROOT / name, work / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(ROOT / name, work / name)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = env_for(work)
    run(["git", "init", "-q"], work, env)
    run(["git", "config", "user.email", "tests@vaebench"], work, env)
    run(["git", "config", "user.name", "tests"], work, env)
    run(["dvc", "init", "-q"], work, env)
    run(["git", "add", "-A"], work, env)
    run(["git", "commit", "-q", "-m", "scratch project"], work, env)
    return env

"""What every stage entry point shares: paths, params, errors, the tracker."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vaebench.config import ConfigError, Params, load_params

ROOT = Path(os.environ.get("VAEBENCH_ROOT", ".")).resolve()
DATA = ROOT / "data"
RUNS = ROOT / "runs"
REPORTS = ROOT / "reports"


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def params_or_exit(path: str | Path = "params.yaml") -> Params:
    try:
        return load_params(ROOT / path)
    except ConfigError as err:
        fail(str(err))
        raise  # unreachable


def guarded(fn: Callable[[], Any]) -> Any:
    """Run ``fn``; turn configuration and data errors into one-line messages and exit 2."""
    try:
        return fn()
    except (ConfigError, ValueError, FileNotFoundError) as err:
        fail(str(err).splitlines()[0] if str(err) else type(err).__name__)


def setup_torch(params: Params) -> None:
    import torch

    import kernels

    if params.study.threads:
        torch.set_num_threads(params.study.threads)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(ROOT / ".cache" / "inductor"))
    kernels.set_default_backend(params.study.backend)


def tracker_for(params: Params, enabled: bool = True):
    from vaebench.tracking import MLflowTracker, NullTracker

    if not enabled or os.environ.get("VAEBENCH_NO_TRACK") == "1":
        return NullTracker()
    return MLflowTracker(params.study.name, ROOT)


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def load_bundle(name: str):
    from vaebench import data

    path = DATA / name
    if not (path / "manifest.json").exists():
        raise FileNotFoundError(f"{path}: dataset {name!r} is not prepared; run "
                                f"`dvc repro data@{name}` or `python -m pipelines.data {name}`")
    return data.load(path)


def dataset_checksum(bundle) -> str:
    """The SHA-256 of the prepared arrays, as the dataset's manifest records it."""
    return bundle.manifest.get("arrays", {}).get("sha256", "")

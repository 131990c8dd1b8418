"""What every stage entry point shares: paths, params, errors, the tracker."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vaebench.cells import Cell, find_cell
from vaebench.config import ConfigError, Params, load_params

ROOT = Path(os.environ.get("VAEBENCH_ROOT", ".")).resolve()
DATA = ROOT / "data"
RUNS = ROOT / "runs"
REPORTS = ROOT / "reports"
TRACKING = ROOT / ".cache" / "tracking"  # MLflow run ids per run: not a stage output
# This process's share of the cores, set by `vaebench queue` and `vaebench sweep` for the stages
# their workers run (N workers on C cores: C // N threads each); it caps study.threads.
THREADS_ENV = "VAEBENCH_THREADS"


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
    """Run ``fn``; turn configuration, data and tracking errors into one line and exit 2."""
    from vaebench.tracking import TrackingUnavailable

    try:
        return fn()
    except (ConfigError, ValueError, FileNotFoundError, TrackingUnavailable) as err:
        fail(str(err).splitlines()[0] if str(err) else type(err).__name__)


def cell_or_exit(params: Params, model: str, dataset: str, seed: int,
                 beta: str | None, latent_dim: int | None = None) -> Cell:
    return guarded(lambda: find_cell(params, model, dataset, seed, beta, latent_dim))


def setup_torch(params: Params) -> None:
    import torch

    import kernels

    threads = params.study.threads
    share = os.environ.get(THREADS_ENV)
    if share:
        if not share.isdigit() or int(share) < 1:
            fail(f"${THREADS_ENV}: expected a positive number of threads, got {share!r}")
        threads = min(threads or int(share), int(share))
    if threads:
        torch.set_num_threads(threads)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(ROOT / ".cache" / "inductor"))
    kernels.set_default_backend(params.study.backend)


def tracker_for(params: Params, enabled: bool = True):
    """The study's MLflow tracker, checked before any work; a NullTracker when tracking is off
    (``--no-track`` or ``VAEBENCH_NO_TRACK=1``)."""
    from vaebench.background_tracker import BackgroundTracker
    from vaebench.tracking import NO_TRACK_ENV, NullTracker

    if not enabled or os.environ.get(NO_TRACK_ENV) == "1":
        return NullTracker()
    return guarded(lambda: BackgroundTracker(params.study.name, ROOT))


def tracking_file(cell: Cell) -> Path:
    return TRACKING / cell.name / f"seed{cell.seed}.json"


def load_bundle(name: str):
    """The prepared dataset ``name``; a missing or unreadable one is a one-line error that
    says which command rebuilds it."""
    from vaebench import data

    path = DATA / name
    if not (path / "manifest.json").exists():
        raise FileNotFoundError(f"{path}: dataset {name!r} is not prepared; run "
                                f"`dvc repro data@{name}` or `python -m pipelines.data {name}`")
    try:
        return data.load(path)
    except Exception as err:  # a truncated npz, a bad checksum, broken JSON, ...
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise ValueError(f"{path}: dataset {name!r} cannot be read ({reason}); rebuild it with "
                         f"`dvc repro -f data@{name}`") from None


def dataset_checksum(bundle) -> str:
    """The SHA-256 of the prepared arrays, as the dataset's manifest records it."""
    return bundle.manifest.get("arrays", {}).get("sha256", "")

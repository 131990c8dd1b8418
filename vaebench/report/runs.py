"""What the train and evaluate stages wrote for each run, read back through the typed contract.

``read_runs`` is the one reader of ``runs/``: every declared run must have its folder, its
``RunMetrics`` (validated), its check records, its per-point values and its training record;
anything missing or malformed is a one-line error naming the file and the stage to run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from vaebench.cells import Cell
from vaebench.io import read_json
from vaebench.results import POINTS_FILE, RunMetrics

PICTURES = ("samples", "reconstructions", "traversals", "factor_traversals", "latents")


@dataclass
class RunData:
    """One run of the study as its stages wrote it."""

    cell: Cell
    metrics: RunMetrics
    records: list[dict[str, Any]]
    train: dict[str, Any]                      # train.json: history, config, timings, machine
    points: dict[str, np.ndarray]              # per-point nll and elbo (paired comparisons)
    eval_seconds: float = float("nan")
    pictures: dict[str, Path] = field(default_factory=dict)


def cell_label(cell: Cell) -> str:
    """A run's label in tables and legends: the model, with beta for the sweep's runs."""
    return cell.model if cell.beta is None else f"{cell.model} β={cell.beta:g}"


def _metrics(path: Path, run: str) -> RunMetrics:
    raw = read_json(path, f"run {run!r} is not evaluated; run its evaluate stage")
    try:
        metrics = RunMetrics.model_validate(raw)
    except ValidationError as err:
        e = err.errors()[0]
        where = ".".join(str(p) for p in e["loc"])
        raise ValueError(f"{path}: {where}: {e['msg']} (written by another version of the "
                         "evaluate stage? rerun it)") from None
    if metrics.run != run:
        raise ValueError(f"{path}: belongs to run {metrics.run!r}, expected {run!r}")
    return metrics


def read_runs(runs_dir: Path, cells: Sequence[Cell]) -> list[RunData]:
    """Every declared run's files; one line naming the runs whose folder is missing."""
    missing = [c.run for c in cells if not (runs_dir / c.run).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} declared run(s) have no folder under {runs_dir}: "
            f"{', '.join(missing)}; run their train and evaluate stages (`dvc repro`) first")
    runs = []
    for c in cells:
        folder = runs_dir / c.run
        metrics = _metrics(folder / "eval" / "metrics.json", c.run)
        records = read_json(folder / "eval" / "checks.json",
                            f"run {c.run!r} is not evaluated; run its evaluate stage")
        if not isinstance(records, list):
            raise ValueError(f"{folder / 'eval' / 'checks.json'}: expected a list of check "
                             f"records, got {type(records).__name__}")
        train = read_json(folder / "train" / "train.json",
                          f"run {c.run!r} is not trained; run its train stage")
        points_path = folder / "eval" / POINTS_FILE
        if not points_path.is_file():
            raise FileNotFoundError(f"{points_path}: missing; rerun the evaluate stage of "
                                    f"{c.run!r}")
        with np.load(points_path, allow_pickle=False) as npz:
            points = {key: npz[key] for key in npz.files}
        timing = folder / "eval" / "timing.json"
        eval_seconds = float(read_json(timing)["stage_seconds"]) if timing.exists() else np.nan
        pictures = {name: folder / "figures" / f"{name}.png" for name in PICTURES
                    if (folder / "figures" / f"{name}.png").is_file()}
        runs.append(RunData(c, metrics, records, train, points, eval_seconds, pictures))
    return runs

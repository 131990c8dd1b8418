"""The study's plot data for DVC: training curves and rate-distortion points as CSV files.

``dvc plots show`` and ``dvc plots diff`` draw them with the templates in ``.dvc/plots/``, as
``dvc.yaml``'s top-level ``plots`` declares (one chart per file):

- ``reports/plots/{elbo,recon,kl}/<cell>.csv``: the per-epoch ELBO, reconstruction term
  E_q log p(x|z) and KL(q(z|x) || p(z)) of every seed of a cell, on the training minibatches
  (mean over the epoch) and on the validation split (after the epoch), in nats per point. Columns
  ``epoch, seed, split, series, <quantity>``; ``series`` ("seed0 val") is one curve.
- ``reports/plots/rate_distortion/<dataset>.csv``: one point per run on the test set, rate
  R = E KL(q(z|x) || p(z)) against distortion D = -E_q log p(x|z), so that ELBO = -(D + R)
  (Alemi et al. 2018, "Fixing a Broken ELBO", ICML, Eq. 4-6). Columns
  ``run, cell, seed, rate, distortion, elbo``. Runs on one dataset share a plane: the bound
  D + R >= H (their Eq. 7) depends on the data only.

The report stage calls ``write_plots``; every file is written into a fresh folder that replaces
the old one in one rename.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from vaebench.cells import Cell
from vaebench.io import atomic_write_dir

QUANTITIES = ("elbo", "recon", "kl")  # the objective's terms, as train.json's history names them
SPLITS = ("train", "val")
RATE_DISTORTION = "rate_distortion"


@dataclass(frozen=True)
class RunCurves:
    """One run's per-epoch history: train.json's ``history`` rows (``train_elbo``, ...)."""

    cell: Cell
    history: Sequence[Mapping[str, float]]


@dataclass(frozen=True)
class RatePoint:
    """One run in the rate-distortion plane, from its test-set KL and reconstruction term."""

    cell: Cell
    rate: float
    distortion: float

    @classmethod
    def of(cls, cell: Cell, kl: float, recon: float) -> RatePoint:
        """R = KL, D = -E log p(x|z) (Alemi et al. 2018, Eq. 5-6)."""
        return cls(cell, float(kl), -float(recon))


def curve_frames(runs: Iterable[RunCurves]) -> dict[tuple[str, str], pd.DataFrame]:
    """{(quantity, cell name): the curves of every seed of the cell}, seeds in the given order."""
    rows: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        for i, entry in enumerate(run.history):
            for quantity in QUANTITIES:
                for split in SPLITS:
                    key = f"{split}_{quantity}"
                    if key not in entry:
                        raise ValueError(f"run {run.cell.run!r}: history row {i} has no {key!r} "
                                         f"(has {', '.join(sorted(entry))})")
                    rows.setdefault((quantity, run.cell.name), []).append({
                        "epoch": int(entry["epoch"]), "seed": run.cell.seed, "split": split,
                        "series": f"seed{run.cell.seed} {split}", quantity: float(entry[key])})
    return {key: pd.DataFrame(value) for key, value in rows.items()}


def rate_distortion_frames(points: Iterable[RatePoint]) -> dict[str, pd.DataFrame]:
    """{dataset: one row per run on it}."""
    rows: dict[str, list[dict]] = {}
    for p in points:
        rows.setdefault(p.cell.dataset, []).append({
            "run": p.cell.run, "cell": p.cell.name, "seed": p.cell.seed, "rate": p.rate,
            "distortion": p.distortion, "elbo": -(p.rate + p.distortion)})
    return {dataset: pd.DataFrame(value) for dataset, value in rows.items()}


def write_plots(out_dir: Path, curves: Iterable[RunCurves], points: Iterable[RatePoint]
                ) -> list[Path]:
    """Write every plot file under ``out_dir`` (replacing it whole); return their paths."""
    files: dict[str, pd.DataFrame] = {
        f"{quantity}/{cell}.csv": frame for (quantity, cell), frame in curve_frames(curves).items()}
    files.update({f"{RATE_DISTORTION}/{dataset}.csv": frame
                  for dataset, frame in rate_distortion_frames(points).items()})

    def fill(folder: Path) -> None:
        for rel, frame in files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(folder / rel, index=False)

    atomic_write_dir(Path(out_dir), fill)
    return [Path(out_dir) / rel for rel in sorted(files)]

"""Experiment tracking behind a small interface; MLflow is the one real implementation.

The default store is a SQLite file in the project folder (``sqlite:///<root>/mlflow.db``,
artifacts in ``<root>/mlruns``); ``MLFLOW_TRACKING_URI`` (a server URI, another database)
overrides it. ``NullTracker`` records in memory, for tests and ``--no-track`` runs.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Protocol

from vaebench import __version__


class Tracker(Protocol):
    def start(self, run_name: str, params: dict[str, Any], tags: dict[str, str],
              resume_id: str | None = None) -> str: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def end(self, status: str = "FINISHED") -> None: ...


class NullTracker:
    """Keeps what it is told in memory; tests read it back."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.tags: dict[str, str] = {}
        self.metrics: list[tuple[int | None, dict[str, float]]] = []
        self.artifacts: list[str] = []
        self.status: str | None = None

    def start(self, run_name, params, tags, resume_id=None) -> str:
        self.params.update(params)
        self.tags.update(tags)
        return resume_id or "null-run"

    def log_metrics(self, metrics, step=None) -> None:
        self.metrics.append((step, dict(metrics)))

    def log_artifact(self, path, artifact_path=None) -> None:
        self.artifacts.append(str(path))

    def end(self, status="FINISHED") -> None:
        self.status = status


def default_tracking_uri(root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root.resolve()}/mlflow.db"


class MLflowTracker:
    """One MLflow experiment per study, one run per (model, dataset)."""

    def __init__(self, experiment: str, root: Path, tracking_uri: str | None = None):
        import mlflow
        from mlflow.tracking import MlflowClient

        self._mlflow = mlflow
        self.uri = tracking_uri or default_tracking_uri(root)
        mlflow.set_tracking_uri(self.uri)
        self.client = MlflowClient(self.uri)
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            local = self.uri.startswith("sqlite:") and "MLFLOW_TRACKING_URI" not in os.environ
            loc = (root.resolve() / "mlruns").as_uri() if local else None
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=loc)
        else:
            self.experiment_id = exp.experiment_id
        self.run_id: str | None = None

    def start(self, run_name, params, tags, resume_id=None) -> str:
        if resume_id is not None:
            try:
                run = self.client.get_run(resume_id)
                if run.info.experiment_id == self.experiment_id:
                    self.run_id = resume_id
                    self.client.update_run(resume_id, status="RUNNING")
            except Exception:  # the run lives in another store: start a new one
                self.run_id = None
        if self.run_id is None:
            run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags)
            self.run_id = run.info.run_id
            if params:
                from mlflow.entities import Param

                self.client.log_batch(self.run_id, params=[
                    Param(k, str(v)[:6000]) for k, v in sorted(params.items())])
        else:
            for k, v in tags.items():
                self.client.set_tag(self.run_id, k, v)
        return self.run_id

    def log_metrics(self, metrics, step=None) -> None:
        import time

        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[
            Metric(k, float(v), ts, step or 0) for k, v in metrics.items()])

    def log_artifact(self, path, artifact_path=None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def end(self, status="FINISHED") -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, status=status)


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def standard_tags(root: Path, dataset_checksum: str, backend: str, run_id: str) -> dict[str, str]:
    return {"git_commit": git_commit(root), "dataset_sha256": dataset_checksum,
            "vaebench_version": __version__, "kernel_backend": backend, "vaebench_run": run_id}


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1} for MLflow params."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out

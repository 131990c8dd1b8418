"""Experiment tracking behind a small interface; MLflow is the one real implementation.

The default store is a SQLite file in the project folder (``sqlite:///<root>/mlflow.db``,
artifacts in ``<root>/mlruns``); ``MLFLOW_TRACKING_URI`` (a server URI, another database)
overrides it. ``NullTracker`` records in memory, for tests and ``--no-track`` runs.

The store is checked before any work (``check_tracking_uri``): a server that does not answer
within a few seconds is a one-line ``TrackingUnavailable`` error that says how to proceed, never
a silent wait. One MLflow run per run of the study (``vae-digits/seed0``), tagged with its cell
and seed so that the UI's "group by" aggregates a cell's seeds. What a run holds, as MLflow's UI
shows it:

- per-epoch metrics ``{train,val}_{elbo,recon,kl}`` at step = epoch (one key per quantity and
  split in every run, so the compare view draws two runs' curves on one chart), and the test
  metrics ``test_*`` of the evaluate stage;
- dataset inputs: the splits it read (``digits/train``, context ``train``; ``/val``,
  ``validation``; ``/test``, ``test``), with the SHA-256 of the prepared arrays from the
  dataset's manifest as digest (its first 36 characters, MLflow's limit; the whole in the input
  tag ``sha256``);
- artifacts: the evaluate stage's figures (``figures/*.png``), metrics.json and train.json;
- a duration that covers the stages' own work, not the time between them (``MLflowTracker.end``).
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

import numpy as np

from vaebench import __version__

CHECK_TIMEOUT_S = 2.0
CHECK_TRIES = 2
# Bounded retries for calls made during a run: a server that goes away fails the run in
# seconds (MLflow's defaults retry for minutes). A value the user sets wins.
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
               "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
NO_TRACK_ENV = "VAEBENCH_NO_TRACK"
SPLIT_CONTEXTS = {"train": "train", "val": "validation", "test": "test"}
DATASET_RACE_TRIES = 4  # a run that starts beside N others loses at most N - 1 races
DIGEST_CHARS = 36  # the longest digest MLflow stores (mlflow.utils.validation)


class TrackingUnavailable(RuntimeError):
    """The tracking store cannot be reached; the message is one line with the way out."""


@dataclass(frozen=True)
class DatasetSplit:
    """One split of a prepared dataset, as a run's MLflow dataset input."""

    dataset: str              # "digits"
    split: str                # a key of SPLIT_CONTEXTS
    sha256: str               # the manifest's SHA-256 of the prepared arrays file
    source: str               # that file's path
    features: np.ndarray
    targets: np.ndarray | None

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.split}"

    @property
    def context(self) -> str:
        return SPLIT_CONTEXTS[self.split]

    @property
    def digest(self) -> str:
        return self.sha256[:DIGEST_CHARS]


def dataset_splits(bundle, folder: Path, splits: tuple[str, ...]) -> list[DatasetSplit]:
    """The ``splits`` of a prepared dataset (``vaebench.data.Bundle``) read from ``folder``."""
    arrays = bundle.manifest.get("arrays", {})
    if not arrays.get("sha256") or not arrays.get("file"):
        raise ValueError(f"{folder}: the manifest of dataset {bundle.name!r} records no arrays "
                         f"file and SHA-256; rebuild it with `dvc repro -f data@{bundle.name}`")
    source = str(Path(folder).resolve() / arrays["file"])
    return [DatasetSplit(bundle.name, split, arrays["sha256"], source,
                         getattr(bundle, f"x_{split}"), getattr(bundle, f"y_{split}"))
            for split in splits]


class TrackingFailed(TrackingUnavailable):
    """The store failed during the run, after its bounded retries (one line; the MLflow error is
    its ``__cause__``)."""


class Tracker(Protocol):
    def start(self, run_name: str, params: dict[str, Any], tags: dict[str, str],
              resume_id: str | None = None, on_run: Any = None) -> str | None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_datasets(self, splits: list[DatasetSplit]) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def end(self, status: str = "FINISHED", seconds: float | None = None) -> None: ...


class NullTracker:
    """Keeps what it is told in memory; tests read it back."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.tags: dict[str, str] = {}
        self.metrics: list[tuple[int | None, dict[str, float]]] = []
        self.artifacts: list[str] = []
        self.datasets: list[DatasetSplit] = []
        self.status: str | None = None

    def start(self, run_name, params, tags, resume_id=None, on_run=None) -> str:
        self.params.update(params)
        self.tags.update(tags)
        run_id = resume_id or "null-run"
        if on_run is not None:
            on_run(run_id)
        return run_id

    def log_metrics(self, metrics, step=None) -> None:
        self.metrics.append((step, dict(metrics)))

    def log_datasets(self, splits) -> None:
        self.datasets.extend(splits)

    def log_artifact(self, path, artifact_path=None) -> None:
        self.artifacts.append(str(path))

    def end(self, status="FINISHED", seconds=None) -> None:
        self.status = status


def local_tracking_uri(root: Path) -> str:
    return f"sqlite:///{root.resolve()}/mlflow.db"


def default_tracking_uri(root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or local_tracking_uri(root)


def _unavailable(uri: str, reason: str, root: Path) -> TrackingUnavailable:
    return TrackingUnavailable(
        f"MLflow tracking store {uri} is unreachable ({reason}); to proceed, run without "
        f"tracking ({NO_TRACK_ENV}=1, or --no-track) or unset MLFLOW_TRACKING_URI to use the "
        f"local store {local_tracking_uri(root)}")


def one_line_reason(err: BaseException) -> str:
    """What went wrong, in one line: a refused connection's own reason, not urllib's wrapper."""
    if isinstance(err, urllib.error.URLError) and not isinstance(err, urllib.error.HTTPError):
        err = err.reason if isinstance(err.reason, BaseException) else err
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return text.splitlines()[0]


def check_tracking_uri(uri: str, root: Path, timeout: float = CHECK_TIMEOUT_S,
                       tries: int = CHECK_TRIES) -> None:
    """Raise ``TrackingUnavailable`` unless the store at ``uri`` answers within ``tries`` x
    ``timeout`` seconds: an HTTP server's ``/health`` (any HTTP answer counts), a database's
    connection, or a SQLite file's folder."""
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        reason = "no answer"
        for attempt in range(tries):
            try:
                with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
                    return
            except urllib.error.HTTPError:
                return  # the server answered
            except (OSError, ValueError) as err:
                reason = one_line_reason(err)
            if attempt + 1 < tries:
                time.sleep(0.25)
        raise _unavailable(uri, reason, root)
    if scheme == "sqlite":
        folder = Path(urlparse(uri).path).parent
        if not folder.is_dir():
            raise _unavailable(uri, f"folder {folder} does not exist", root)
        return
    if scheme.split("+")[0] in ("postgresql", "mysql", "mssql"):
        import sqlalchemy

        args = {"connect_timeout": int(timeout * tries)} if scheme.startswith(("postgres",
                                                                              "mysql")) else {}
        try:
            engine = sqlalchemy.create_engine(uri, connect_args=args)
            with engine.connect():
                pass
            engine.dispose()
        except Exception as err:  # the driver's own error classes vary
            raise _unavailable(uri, one_line_reason(err), root) from None
        return
    # other schemes (file stores, databricks, ...) are left to MLflow


class MLflowTracker:
    """One MLflow experiment per study, one run per run of the study."""

    def __init__(self, experiment: str, root: Path, tracking_uri: str | None = None,
                 checked: bool = False):
        self.uri = tracking_uri or default_tracking_uri(root)
        if not checked:
            check_tracking_uri(self.uri, root)
        for key, value in HTTP_LIMITS.items():
            os.environ.setdefault(key, value)
        import mlflow
        from mlflow.tracking import MlflowClient

        mlflow.set_tracking_uri(self.uri)
        self.client = MlflowClient(self.uri)
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            # the project's own store keeps its artifacts beside it, whatever the working
            # folder (mlflow.set_tracking_uri sets MLFLOW_TRACKING_URI: not a test of the user's)
            local = self.uri == local_tracking_uri(root)
            loc = (root.resolve() / "mlruns").as_uri() if local else None
            try:
                self.experiment_id = self.client.create_experiment(experiment,
                                                                   artifact_location=loc)
            except mlflow.exceptions.MlflowException as err:
                # runs that start together race to create it: the loser takes the winner's
                if err.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                self.experiment_id = self.client.get_experiment_by_name(experiment).experiment_id
        else:
            self.experiment_id = exp.experiment_id
        self.run_id: str | None = None
        self._started = time.time()
        self._end_time: int | None = None

    def start(self, run_name, params, tags, resume_id=None, on_run=None) -> str:
        """Open (or, with ``resume_id``, reopen) the run; ``on_run(run_id)`` is called once the
        run exists (the stage records the id there)."""
        self._started = time.time()
        if resume_id is not None:
            try:
                run = self.client.get_run(resume_id)
                if run.info.experiment_id == self.experiment_id:
                    self.run_id = resume_id
                    self._end_time = run.info.end_time
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
        if on_run is not None:
            on_run(self.run_id)
        return self.run_id

    def log_metrics(self, metrics, step=None) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[
            Metric(k, float(v), ts, step or 0) for k, v in metrics.items()])

    def log_datasets(self, splits) -> None:
        """Each split as a dataset input (``mlflow.data.from_numpy``: schema and profile from
        the arrays, digest from the manifest) with its context."""
        import mlflow.data
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        inputs = []
        for s in splits:
            with warnings.catch_warnings():  # MLflow registers two equal local-file sources
                warnings.filterwarnings("ignore", "The specified dataset source can be "
                                        "interpreted in multiple ways")
                ds = mlflow.data.from_numpy(s.features, source=s.source, targets=s.targets,
                                            name=s.name, digest=s.digest)
            inputs.append(DatasetInput(Dataset(**ds.to_dict()), tags=[
                InputTag(MLFLOW_DATASET_CONTEXT, s.context), InputTag("sha256", s.sha256)]))
        self._log_inputs_racing(inputs)

    def _log_inputs_racing(self, inputs) -> None:
        """``log_inputs``, again after a lost race. A dataset is one row per experiment, shared
        by its runs; runs that start together each find it missing and insert it, and all but
        one fail on its unique key. The call is one transaction, so a retry finds the row."""
        import mlflow

        for attempt in range(DATASET_RACE_TRIES):
            try:
                self.client.log_inputs(self.run_id, datasets=inputs)
                return
            except mlflow.exceptions.MlflowException as err:
                text = str(err).lower()
                if attempt + 1 == DATASET_RACE_TRIES or not any(
                        word in text for word in ("unique", "duplicate", "integrityerror")):
                    raise
                time.sleep(0.05 * (attempt + 1))

    def log_artifact(self, path, artifact_path=None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def end(self, status="FINISHED", seconds=None) -> None:
        """Close the run. A resumed run's duration grows by this stage's own work only: its end
        time moves from the previous stage's end by the seconds spent here."""
        if self.run_id is None:
            return
        spent = time.time() - self._started if seconds is None else seconds
        end = (int(time.time() * 1000) if self._end_time is None
               else self._end_time + int(spent * 1000))
        self.client.set_terminated(self.run_id, status=status, end_time=end)


def run_tags(root: Path, dataset_checksum: str, backend: str, cell, gemm: str) -> dict[str, str]:
    """Tags of one run: its cell, seed and model, the data checksum, and the machine."""
    from vaebench.machine import machine_info

    tags = {"vaebench_run": cell.run, "cell": cell.name, "seed": str(cell.seed),
            "model": cell.model, "dataset": cell.dataset, "dataset_sha256": dataset_checksum,
            "vaebench_version": __version__, "kernel_backend": backend}
    tags.update({f"machine.{k}": v for k, v in machine_info(root, gemm).items()})
    tags["git_commit"] = tags["machine.git_commit"]
    return tags


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

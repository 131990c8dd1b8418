"""Tracking against a real MLflow server over HTTP (the `MLFLOW_TRACKING_URI` path)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow_server import free_port, mlflow_server

from vaebench.tracking import MLflowTracker, flatten


@pytest.fixture
def server(tmp_path):
    with mlflow_server(f"sqlite:///{tmp_path}/server.db", tmp_path) as url:
        yield url


def test_runs_metrics_and_artifacts_reach_a_server(server, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    tracker = MLflowTracker("served-study", tmp_path)
    assert tracker.uri == server
    run_id = tracker.start("vae-digits", flatten({"train": {"lr": 0.001}}), {"git_commit": "x"})
    for epoch in (1, 2):
        tracker.log_metrics({"val_elbo": -30.0 + epoch}, step=epoch)
    artifact = tmp_path / "metrics.json"
    artifact.write_text("{}")
    tracker.log_artifact(artifact)
    tracker.end("FINISHED")
    from mlflow.tracking import MlflowClient

    first_end = MlflowClient(server).get_run(run_id).info.end_time
    time.sleep(1.0)  # the gap between the stages is not part of the run
    # resuming the same run (the evaluate stage) adds to it instead of opening another
    again = MLflowTracker("served-study", tmp_path)
    assert again.start("vae-digits", {}, {"stage": "evaluate"}, resume_id=run_id) == run_id
    again.log_metrics({"test_elbo": -29.5})
    again.end("FINISHED", seconds=1.5)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(server)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "vae-digits"
    assert run.data.params["train.lr"] == "0.001"
    assert run.data.tags["stage"] == "evaluate"
    history = client.get_metric_history(run_id, "val_elbo")
    assert [(m.step, m.value) for m in history] == [(1, -29.0), (2, -28.0)]
    assert run.data.metrics["test_elbo"] == -29.5
    assert [f.path for f in client.list_artifacts(run_id)] == ["metrics.json"]
    exp = client.get_experiment_by_name("served-study")
    assert len(client.search_runs([exp.experiment_id])) == 1
    # the duration counts each stage's own work: the evaluate stage added its 1.5 s only
    assert run.info.end_time == first_end + 1500


def _train_stage(tmp_path, uri: str) -> tuple[subprocess.CompletedProcess, float]:
    """The train stage against ``uri``, and the seconds it took past its own start-up: the
    same interpreter importing the stage's modules and MLflow, timed just before, so that a
    loaded machine (the other test process) does not count against the 10 s."""
    root = Path(__file__).resolve().parents[1]
    (tmp_path / "params.yaml").write_text((root / "presets" / "tiny.yaml").read_text())
    env = {**os.environ, "VAEBENCH_ROOT": str(tmp_path), "MLFLOW_TRACKING_URI": uri}
    env.pop("VAEBENCH_NO_TRACK", None)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import pipelines.train, mlflow"], cwd=root, env=env,
                   check=True, timeout=120)
    start_up = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pipelines.train", "vae", "digits", "--seed", "0"],
                         cwd=root, env=env, capture_output=True, text=True, timeout=120)
    return out, time.perf_counter() - t0 - start_up


def _assert_one_line_way_out(out: subprocess.CompletedProcess, uri: str, tmp_path) -> None:
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"error: MLflow tracking store {uri} is unreachable (")
    assert "VAEBENCH_NO_TRACK=1" in lines[0] and "unset MLFLOW_TRACKING_URI" in lines[0]
    assert f"sqlite:///{tmp_path.resolve()}/mlflow.db" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing written


def test_dead_server_fails_in_seconds_with_one_line(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    out, seconds = _train_stage(tmp_path, uri)
    _assert_one_line_way_out(out, uri, tmp_path)
    assert "Connection refused" in out.stderr
    assert seconds < 10


def test_server_that_never_answers_fails_in_seconds(tmp_path):
    with socket.socket() as listener:  # accepts connections (the kernel does) but never replies
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        uri = f"http://127.0.0.1:{listener.getsockname()[1]}"
        out, seconds = _train_stage(tmp_path, uri)
    _assert_one_line_way_out(out, uri, tmp_path)
    assert "timed out" in out.stderr
    assert seconds < 10


def test_local_store_keeps_artifacts_beside_it_whatever_the_working_folder(tmp_path,
                                                                           monkeypatch):
    """mlflow.set_tracking_uri sets MLFLOW_TRACKING_URI: the project's own store must still be
    told apart from a user's, or artifacts land in the working folder's mlruns/."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")  # unset now, and again afterwards
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    root, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    tracker = MLflowTracker("study", root)
    tracker.start("vae-digits/seed0", {}, {})
    picture = tmp_path / "samples.png"
    picture.write_bytes(b"\x89PNG")
    tracker.log_artifact(picture, "figures")
    tracker.end()
    assert [p.name for p in root.glob("mlruns/**/artifacts/figures/*")] == ["samples.png"]
    assert not (elsewhere / "mlruns").exists()


def test_runs_that_start_together_share_the_experiment_one_of_them_created(tmp_path,
                                                                          monkeypatch):
    """Four runs starting at once all see no experiment, and all but one lose the race to
    create it (MLflow: RESOURCE_ALREADY_EXISTS); each must take the one that exists."""
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    first = MLflowTracker("raced", tmp_path)  # the winner created it
    real = MlflowClient.get_experiment_by_name
    calls = []

    def stale_then_real(self, name):  # the loser looked before the winner created it
        calls.append(name)
        return None if len(calls) == 1 else real(self, name)

    monkeypatch.setattr(MlflowClient, "get_experiment_by_name", stale_then_real)
    second = MLflowTracker("raced", tmp_path)
    assert second.experiment_id == first.experiment_id and len(calls) == 2


def test_runs_that_log_one_dataset_together_each_get_it(tmp_path, monkeypatch):
    """A dataset is one row per experiment. Runs that start together each find it missing and
    insert it; the losers fail on its key (CI saw, through a server on PostgreSQL:
    'psycopg.errors.UniqueViolation ... "dataset_pk"'). Each loser must log it on a retry; any
    other failure is raised at once."""
    import mlflow
    import numpy as np
    from mlflow.tracking import MlflowClient

    from vaebench.tracking import DatasetSplit

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    split = DatasetSplit("digits", "train", "ab" * 32, str(tmp_path / "arrays.npz"),
                         np.zeros((4, 3), np.float32), None)
    tracker = MLflowTracker("raced", tmp_path)
    tracker.start("vae-digits/seed1", {}, {})
    real, calls = MlflowClient.log_inputs, []
    lost = ('API request failed with error code 400 != 200. Response body: (psycopg.errors.'
            'UniqueViolation) duplicate key value violates unique constraint "dataset_pk"')

    def lose_twice(self, run_id, datasets=None, models=None):
        calls.append(run_id)
        if len(calls) <= 2:
            raise mlflow.exceptions.MlflowException(lost, error_code="BAD_REQUEST")
        return real(self, run_id, datasets=datasets, models=models)

    monkeypatch.setattr(MlflowClient, "log_inputs", lose_twice)
    tracker.log_datasets([split])
    assert len(calls) == 3
    logged = tracker.client.get_run(tracker.run_id).inputs.dataset_inputs
    assert [(d.dataset.name, d.dataset.digest) for d in logged] == [("digits/train", "ab" * 18)]

    def refuse(self, run_id, datasets=None, models=None):
        calls.append(run_id)
        raise mlflow.exceptions.MlflowException("run is not active", error_code="BAD_REQUEST")

    monkeypatch.setattr(MlflowClient, "log_inputs", refuse)
    calls.clear()
    with pytest.raises(mlflow.exceptions.MlflowException, match="not active"):
        tracker.log_datasets([split])
    assert len(calls) == 1

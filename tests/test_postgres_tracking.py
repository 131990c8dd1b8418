"""MLflow on a real PostgreSQL (Debian's package, on loopback, its own data folder, a non-root
user) behind an `mlflow server` with its artifact root on disk: concurrent training runs lose
no metric, and a database that goes away mid-run fails the run in one line, keeps its
checkpoint, and the rerun completes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from scratch import env_for, micro_params

from benchmarks.services import Postgres, ServiceUnavailable, mlflow_server

ROOT = Path(__file__).resolve().parents[1]
SEEDS = [0, 1, 2, 3]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """(PostgreSQL, the MLflow server's URL) for the module; skipped, with the reason, where
    PostgreSQL cannot be installed or started."""
    pytest.importorskip("psycopg")
    work = tmp_path_factory.mktemp("store")
    try:
        pg = Postgres().__enter__()
    except ServiceUnavailable as err:
        print(f"skipped: {err}")
        pytest.skip(str(err))
    try:
        artifacts = work / "artifacts"
        artifacts.mkdir()
        with mlflow_server(pg.create_database("mlflow"), artifacts) as url:
            yield pg, url
    finally:
        pg.__exit__()


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A study folder: params with four seeds of the vae on digits, the data prepared."""
    work = tmp_path_factory.mktemp("project")
    raw = micro_params(seeds=SEEDS, name="pg-study")
    raw["train"]["vae"]["epochs"] = 12
    (work / "params.yaml").write_text(json.dumps(raw))
    env = env_for(work, VAEBENCH_ROOT=str(work))
    subprocess.run([sys.executable, "-m", "pipelines.data", "digits"], cwd=ROOT, env=env,
                   check=True, capture_output=True)
    return work


def train_cmd(seed: int) -> list[str]:
    return [sys.executable, "-m", "pipelines.train", "vae", "digits", "--seed", str(seed)]


def tracked_env(work: Path, url: str) -> dict[str, str]:
    env = env_for(work, VAEBENCH_ROOT=str(work), MLFLOW_TRACKING_URI=url, OMP_NUM_THREADS="1")
    env.pop("VAEBENCH_NO_TRACK")
    return env


def test_four_training_runs_logging_at_once_lose_no_metric(store, project):
    _, url = store
    env = tracked_env(project, url)
    procs = [subprocess.Popen(train_cmd(s), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for s in SEEDS]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert "error" not in err.lower() and "Traceback" not in err, err
    from mlflow.tracking import MlflowClient

    client = MlflowClient(url)
    exp = client.get_experiment_by_name("pg-study")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {f"vae-digits/seed{s}" for s in SEEDS}
    for seed in SEEDS:
        run = runs[f"vae-digits/seed{seed}"]
        assert run.info.status == "FINISHED"
        history = json.loads((project / "runs" / "vae-digits" / f"seed{seed}" / "train" /
                              "train.json").read_text())["history"]
        assert len(history) == 12
        # every metric of every epoch, as the run recorded it in train.json, bit for bit
        for key in (k for k in history[0] if k != "epoch"):
            logged = sorted((m.step, m.value)
                            for m in client.get_metric_history(run.info.run_id, key))
            assert logged == [(row["epoch"], row[key]) for row in history], (seed, key)


def test_a_database_that_goes_away_fails_the_run_and_the_rerun_resumes(store, project):
    pg, url = store
    env = tracked_env(project, url)
    seed = SEEDS[0]
    ckpt = project / "runs" / "vae-digits" / f"seed{seed}" / "train" / "checkpoint.pt"
    ckpt.unlink(missing_ok=True)
    raw = json.loads((project / "params.yaml").read_text())
    raw["train"]["vae"]["epochs"] = 400  # long enough to stop the database under it
    (project / "params.yaml").write_text(json.dumps(raw))
    proc = subprocess.Popen(train_cmd(seed), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not ckpt.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        pg.stop("immediate")  # the database goes away mid-run
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=300)
        failed_after = time.monotonic() - t0
    finally:
        if not (pg.datadir / "data" / "postmaster.pid").exists():
            pg.start()
    lines = err.strip().splitlines()
    assert proc.returncode == 1, err
    assert lines[-1].startswith(f"error: MLflow tracking store {url} failed during the run"), err
    assert "Traceback" not in err
    assert failed_after < 60
    kept = torch.load(ckpt, weights_only=False)["state"]["epoch"]
    assert 1 <= kept < 400 and f"checkpoint of epoch {kept} is kept" in lines[-1]
    rerun = subprocess.run(train_cmd(seed), cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    info = json.loads((ckpt.parent / "train.json").read_text())
    assert info["resumed_from_epoch"] == kept and info["epochs"] == 400
    from mlflow.tracking import MlflowClient

    client = MlflowClient(url)
    run = client.search_runs([client.get_experiment_by_name("pg-study").experiment_id],
                             filter_string="attributes.status = 'FINISHED'",
                             order_by=["attributes.start_time DESC"])[0]
    steps = {m.step for m in client.get_metric_history(run.info.run_id, "val_elbo")}
    assert set(range(kept + 1, 401)) <= steps  # the rerun's epochs reach the same MLflow run

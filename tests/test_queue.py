"""DVC's experiment queue on two workers: the project sets each worker's torch threads, and two
queued experiments give the results of the same experiments run one after the other."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
import torch
from scratch import micro_params, run, scratch_project

from pipelines import common
from vaebench.queue import (
    WORKER_DIR,
    QueueError,
    stop_workers,
    threads_per_worker,
    worker_env,
    worker_pids,
)

RUN = "runs/vae-digits/seed0/train"
# Two variations of one run; only its train stage runs (-s), forced past DVC's run cache (-f),
# so each experiment trains for real, once on the queue and once in the workspace.
EXPERIMENTS = {"base": [], "lr5": ["-S", "train.vae.lr=0.005"]}


@pytest.mark.parametrize(("workers", "cores", "share"),
                         [(1, 2, 2), (2, 2, 1), (3, 2, 1), (2, 8, 4), (3, 8, 2)])
def test_each_worker_gets_its_share_of_the_cores(workers, cores, share):
    assert threads_per_worker(workers, cores) == share


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_a_bad_worker_count_is_a_one_line_error(bad):
    with pytest.raises(QueueError, match=f"workers: expected a positive number, got {bad!r}"):
        threads_per_worker(bad, 2)


def test_workers_inherit_the_share_and_a_store_that_outlives_their_copies(tmp_path):
    env = worker_env(2, tmp_path, {"PATH": "/bin"})
    share = str(threads_per_worker(2))
    assert env[common.THREADS_ENV] == env["OMP_NUM_THREADS"] == share
    assert env["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    served = worker_env(2, tmp_path, {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"})
    assert served["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"


def test_setup_torch_applies_the_share_and_rejects_a_bad_one(monkeypatch):
    from vaebench.config import parse_params

    params = parse_params(micro_params(threads=2))
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv(common.THREADS_ENV, "1")
        common.setup_torch(params)  # the share caps study.threads
        assert torch.get_num_threads() == 1
        monkeypatch.setenv(common.THREADS_ENV, "two")
        with pytest.raises(SystemExit):
            common.setup_torch(params)
    finally:
        torch.set_num_threads(before)


def _result(work, rev: str) -> tuple[list[dict], dict[str, torch.Tensor], str]:
    """An experiment's training history (times left out), trained weights and thread count."""
    import dvc.api

    info = json.loads(dvc.api.read(f"{RUN}/train.json", repo=str(work), rev=rev))
    history = [{k: v for k, v in row.items() if k != "seconds"} for row in info["history"]]
    raw = dvc.api.read(f"{RUN}/checkpoint.pt", repo=str(work), rev=rev, mode="rb")
    weights = torch.load(io.BytesIO(raw), weights_only=False)["model"]
    return history, weights, info["machine"]["torch_threads"]


@pytest.mark.slow
def test_two_queued_experiments_on_two_workers_equal_the_same_run_in_turn(tmp_path):
    work = tmp_path / "project"
    work.mkdir()
    env = scratch_project(work, micro_params())
    run(["dvc", "repro", "data@digits"], work, env)  # experiments check the data out
    run(["git", "add", "-A"], work, env)
    run(["git", "commit", "-q", "-m", "data"], work, env)
    for name, args in EXPERIMENTS.items():
        run(["dvc", "exp", "run", "--queue", "-f", "-s", "-n", name, *args,
             "train@vae-digits-0"], work, env)
    try:
        out = run(["python", "-m", "vaebench.cli", "queue", "-j", "2"], work, env)
        left = worker_pids(work)  # vaebench queue ends its workers once the queue is empty
    finally:
        run(["dvc", "queue", "stop", "--kill"], work, env, check=False)
        stop_workers(work)
    assert left == []
    assert "started 2 queue worker(s), 1 torch thread(s) each" in out.stdout
    assert all(f"{name}: Success" in out.stdout for name in EXPERIMENTS), out.stdout
    logs = work / ".dvc" / "tmp" / "exps" / "celery"
    per_worker = [(logs / f"dvc-exp-worker-{n}.out").read_text().count("succeeded")
                  for n in (1, 2)]
    assert per_worker == [1, 1]  # one experiment on each worker, at the same time
    # the same experiments one after the other, in the workspace, with the same thread count
    for name, args in EXPERIMENTS.items():
        run(["dvc", "exp", "run", "-f", "-s", "-n", f"{name}-seq", *args,
             "train@vae-digits-0"], work, {**env, common.THREADS_ENV: "1"})
    results = {}
    for name in EXPERIMENTS:
        queued, in_turn = _result(work, name), _result(work, f"{name}-seq")
        assert queued[0] == in_turn[0]
        assert queued[1].keys() == in_turn[1].keys()
        assert all(torch.equal(queued[1][k], in_turn[1][k]) for k in queued[1])
        assert queued[2] == in_turn[2] == "1"  # the worker ran with its share of the cores
        results[name] = queued[0]
    assert results["base"] != results["lr5"]  # the variations are different experiments


def test_starting_the_queue_with_nothing_queued_is_a_one_line_error(tmp_path):
    env = scratch_project(tmp_path, micro_params())
    out = run(["python", "-m", "vaebench.cli", "queue", "-j", "2"], tmp_path, env, check=False)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: nothing is queued; queue experiments with `dvc exp run --queue -S KEY=VALUE` "
        "first"]


def _fake_worker(pidfile, *, ignore_term: bool = False, argv1: str = "queue-worker"):
    """A process standing in for ``dvc exp queue-worker`` (its argv names it), its pid in
    DVC's pidfile; with ``ignore_term`` it ignores SIGTERM, as a worker stuck in a task."""
    code = ("import signal, sys, time\n"
            + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_term else "")
            + "sys.stdout.write('up\\n'); sys.stdout.flush(); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, argv1], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline() == "up\n"  # its signal handler is in place
    pidfile.write_text(str(proc.pid))
    return proc


def test_stop_workers_ends_the_project_s_workers_and_nothing_else(tmp_path):
    folder = tmp_path / WORKER_DIR
    folder.mkdir(parents=True)
    polite = _fake_worker(folder / "dvc-exp-worker-1.pid")
    stuck = _fake_worker(folder / "dvc-exp-worker-2.pid", ignore_term=True)
    other = _fake_worker(folder / "dvc-exp-worker-3.pid", argv1="something-else")
    (folder / "dvc-exp-worker-4.pid").write_text("")  # half-written
    try:
        assert worker_pids(tmp_path) == [polite.pid, stuck.pid]
        killed = stop_workers(tmp_path, grace_s=1.0)
        assert killed == [stuck.pid]  # SIGTERM ended the first; the second needed SIGKILL
        assert polite.wait(5) == -15 and stuck.wait(5) == -9
        assert other.poll() is None  # not a queue worker: left alone
        assert worker_pids(tmp_path) == []
    finally:
        for proc in (polite, stuck, other):
            proc.kill()
            proc.wait()

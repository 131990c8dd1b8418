"""`vaebench sweep --ray` on a local Ray cluster (a head and one more node on this machine, on
loopback): its outputs are the bytes `dvc repro` writes, a worker killed mid-run is retried and
the run resumes from its checkpoint, a run another sweep holds is refused, DVC records the rest,
and an address that does not answer is a one-line error within 10 s."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from scratch import micro_params, run, scratch_project

from vaebench.cells import Cell
from vaebench.sweep import RunLocked, Stage, lock_path, run_stages

ray = pytest.importorskip("ray")
# Ray replaces 127.0.0.1 by the machine's outward address unless it runs as a one-machine
# install; the test cluster stays on loopback.
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
VAE = Cell("vae", "digits", 0)
LINEAR = Cell("linear", "linear-gaussian", 0, "sweep", 1.0)
TIMING = {"seconds", "train_seconds", "stage_seconds", "machine"}  # wall time and where it ran


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sweep_cmd(address: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "vaebench.cli", "sweep", "--ray", address, *args]


# -- without a cluster -------------------------------------------------------------------------
def _one_line_within_10_s(tmp_path, address: str) -> str:
    env = {**os.environ, **LOOPBACK, "VAEBENCH_ROOT": str(tmp_path)}
    (tmp_path / "params.yaml").write_text(json.dumps(micro_params()))
    t0 = time.perf_counter()
    out = subprocess.run(sweep_cmd(address), cwd=Path(__file__).parents[1], env=env,
                         capture_output=True, text=True, timeout=60)
    seconds = time.perf_counter() - t0
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2 and len(errors) == 1, out.stderr
    assert seconds < 10, seconds
    return errors[0]


def test_an_address_nothing_listens_on_is_a_one_line_error_within_10_s(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    line = _one_line_within_10_s(tmp_path, address)
    assert line == (f"error: Ray cluster at {address} is unreachable (Connection refused); "
                    "start one with `ray start --head` or pass --ray local")


def test_an_address_that_never_answers_is_a_one_line_error_within_10_s(tmp_path):
    with socket.socket() as listener:  # the kernel accepts, nobody speaks Ray
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        line = _one_line_within_10_s(tmp_path, address)
    assert line.startswith(f"error: Ray cluster at {address} did not answer as a Ray head within ")


def test_a_locked_run_is_refused_or_waited_for_never_interleaved(tmp_path):
    from filelock import FileLock

    lock = lock_path(tmp_path, VAE)
    lock.parent.mkdir(parents=True)
    marker = tmp_path / "ran"
    stage = Stage("touch", f"{sys.executable} -c \"open('{marker}', 'w')\"")
    with FileLock(lock):  # another sweep writes the run
        with pytest.raises(RunLocked, match="another sweep is writing this run"):
            run_stages(str(tmp_path), [stage], str(lock), 0.0, {})
        assert not marker.exists()
        held = FileLock(lock, thread_local=False)  # released by the timer thread
    held.acquire()
    threading.Timer(1.0, held.release).start()
    t0 = time.perf_counter()
    assert run_stages(str(tmp_path), [stage], str(lock), 30.0, {}) == ["touch: (no output)"]
    assert marker.exists() and time.perf_counter() - t0 >= 0.9  # it waited for the lock


# -- on a local cluster ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    saved = {k: os.environ.get(k) for k in LOOPBACK}
    os.environ.update(LOOPBACK)
    node = {"num_cpus": 1, "object_store_memory": 80 * 2**20, "node_ip_address": "127.0.0.1"}
    nodes = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    try:
        nodes.add_node(**node)
        nodes.wait_for_nodes()
        yield nodes.address
    finally:
        nodes.shutdown()
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def _kill_worker_mid_run(work: Path, cell: Cell, sweep: subprocess.Popen) -> int:
    """Wait until ``cell`` has checkpointed an epoch, then SIGKILL the Ray worker that runs its
    train stage; returns the epoch it had reached."""
    import psutil

    ckpt = work / "runs" / cell.run / "train" / "checkpoint.pt"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and sweep.poll() is None:
        if ckpt.exists():
            epoch = torch.load(ckpt, weights_only=False)["state"]["epoch"]
            for proc in psutil.process_iter(["cmdline", "cwd"]):
                cmd = proc.info["cmdline"] or []
                if (proc.info["cwd"] == str(work) and "pipelines.train" in cmd
                        and cell.dataset in cmd):
                    proc.parent().send_signal(signal.SIGKILL)  # the Ray worker
                    return epoch
        time.sleep(0.1)
    pytest.fail("the linear run never checkpointed while the sweep ran")


def _same_outputs(a: Path, b: Path) -> list[str]:
    """Every file under ``a`` and ``b``; equal bytes, or (train.json, timing.json, a checkpoint)
    equal apart from wall times, or (the midpoint model) equal tensors. Returns the files that
    are equal byte for byte."""
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    identical = []
    for rel in files:
        x, y = (a / rel).read_bytes(), (b / rel).read_bytes()
        if x == y:
            identical.append(str(rel))
        elif rel.suffix == ".json":
            strip = json.loads(x), json.loads(y)
            assert _drop_times(strip[0]) == _drop_times(strip[1]), rel
        elif rel.name == "midpoint.pt":  # a state dict; torch.save names its archive after
            ma, mb = (torch.load(p / rel, weights_only=True) for p in (a, b))  # the temp file
            assert _tensors_equal(ma, mb), rel
        else:
            assert rel.name == "checkpoint.pt", rel
            ca, cb = (torch.load(p / rel, weights_only=False) for p in (a, b))
            for key in ("model", "optimizer", "generator", "scheduler"):
                assert _tensors_equal(ca[key], cb[key]), (rel, key)
            assert _drop_times(ca["state"]) == _drop_times(cb["state"])
    return identical


def _drop_times(obj):
    if isinstance(obj, dict):
        return {k: _drop_times(v) for k, v in obj.items()
                if k not in TIMING and k != "resumed_from" and k != "resumed_from_epoch"}
    if isinstance(obj, list):
        return [_drop_times(v) for v in obj]
    return obj


def _tensors_equal(x, y) -> bool:
    if isinstance(x, torch.Tensor):
        return isinstance(y, torch.Tensor) and x.dtype == y.dtype and torch.equal(x, y)
    if isinstance(x, dict):
        return x.keys() == y.keys() and all(_tensors_equal(x[k], y[k]) for k in x)
    if isinstance(x, list | tuple):
        return len(x) == len(y) and all(_tensors_equal(u, v) for u, v in zip(x, y, strict=True))
    return x == y


@pytest.mark.slow
def test_a_sweep_on_a_local_cluster_writes_what_dvc_repro_writes(cluster, tmp_path):
    from filelock import FileLock

    swept, repro = tmp_path / "swept", tmp_path / "repro"
    for work in (swept, repro):
        work.mkdir()
        env = scratch_project(work, micro_params())
    env = {**env, **LOOPBACK}
    # the reference: DVC runs every stage but the report, one after the other, one thread each
    reference = subprocess.Popen(["dvc", "repro", "evaluate", "evaluate_sweep"], cwd=repro,
                                 env={**env, "VAEBENCH_THREADS": "1"}, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
    # sweep 1: another sweep holds the vae run; the linear run's worker is killed mid-run
    with FileLock(lock_path(swept, VAE)):
        first = subprocess.Popen(sweep_cmd(cluster), cwd=swept, env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        killed_at = _kill_worker_mid_run(swept, LINEAR, first)
        out, err = first.communicate(timeout=600)
    assert first.returncode == 1, out + err
    assert f"{VAE.run}: " in err and "another sweep is writing this run" in err
    assert "1 run(s) refused, 0 failed" in err
    resumed = json.loads((swept / "runs" / LINEAR.run / "train" / "train.json").read_text())
    assert 1 <= killed_at <= resumed["resumed_from_epoch"] < resumed["epochs"]
    # sweep 2: only what is stale (the refused run) runs
    second = run(sweep_cmd(cluster), swept, env)
    assert "train@vae-digits-0" in second.stdout and "linear" not in second.stdout
    assert "data@" not in second.stdout
    assert reference.wait(timeout=600) == 0, reference.stdout.read()
    identical = _same_outputs(swept / "runs", repro / "runs")
    files = {str(p.relative_to(swept / "runs")) for p in (swept / "runs").rglob("*")
             if p.is_file()}
    # only the files that record wall time differ, and only there (checked above)
    assert {Path(f).name for f in files - set(identical)} <= {
        "train.json", "checkpoint.pt", "midpoint.pt", "timing.json", "metrics.json"}
    for run_ in (LINEAR, VAE):  # the resumed run too, byte for byte
        assert f"{run_.run}/eval/checks.json" in identical
        assert f"{run_.run}/figures/latents.png" in identical
    # DVC sees the sweep's stages as its own: only the gradient study and the report are left
    status = json.loads(run(["dvc", "status", "--json"], swept, env).stdout)
    assert set(status) == {"gradients", "report"}, status

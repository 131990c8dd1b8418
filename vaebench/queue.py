"""Variations of the study in parallel on one machine: DVC's experiment queue, with each
worker's share of the cores set by the project.

    dvc exp run --queue -n lr2 -S train.vae.lr=0.002     # queue variations (DVC)
    dvc exp run --queue -n lr4 -S train.vae.lr=0.004
    vaebench queue -j 2                                   # 2 workers, cores // 2 threads each

DVC runs each queued experiment in its own temporary copy of the repository
(``.dvc/tmp/exps/``) on a worker process that ``dvc queue start -j N`` spawns; the workers,
and the stages they run, inherit the environment of the command that starts them (DVC's
``ManagedProcess`` passes no environment of its own). ``start_workers`` sets
``VAEBENCH_THREADS`` = cores // N there (and ``OMP_NUM_THREADS``, for the libraries that read
it), which ``pipelines.common.setup_torch`` applies, so N workers never put more threads on
the cores than there are: two torch processes with two spinning OpenMP threads each on two
cores can run many times slower than one.

When the queue is empty, ``vaebench queue`` ends the workers it started (``stop_workers``):
DVC's own idle shutdown and ``dvc queue stop`` are broadcasts through the queue's file broker,
which the first worker cleans on its way out, and a worker that missed the message was seen to
idle on, long after its project was gone.

Results are DVC experiments: ``dvc exp show`` lists them, ``dvc exp apply NAME`` brings one
into the workspace. MLflow runs of queued experiments go to ``MLFLOW_TRACKING_URI`` when it is
set (a shared server: SQLite locks under parallel writers), else to each experiment's own
temporary copy; ``vaebench queue`` points them at the project's ``mlflow.db`` when the
variable is unset, so that the runs are not lost with the copies.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pipelines.common import THREADS_ENV

ACTIVE = ("Queued", "Running")


class QueueError(RuntimeError):
    """The queue cannot be started or waited for; the message is one line."""


def cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers restrict)."""
    return len(os.sched_getaffinity(0))


def threads_per_worker(workers: int, n_cores: int | None = None) -> int:
    """Each of ``workers`` processes' share of the cores: cores // workers, at least 1."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise QueueError(f"workers: expected a positive number, got {workers!r}")
    return max(1, (cores() if n_cores is None else n_cores) // workers)


def worker_env(workers: int, root: Path, environ: dict[str, str] | None = None
               ) -> dict[str, str]:
    """The environment queue workers start with: their thread share, and a tracking store
    that outlives the experiments' temporary copies."""
    env = dict(os.environ if environ is None else environ)
    share = str(threads_per_worker(workers))
    env[THREADS_ENV] = share
    env["OMP_NUM_THREADS"] = share
    env.setdefault("DVC_NO_ANALYTICS", "1")
    if not env.get("MLFLOW_TRACKING_URI") and env.get("VAEBENCH_NO_TRACK") != "1":
        from vaebench.tracking import local_tracking_uri

        env["MLFLOW_TRACKING_URI"] = local_tracking_uri(root)
    return env


@dataclass(frozen=True)
class Entry:
    """One experiment of the queue as DVC reports it."""

    rev: str
    name: str
    status: str  # Queued, Running, Success, Failed, ...


def _queue(root: Path):
    from dvc.repo import Repo

    return Repo(str(root)).experiments.celery_queue


def entries(root: Path) -> list[Entry]:
    return [Entry(e["rev"], e.get("name") or e["rev"][:7], e["status"])
            for e in _queue(root).status()]


def start_workers(root: Path, workers: int) -> int:
    """``dvc queue start -j workers`` with each worker's thread share; returns the share.
    Refuses when workers are already up (they keep the share they were started with)."""
    share = threads_per_worker(workers)
    dvc = shutil.which("dvc")
    if dvc is None:
        raise QueueError("dvc: command not found on PATH (install the project: make setup)")
    queue = _queue(root)
    if not any(e.status in ACTIVE for e in entries(root)):
        raise QueueError("nothing is queued; queue experiments with `dvc exp run --queue "
                         "-S KEY=VALUE` first")
    running = queue.worker_status()
    if running:
        raise QueueError(f"{len(running)} queue worker(s) already running with their own "
                         "thread share; wait for them or stop them with `dvc queue stop`")
    # The workers are daemons that would hold a pipe open: their parent's output goes to a file.
    with tempfile.TemporaryFile("w+") as log:
        code = subprocess.run([dvc, "queue", "start", "-j", str(workers)], cwd=root,
                              env=worker_env(workers, root), stdin=subprocess.DEVNULL,
                              stdout=log, stderr=subprocess.STDOUT).returncode
        log.seek(0)
        if code != 0:
            reason = (log.read().strip().splitlines() or ["no message"])[-1]
            raise QueueError(f"dvc queue start -j {workers} failed: {reason}")
    return share


def wait(root: Path, poll_s: float = 2.0, timeout_s: float | None = None) -> list[Entry]:
    """Poll DVC's queue until no experiment is queued or running; return the final entries."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        now = entries(root)
        if not any(e.status in ACTIVE for e in now):
            return now
        if deadline is not None and time.monotonic() > deadline:
            raise QueueError(f"the queue did not finish within {timeout_s:.0f} s: "
                             + ", ".join(f"{e.name} {e.status}" for e in now))
        time.sleep(poll_s)


WORKER_DIR = Path(".dvc") / "tmp" / "exps" / "celery"  # DVC's ManagedProcess files of the workers


def worker_pids(root: Path) -> list[int]:
    """The live queue workers of the project at ``root``, from DVC's pidfiles
    (``dvc-exp-worker-N.pid``), each checked to be a ``dvc exp queue-worker`` process."""
    pids = []
    for pidfile in sorted((root / WORKER_DIR).glob("dvc-exp-worker-*.pid")):
        try:
            pid = int(pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):  # gone, or a half-written pidfile
            continue
        if b"queue-worker" in cmdline:
            pids.append(pid)
    return pids


def stop_workers(root: Path, grace_s: float = 30.0, poll_s: float = 0.2) -> list[int]:
    """End this project's queue workers: SIGTERM (celery's warm shutdown: a running experiment
    finishes first), then SIGKILL for any still alive after ``grace_s``. Returns the pids that
    had to be killed."""
    for pid in worker_pids(root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while worker_pids(root) and time.monotonic() < deadline:
        time.sleep(poll_s)
    killed = worker_pids(root)
    for pid in killed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return killed

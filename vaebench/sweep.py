"""The study on a Ray cluster: each run's train and evaluate stages as one Ray task, with
declared resources, on storage that every node shares; DVC records the outputs afterwards.

    ray start --head --port 6379                # the head; `ray start --address HEAD:6379` on others
    vaebench sweep --ray HEAD:6379              # from the project folder, on shared storage
    dvc repro                                   # left: the gradient study and the report

The sweep asks DVC which stages are stale (``dvc status``), as ``dvc repro`` would: it runs
``validate`` and ``code`` where it is, each stale ``data@`` stage as a task, then one task per run whose
``train`` or ``evaluate`` stage is stale, and ``dvc commit``s each phase, so that the next
``dvc repro`` finds them up to date. A task runs the stages' own commands from ``dvc.yaml``
(``python -m pipelines.train ...``), so its outputs are the bytes ``dvc repro`` writes.

- Resources: ``--cpus K`` per task (the stage gets K torch threads) or ``--gpus 1``.
- A worker or node that dies mid-task: Ray runs the task again (``max_retries``); the train
  stage resumes from its last checkpoint (``vaebench.train.resumable_checkpoint``). The stage
  process dies with its worker (``PR_SET_PDEATHSIG``), so no orphan writes on.
- Two sweeps on the same run: a task holds a file lock on the run
  (``.cache/locks/<cell>/seed<k>.lock``) across its train and evaluate; another sweep's task
  for that run is refused (or waits ``--lock-wait`` seconds), never interleaved.
- An address that does not answer: a one-line ``SweepError`` within ``CONNECT_TIMEOUT_S``.
- Tracking: ``MLFLOW_TRACKING_URI`` and ``VAEBENCH_*`` reach the tasks; use a tracking server
  (PostgreSQL-backed) on a cluster: SQLite on shared storage does not take parallel writers.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the Ray workers import this module: keep it free of torch
    from vaebench.cells import Cell
    from vaebench.config import Params

CONNECT_TIMEOUT_S = 6.0  # the command's imports come on top: a one-line error within 10 s
PROBE_TIMEOUT_S = 1.0  # a Ray head answers the HTTP/2 preface at once
MAX_RETRIES = 3  # Ray's retries of a task whose worker or node died
PASSED_ENV = ("MLFLOW_", "VAEBENCH_", "TORCHINDUCTOR_CACHE_DIR")


class SweepError(RuntimeError):
    """The sweep cannot start or a stage failed; the message is one line."""


class RunLocked(RuntimeError):
    """Another sweep is writing this run."""


@dataclass(frozen=True)
class Stage:
    name: str  # DVC's address: train@vae-digits-0
    cmd: str


@dataclass
class Plan:
    """What a sweep runs: stale data stages, then per run its stale train/evaluate stages."""

    data: list[Stage] = field(default_factory=list)
    runs: dict[Cell, list[Stage]] = field(default_factory=dict)


# -- where the cluster is ----------------------------------------------------------------------
def _host_port(address: str) -> tuple[str, int]:
    rest = address.split("://", 1)[-1]
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise SweepError(f"--ray: {address!r} is not an address; valid choices: HOST:PORT (a "
                         "cluster's head, `ray start --head`), ray://HOST:PORT, auto, local")
    return host.strip("[]"), int(port)


def _speaks_http2(host: str, port: int, timeout_s: float) -> bool:
    """Whether the server at (host, port) answers an HTTP/2 client preface with a SETTINGS
    frame, as the gRPC server of a Ray head (GCS) does; False when it stays silent or speaks
    something else. Skipped (True) with TLS on (``RAY_USE_TLS``)."""
    with socket.create_connection((host, port), timeout=timeout_s) as conn:
        if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
            return True
        conn.settimeout(timeout_s)
        conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
        try:
            head = conn.recv(9)
        except TimeoutError:
            return False
        return len(head) >= 4 and head[3] == 4  # frame type 0x4: SETTINGS


def connect(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """``ray.init`` on ``address`` within ``timeout_s`` or a one-line ``SweepError``."""
    started = time.monotonic()
    if address == "local":
        import ray

        ray.init(include_dashboard=False, log_to_driver=False)
        return
    if address != "auto":
        host, port = _host_port(address)
        try:
            answered = _speaks_http2(host, port, PROBE_TIMEOUT_S)
        except OSError as err:
            raise SweepError(f"Ray cluster at {address} is unreachable "
                             f"({err.strerror or err}); start one with `ray start --head` or "
                             "pass --ray local") from None
        if not answered:
            raise SweepError(f"Ray cluster at {address} did not answer as a Ray head within "
                             f"{PROBE_TIMEOUT_S:.0f} s (is it the GCS port of `ray start --head`?)")
    import ray

    done: list[BaseException | None] = []

    def init() -> None:
        try:
            ray.init(address=address, log_to_driver=False)
            done.append(None)
        except BaseException as err:  # reported below, in one line
            done.append(err)

    thread = threading.Thread(target=init, daemon=True)
    thread.start()
    thread.join(max(0.5, timeout_s - (time.monotonic() - started)))
    if not done:
        raise SweepError(f"Ray cluster at {address} did not let a driver connect within "
                         f"{timeout_s:.0f} s")
    if done[0] is not None:
        reason = (str(done[0]).strip().splitlines() or [type(done[0]).__name__])[0]
        raise SweepError(f"Ray cluster at {address}: {reason}")


# -- what to run -------------------------------------------------------------------------------
def stage_table(root: Path) -> dict[str, Stage]:
    """DVC's stages by the path of each of their outputs."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            return {str(out.def_path): Stage(s.addressing, s.cmd)
                    for s in repo.index.stages for out in s.outs}
    except DvcException as err:
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise SweepError(f"{root}: DVC cannot read the project ({reason})") from None


def stale(root: Path, names: list[str]) -> set[str]:
    """The stages among ``names`` that ``dvc status`` reports as changed."""
    from dvc.repo import Repo

    if not names:
        return set()
    with Repo(str(root)) as repo:
        return set(repo.status(targets=names))


def plan(root: Path, params: Params, force: bool = False) -> Plan:
    """The stale data stages, and for each run its stale train and evaluate stages (both when
    train is stale: evaluate reads what train writes), and every run of a dataset whose data
    stage runs. ``force``: everything."""
    from vaebench.cells import cells

    table = stage_table(root)
    out = Plan()
    datasets = dict.fromkeys(c.dataset for c in cells(params))
    data = [table[f"data/{d}"] for d in datasets]
    changed = stale(root, [s.name for s in data])
    out.data = [s for s in data if force or s.name in changed]
    by_run = {c: (table[f"runs/{c.run}/train"], table[f"runs/{c.run}/eval"])
              for c in cells(params)}
    changed = set() if force else stale(root, [s.name for pair in by_run.values() for s in pair])
    remade = {s.name.split("@", 1)[1] for s in out.data}
    for cell, (train, evaluate) in by_run.items():
        if force or train.name in changed or cell.dataset in remade:
            out.runs[cell] = [train, evaluate]
        elif evaluate.name in changed:
            out.runs[cell] = [evaluate]
    return out


def lock_path(root: Path, cell: Cell) -> Path:
    """The file lock of one run, beside the project's other run-time state (not a DVC input)."""
    return root / ".cache" / "locks" / cell.name / f"seed{cell.seed}.lock"


# -- the task ----------------------------------------------------------------------------------
def _die_with_parent() -> None:
    """In the stage's process: be killed when the Ray worker that started it dies."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run_stages(root: str, stages: list[Stage], lock: str | None, lock_wait_s: float,
               env: dict[str, str]) -> list[str]:
    """Run ``stages`` in order in ``root`` (holding ``lock``); each one's last output line."""
    from filelock import FileLock, Timeout

    Path(root, ".cache", "sweep").mkdir(parents=True, exist_ok=True)
    if lock is not None:
        Path(lock).parent.mkdir(parents=True, exist_ok=True)
    guard = FileLock(lock, timeout=lock_wait_s) if lock is not None else nullcontext()
    full_env = {**os.environ, **env,
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    lines = []
    try:
        with guard:
            for stage in stages:
                log = Path(root, ".cache", "sweep", f"{stage.name}.log")
                with open(log, "w") as fh:
                    # no shell between: the death signal is not inherited by a fork
                    code = subprocess.run(shlex.split(stage.cmd), cwd=root, env=full_env,
                                          stdout=fh, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL,
                                          preexec_fn=_die_with_parent).returncode
                text = log.read_text().strip().splitlines() or ["(no output)"]
                if code != 0:
                    raise SweepError(f"{stage.name} failed (exit {code}): {text[-1]} "
                                     f"(log: {log})")
                lines.append(f"{stage.name}: {text[-1]}")
    except Timeout:
        raise RunLocked(f"{lock}: another sweep is writing this run; it is refused, not "
                        "interleaved (wait for the other sweep, or pass --lock-wait)") from None
    return lines


# -- the sweep ---------------------------------------------------------------------------------
def task_env(threads: int) -> dict[str, str]:
    """The driver's tracking and vaebench settings, and the task's thread share."""
    env = {k: v for k, v in os.environ.items() if k.startswith(PASSED_ENV)}
    from pipelines.common import THREADS_ENV

    env[THREADS_ENV] = env["OMP_NUM_THREADS"] = str(threads)
    return env


def dvc_commit(root: Path, names: list[str]) -> None:
    """Record ``names``' current dependencies and outputs in dvc.lock (``dvc commit -f``)."""
    if not names:
        return
    out = subprocess.run(["dvc", "commit", "-f", "-q", *names], cwd=root, capture_output=True,
                         text=True, stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        raise SweepError(f"dvc commit failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}")


def sweep(root: Path, params: Params, address: str, cpus: int = 1, gpus: int = 0,
          force: bool = False, lock_wait_s: float = 0.0, echo=print) -> dict[str, list[str]]:
    """Run the stale stages of ``params``' study on the Ray cluster at ``address``; returns the
    stages recorded and the runs refused or failed."""
    import ray

    root = root.resolve()
    connect(address)  # first: an address that does not answer fails in seconds
    checked = subprocess.run([sys.executable, "-m", "pipelines.validate"], cwd=root,
                             capture_output=True, text=True,
                             env={**os.environ, "VAEBENCH_ROOT": str(root)})
    if checked.returncode != 0:
        raise SweepError((checked.stderr.strip().splitlines() or ["validate failed"])[-1]
                         .removeprefix("error: "))
    coded = subprocess.run(["dvc", "repro", "-q", "-s", "code"], cwd=root, capture_output=True,
                           text=True, stdin=subprocess.DEVNULL)  # runs/code/: what stages run
    if coded.returncode != 0:
        raise SweepError(f"the code stage failed: {(coded.stderr.strip().splitlines() or ['?'])[-1]}")
    work = plan(root, params, force)
    resources = {"num_cpus": cpus, "num_gpus": gpus}
    task = ray.remote(max_retries=MAX_RETRIES)(run_stages).options(**resources)
    env = {**task_env(cpus), "VAEBENCH_ROOT": str(root)}
    report: dict[str, list[str]] = {"recorded": [], "refused": [], "failed": []}

    def gather(refs: dict, label) -> list[Stage]:
        ok: list[Stage] = []
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            key, stages = refs[ready[0]]
            try:
                for line in ray.get(ready[0]):
                    echo(line)
                ok += stages
            except ray.exceptions.RayTaskError as err:
                cause = err.cause if err.cause is not None else err
                kind = "refused" if isinstance(cause, RunLocked) else "failed"
                report[kind].append(f"{label(key)}: {str(cause).splitlines()[0]}")
            except ray.exceptions.RayError as err:  # retries exhausted, node lost, ...
                report["failed"].append(f"{label(key)}: {str(err).splitlines()[0]}")
        return ok

    refs = {task.remote(str(root), [s], None, 0.0, env): (s.name, [s]) for s in work.data}
    done = gather(refs, str)
    dvc_commit(root, ["validate", *[s.name for s in done]])
    if len(done) < len(work.data):
        report["recorded"] = ["validate", *[s.name for s in done]]
        return report
    refs = {task.remote(str(root), stages, str(lock_path(root, cell)), lock_wait_s, env):
            (cell, stages) for cell, stages in work.runs.items()}
    ran = gather(refs, lambda c: c.run)
    dvc_commit(root, [s.name for s in ran])
    report["recorded"] = ["validate", *[s.name for s in done], *[s.name for s in ran]]
    return report

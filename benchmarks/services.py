"""Throw-away services on loopback for the tests and benchmarks of a shared tracking store: a
PostgreSQL cluster (Debian's ``postgresql`` package) with its own data folder, run by a
non-root user, and an ``mlflow server`` on it with its artifact root on disk; and scratch
copies of the project (git + DVC) to run DVC's queue or Ray on, and ``timed_run``, which
times a command there and never waits on a hung one.

    with Postgres() as pg, mlflow_server(pg.uri("mlflow"), artifacts) as url:
        os.environ["MLFLOW_TRACKING_URI"] = url     # what a user sets to share the store

PostgreSQL refuses to run as root: as root, the server runs as the ``postgres`` user that the
Debian package creates (``runuser``); otherwise as the current user. MLflow connects as the role
``vaebench``, which owns its database and is not a superuser. Trust authentication on
127.0.0.1 only: a fixture, not a deployment.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from fnmatch import fnmatch
from pathlib import Path

ROLE = "vaebench"
ROOT = Path(__file__).resolve().parents[1]


class ServiceUnavailable(RuntimeError):
    """PostgreSQL or MLflow cannot be installed or started here; the message says why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bindir(install: bool = True) -> Path:
    """The folder of initdb and pg_ctl; as root with apt-get, ``postgresql`` is installed when
    missing (Debian keeps the server programs off PATH, in /usr/lib/postgresql/<major>/bin)."""
    for _ in range(2):
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if found:
            return found[-1].parent
        if shutil.which("initdb") and shutil.which("pg_ctl"):
            return Path(shutil.which("initdb")).parent
        if not install:
            break
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            raise ServiceUnavailable("PostgreSQL is not installed and this is not root with "
                                     "apt-get: install Debian's postgresql package")
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql"]
        if subprocess.run(cmd, env=env, **quiet).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, **quiet)
            if subprocess.run(cmd, env=env, **quiet).returncode != 0:
                raise ServiceUnavailable("apt-get install postgresql failed")
        install = False
    raise ServiceUnavailable("PostgreSQL's initdb and pg_ctl were not found")


class Postgres:
    """A PostgreSQL cluster on 127.0.0.1 in a fresh data folder; ``stop()`` and ``start()``
    take it away and bring it back (same data, same port)."""

    def __init__(self) -> None:
        self.bindir = postgres_bindir()
        self.port = free_port()
        # under /tmp, not pytest's 0700 folders: the postgres user must reach it
        self.datadir = Path(tempfile.mkdtemp(prefix="vaebench-pg-"))
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            if not shutil.which("runuser"):
                raise ServiceUnavailable("running as root without runuser: cannot start "
                                         "PostgreSQL as a non-root user")
            shutil.chown(self.datadir, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        out = subprocess.run([*self.as_user, *args], capture_output=True, text=True,
                             cwd=self.datadir, stdin=subprocess.DEVNULL)
        if out.returncode != 0:
            reason = (out.stderr.strip() or out.stdout.strip() or "no message").splitlines()[-1]
            raise ServiceUnavailable(f"{Path(args[0]).name} failed: {reason}")

    def uri(self, database: str) -> str:
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir / "data"), "-o", options,
                  "-l", str(self.datadir / "server.log"), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir / "data"), "-m", mode,
                  "-w", "stop")

    def create_database(self, name: str) -> str:
        """A database owned by the non-superuser role ``vaebench``; returns its URI."""
        self._run(str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                  "-U", "postgres", "-O", ROLE, name)
        return self.uri(name)

    def __enter__(self) -> Postgres:
        try:
            self._run(str(self.bindir / "initdb"), "-D", str(self.datadir / "data"),
                      "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
            self.start()
            self._run(str(self.bindir / "createuser"), "-h", "127.0.0.1", "-p", str(self.port),
                      "-U", "postgres", "--no-superuser", "--no-createdb", ROLE)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            if (self.datadir / "data" / "postmaster.pid").exists():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.datadir, ignore_errors=True)


@contextmanager
def mlflow_server(backend_uri: str, artifacts: Path, workers: int = 2,
                  timeout_s: float = 120) -> Iterator[str]:
    """``mlflow server`` on ``backend_uri`` with artifacts served from ``artifacts`` on disk;
    yields its URL once ``/health`` answers, and stops it (and its workers) afterwards."""
    port = free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    log = open(artifacts.parent / f"mlflow-server-{port}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(mlflow), "server", "--backend-store-uri", backend_uri,
         "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise ServiceUnavailable(f"mlflow server on {backend_uri} did not start "
                                         f"(log: {log.name})")
            time.sleep(0.5)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
        log.close()


def project_env(work: Path, **extra: str) -> dict[str, str]:
    """The environment a user's shell would have in ``work``: the venv first on PATH, no
    tracking, and nothing that points at another checkout."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "VAEBENCH_NO_TRACK": "1",
           "TORCHINDUCTOR_CACHE_DIR": str(ROOT / ".cache" / "inductor"), **extra}
    for key in ("MLFLOW_TRACKING_URI", "VAEBENCH_ROOT", "PYTHONPATH", "VAEBENCH_THREADS"):
        if key not in extra:
            env.pop(key, None)
    return env


# What a scratch copy of the project holds: its code folders and its pipeline files.
SCRATCH_TREES = ("vaebench", "kernels", "pipelines")
SCRATCH_FILES = ("dvc.yaml", ".dvcignore", ".gitignore")
_SCRATCH_IGNORE = ("__pycache__", "*.pyc")


def scratch_code_digest(params_yaml: str, root: Path = ROOT) -> str:
    """SHA-256 over what ``scratch_project`` copies from ``root`` (path and bytes of every file
    but notes, ``*.md``, and the kernel benchmarks, which no stage runs) and ``params_yaml``:
    two measurements ran the same study on the same code exactly when their digests agree."""
    from vaebench.provenance import files_digest

    files = [p for tree in SCRATCH_TREES for p in (root / tree).rglob("*") if p.is_file()]
    files += [root / name for name in SCRATCH_FILES]
    rels = []
    for path in sorted(files):
        rel = path.relative_to(root).as_posix()
        not_copied = any(fnmatch(part, pattern) for part in path.relative_to(root).parts
                         for pattern in _SCRATCH_IGNORE)
        if not (not_copied or path.suffix == ".md" or rel.startswith("kernels/bench/")):
            rels.append(rel)
    return files_digest(rels, root, prefix=params_yaml.encode() + b"\0")


def scratch_project(work: Path, params_yaml: str) -> dict[str, str]:
    """Copy the project's code and dvc.yaml into ``work`` with ``params_yaml`` as params.yaml,
    make it a git repository with one commit and DVC initialised; return its environment."""
    for name in SCRATCH_TREES:
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns(*_SCRATCH_IGNORE))
    for name in SCRATCH_FILES:
        shutil.copy(ROOT / name, work / name)
    (work / "params.yaml").write_text(params_yaml)
    env = project_env(work)
    commit_tree(work, env, "scratch project", ["dvc", "init", "-q"])
    return env


def commit_tree(work: Path, env: dict[str, str], message: str, *setup: list[str]) -> None:
    """Make ``work`` a git repository whose one commit holds every file in it; the ``setup``
    commands (``dvc init``) run in the new repository before the commit."""
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "scratch@vaebench"],
                ["git", "config", "user.name", "scratch"], *setup,
                ["git", "add", "-A"], ["git", "commit", "-q", "-m", message]):
        subprocess.run(cmd, cwd=work, env=env, check=True, capture_output=True)


def timed_run(cmd: list[str], cwd: Path, env: dict[str, str], timeout_s: float) -> float:
    """Seconds ``cmd`` took in ``cwd``. A failure exits with a one-line error (the command and
    its last line of stderr); past ``timeout_s`` the command is killed with its whole process
    group (inductor's compile workers, DVC's stage processes) and the error says so: a benchmark
    reports a hang instead of waiting on it. Interrupted, it kills the group too."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own group, to kill it whole
    try:
        _, err = proc.communicate(timeout=timeout_s)
    except BaseException as exc:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        if isinstance(exc, subprocess.TimeoutExpired):
            sys.exit(f"error: {' '.join(cmd)} ran past {timeout_s:g} s in {cwd}; killed with "
                     "its process group")
        raise
    if proc.returncode != 0:
        last = (err.strip().splitlines() or ["no message"])[-1]
        sys.exit(f"error: {' '.join(cmd)} failed in {cwd} (exit {proc.returncode}): {last}")
    return time.perf_counter() - t0

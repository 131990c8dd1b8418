"""``benchmarks.services.timed_run``, which the scaling and evaluate-backend benchmarks time
their commands with: a hung command is killed with its children and reported, and a failure
says what failed, in one line."""

from __future__ import annotations

import os
import sys
import time

import pytest

from benchmarks.services import timed_run


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_hung_command_is_killed_with_its_children(tmp_path):
    pidfile = tmp_path / "child.pid"
    script = (f"import subprocess, sys, time; p = subprocess.Popen(['sleep', '60']); "
              f"open({str(pidfile)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    t0 = time.perf_counter()
    with pytest.raises(SystemExit, match=r"ran past 2 s .*killed with its process group"):
        timed_run([sys.executable, "-c", script], tmp_path, dict(os.environ), 2)
    assert time.perf_counter() - t0 < 30
    child = int(pidfile.read_text())
    for _ in range(50):  # the kill is sent; the reaper may take a moment
        if not _alive(child):
            break
        time.sleep(0.1)
    assert not _alive(child), "the hung command's child outlived it"


def test_a_failure_gives_its_last_line_of_stderr(tmp_path):
    script = "import sys; print('first', file=sys.stderr); sys.exit('the reason')"
    with pytest.raises(SystemExit) as info:
        timed_run([sys.executable, "-c", script], tmp_path, dict(os.environ), 60)
    message = str(info.value)
    assert "\n" not in message and message.endswith("(exit 1): the reason")


def test_a_command_is_timed(tmp_path):
    seconds = timed_run([sys.executable, "-c", "import time; time.sleep(0.5)"], tmp_path,
                        dict(os.environ), 60)
    assert 0.5 <= seconds < 20

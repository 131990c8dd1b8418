"""The one home of file writes and JSON reads: nothing is ever half-written.

Every write goes to a temporary file in the destination's folder, is flushed to disk, and is
renamed onto the destination (``os.replace`` is atomic on POSIX): a reader sees the old file
or the new one, never a part. A failed write leaves the old file and no temporary behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    """``obj`` as indented JSON with sorted keys (the same object gives the same bytes)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_write_dir(path: Path, fill: Callable[[Path], None]) -> None:
    """Call ``fill(tmp)`` on a fresh folder beside ``path``, then swap it in for ``path``.

    The old folder is renamed aside and the new one renamed onto ``path``: a reader sees the
    old folder whole or the new one whole (between the two renames, for an instant, none). A
    ``fill`` that raises leaves the old folder and no temporary."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    old = tmp.with_suffix(".old")
    try:
        fill(tmp)
        os.chmod(tmp, 0o755)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def remove_temporaries(folder: Path) -> list[Path]:
    """Remove what writes into ``folder`` left behind when their process was killed (SIGKILL
    runs no ``finally``): the hidden ``.<name>.*.tmp`` files and folders, and ``.old`` folders.
    Only for a folder no other process writes to now (a run's folder, under its lock).
    Returns what was removed."""
    folder = Path(folder)
    gone = sorted(p for p in folder.glob(".*") if p.suffix in (".tmp", ".old"))
    for p in gone:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return gone


def read_json(path: Path, what: str = "") -> Any:
    """The JSON in ``path``; a missing or broken file is a one-line error naming it (and
    ``what`` should have made it)."""
    path = Path(path)
    hint = f" ({what})" if what else ""
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing{hint}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}){hint}") from None

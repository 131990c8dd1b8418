"""Which source files a stage runs, and one digest of them.

A trained model is a function of its parameters, its data and the code that trained it. The
checkpoint's fingerprint therefore includes ``code_digest("pipelines/train.py")``: the SHA-256
of every project file that the train stage can import, found by walking the ``import``
statements (top-level and function-local) from the stage's entry point. Nothing is listed by
hand, so a new module is covered the day it is imported. ``tests/test_provenance.py`` checks that
each stage of ``dvc.yaml`` declares (as a file or a folder) every file of its closure.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("vaebench", "kernels", "pipelines")


def _module_file(name: str, root: Path) -> Path | None:
    """The file of module ``name`` inside the project (a package's ``__init__.py``), or None."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, root: Path) -> set[str]:
    """Every module named by an import statement of ``path``, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path, root)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # submodules
    return names


@cache
def code_closure(entry: str, root: Path = ROOT) -> tuple[str, ...]:
    """Project files (paths relative to ``root``) reachable by imports from ``entry``.

    ``entry`` is a path such as ``"pipelines/train.py"``. Importing ``a.b.c`` also runs the
    ``__init__.py`` of ``a`` and ``a.b``, so those are part of the closure.
    """
    start = (root / entry).resolve()
    if not start.is_file():
        raise FileNotFoundError(f"{entry}: no such file under {root}")
    seen: set[Path] = set()
    todo = [start]
    package = _module_name(start, root.resolve()).split(".")[:-1]
    for i in range(1, len(package) + 1):  # `python -m a.b.stage` runs a/__init__, a/b/__init__
        found = _module_file(".".join(package[:i]), root)
        if found is not None:
            todo.append(found.resolve())
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path, root):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # parent packages run first
                found = _module_file(".".join(parts[:i]), root)
                if found is not None and found.resolve() not in seen:
                    todo.append(found.resolve())
    return tuple(sorted(str(p.relative_to(root.resolve())) for p in seen))


def files_digest(rels: Iterable[str], root: Path = ROOT, prefix: bytes = b"") -> str:
    """SHA-256 over ``prefix`` and then the (path, contents) of each file ``rels`` names
    (posix paths relative to ``root``), in the order given: the one digest of a set of files
    that the train stage's fingerprint and the scaling benchmark's stamps both use."""
    digest = hashlib.sha256(prefix)
    for rel in rels:
        digest.update(rel.encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    return digest.hexdigest()


def code_digest(entry: str, root: Path = ROOT) -> str:
    """``files_digest`` of every file in ``code_closure(entry)``."""
    return files_digest(code_closure(entry, root), root)

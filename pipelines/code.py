"""DVC stage `code`: which project files each stage runs, one file per stage's entry point.

    python -m pipelines.code train evaluate ...   # writes runs/code/train.txt, evaluate.txt, ...

Each file lists ``<sha256>  <path>`` (the format of ``sha256sum``; ``sha256sum -c`` checks it)
for every file of ``vaebench.provenance.code_closure("pipelines/<stage>.py")``: what that stage
can import, found by walking the import statements, so no module is ever missed. Every stage
of ``dvc.yaml`` after this one depends on its own file instead of a list of source files kept
by hand: a code change reruns this stage (a second), and then exactly the stages whose file
changed. It also keeps ``dvc.lock`` small: DVC rereads and rewrites the whole lock file around
every stage it runs, with a pure-Python YAML parser, so one code entry per stage instead of ~25
shortens that bookkeeping (measured by ``benchmarks/dvc_overhead.py``).

This module imports no stage code: adding it changed no stage's closure.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from vaebench.io import atomic_write_text
from vaebench.provenance import code_closure

OUT = Path("runs") / "code"


def entries(root: Path) -> list[str]:
    """The stage modules of ``pipelines/``: every module but the package, its helpers and this."""
    return sorted(p.stem for p in (root / "pipelines").glob("*.py")
                  if p.stem not in {"__init__", "common", "code"})


def listing(entry: str, root: Path) -> str:
    """``<sha256>  <path>`` per line for every file that ``pipelines/<entry>.py`` can import."""
    lines = [f"{hashlib.sha256((root / rel).read_bytes()).hexdigest()}  {rel}"
             for rel in code_closure(f"pipelines/{entry}.py", root)]
    return "\n".join(lines) + "\n"


def main(argv: list[str], root: Path = Path(".")) -> int:
    root = root.resolve()
    valid = entries(root)
    unknown = [a for a in argv if a not in valid]
    if not argv or unknown:
        print(f"error: pipelines.code: {unknown[0] if unknown else 'no stage'} is not a stage "
              f"module; valid: {', '.join(valid)}", file=sys.stderr)
        return 2
    for entry in argv:
        atomic_write_text(root / OUT / f"{entry}.txt", listing(entry, root))
    print(f"{OUT}: the code of {len(argv)} stage(s): {', '.join(argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

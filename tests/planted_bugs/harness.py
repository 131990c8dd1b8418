"""Plant one bug at a time in a scratch copy of the code and see which model checks fail.

    python tests/planted_bugs/harness.py [--write reports/planted_bugs.json] [CLASS ...]

For each bug of ``bugs.BUGS`` (or the classes named): copy vaebench/, kernels/ and pipelines/
into a temporary folder, apply the edit (its text must occur exactly once), run
``micro_study.py`` there in a fresh interpreter, and record the model checks that failed. A
clean copy runs first: every check must pass on it. With ``--write``, the table the report
shows is written atomically; the exit status is 1 when a bug escapes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bugs import BUGS, Bug  # noqa: E402


def scratch_copy(dest: Path) -> None:
    for name in ("vaebench", "kernels", "pipelines"):
        shutil.copytree(ROOT / name, dest / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "bench"))
    shutil.copy(HERE / "micro_study.py", dest / "micro_study.py")


def plant(dest: Path, bug: Bug) -> None:
    path = dest / bug.file
    text = path.read_text()
    if text.count(bug.old) != 1:
        raise ValueError(f"{bug.file}: the text to replace for {bug.cls!r} occurs "
                         f"{text.count(bug.old)} times, expected once: {bug.old!r}")
    path.write_text(text.replace(bug.old, bug.new))


def run_micro_study(bug: Bug | None) -> dict:
    """Judged checks of the micro study on a copy with ``bug`` planted (None: clean)."""
    with tempfile.TemporaryDirectory(prefix="planted-") as tmp:
        dest = Path(tmp)
        scratch_copy(dest)
        if bug is not None:
            plant(dest, bug)
        env = {**os.environ, "PYTHONPATH": str(dest), "OMP_NUM_THREADS": "1",
               "VAEBENCH_NO_TRACK": "1"}
        started = time.time()
        out = subprocess.run([sys.executable, "micro_study.py", "checks.json"], cwd=dest,
                             env=env, capture_output=True, text=True, timeout=1200)
        if out.returncode != 0:  # a bug that crashes the study is caught, loudly
            return {"crashed": out.stderr.strip().splitlines()[-1:], "checks": [],
                    "seconds": time.time() - started}
        checks = json.loads((dest / "checks.json").read_text())
        return {"crashed": None, "checks": checks, "seconds": time.time() - started}


def verdict(bug: Bug, result: dict) -> dict:
    failed = sorted({c["name"] for c in result["checks"]
                     if c["category"] == "model" and not c["passed"]})
    named = [name for name in bug.caught_by if name in failed]
    return {"class": bug.cls, "patch": bug.patch, "expected": list(bug.caught_by),
            "caught_by": named or failed, "all_failed_model_checks": failed,
            "crashed": result["crashed"], "caught": bool(named) or bool(result["crashed"]),
            "seconds": round(result["seconds"], 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("classes", nargs="*")
    parser.add_argument("--write", type=Path)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    bugs = [b for b in BUGS if not args.classes or b.cls in args.classes]
    unknown = set(args.classes) - {b.cls for b in BUGS}
    if unknown:
        parser.error(f"unknown bug classes {sorted(unknown)}; valid choices: "
                     + ", ".join(b.cls for b in BUGS))
    with ThreadPoolExecutor(args.jobs) as pool:
        clean, *results = pool.map(run_micro_study, [None, *bugs])
    clean_failed = [f"{c['name']} [{c['run']}]" for c in clean["checks"] if not c["passed"]]
    table = [verdict(b, r) for b, r in zip(bugs, results, strict=True)]
    doc = {"clean_copy_failures": clean_failed, "clean_crashed": clean["crashed"],
           "bugs": table}
    for row in table:
        print(f"{row['class']:22s} {'caught' if row['caught'] else 'ESCAPED':8s} "
              f"by {', '.join(row['caught_by']) or '-'} ({row['seconds']} s)")
    print(f"clean copy: {len(clean_failed)} failing checks {clean_failed}")
    if args.write:
        from vaebench.io import atomic_write_json
        from vaebench.machine import machine_info

        doc["machine"] = machine_info(ROOT)
        doc["date"] = time.strftime("%Y-%m-%d")
        atomic_write_json(args.write, doc)
    return 0 if not clean_failed and all(r["caught"] for r in table) else 1


if __name__ == "__main__":
    raise SystemExit(main())

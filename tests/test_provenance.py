"""Stages declare the code they run, and a checkpoint is keyed on that code.

A model trained by other code than the code its stage declares is the silent failure these
tests guard against: the import closure is computed from the sources, ``dvc.yaml`` must declare
all of it, and the checkpoint fingerprint changes when any file of it changes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from vaebench.provenance import code_closure, code_digest

ROOT = Path(__file__).resolve().parents[1]


def write(root: Path, rel: str, text: str = "") -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_closure_follows_every_kind_of_import(tmp_path):
    write(tmp_path, "pipelines/__init__.py")
    write(tmp_path, "pipelines/stage.py", "import json\nfrom vaebench import a\n")
    write(tmp_path, "vaebench/__init__.py")
    write(tmp_path, "vaebench/a.py", "def f():\n    from .sub.b import g\n    return g\n")
    write(tmp_path, "vaebench/sub/__init__.py")
    write(tmp_path, "vaebench/sub/b.py", "import kernels.k as kk\nfrom . import c\n")
    write(tmp_path, "vaebench/sub/c.py")
    write(tmp_path, "kernels/__init__.py")
    write(tmp_path, "kernels/k.py")
    write(tmp_path, "vaebench/unused.py")
    assert code_closure("pipelines/stage.py", tmp_path) == (
        "kernels/__init__.py", "kernels/k.py", "pipelines/__init__.py", "pipelines/stage.py",
        "vaebench/__init__.py", "vaebench/a.py", "vaebench/sub/__init__.py",
        "vaebench/sub/b.py", "vaebench/sub/c.py")


def _declared(stage) -> list[str]:
    return [str(d.def_path) for d in stage.deps]


def _covered(rel: str, declared: list[str]) -> bool:
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in declared)


def _entry(stage) -> str:
    return stage.cmd.split()[2].removeprefix("pipelines.")  # "python -m pipelines.<entry> ..."


def test_every_stage_depends_on_the_listing_of_the_code_it_runs():
    """validate declares its closure itself; `code` depends on every file of every closure and
    lists each stage's; every other stage depends on its own listing."""
    dvc_repo = pytest.importorskip("dvc.repo")
    repo = dvc_repo.Repo(str(ROOT))
    stages = {s.addressing: s for s in repo.index.stages}
    validate, code = stages.pop("validate"), stages.pop("code")
    missing = [f for f in code_closure("pipelines/validate.py")
               if not _covered(f, _declared(validate))]
    assert not missing, f"validate runs {missing} without declaring them"
    listed = {str(o.def_path) for o in code.outs}
    assert sorted(listed) == sorted(f"runs/code/{e}.txt" for e in code.cmd.split()[3:])
    for name, stage in stages.items():
        listing = f"runs/code/{_entry(stage)}.txt"
        assert listing in _declared(stage), f"{name} does not depend on {listing}"
        assert listing in listed, f"the code stage does not write {listing} ({name} needs it)"
        missing = [f for f in code_closure(f"pipelines/{_entry(stage)}.py")
                   if not _covered(f, _declared(code))
                   or repo.dvcignore.is_ignored(repo.fs, str(ROOT / f))]
        assert not missing, f"the code stage does not depend on {missing}, which {name} runs"
    assert len(stages) > 10


def test_the_code_stage_hashes_python_and_templates_only():
    """The code stage hashes its folders whole, Python modules included (a module no stage
    imports today may be imported tomorrow), but nothing else than the templates stages read:
    editing a benchmark or a note must not make the study stale (.dvcignore)."""
    dvc_repo = pytest.importorskip("dvc.repo")
    repo = dvc_repo.Repo(str(ROOT))
    code = next(s for s in repo.index.stages if s.addressing == "code")
    hashed = [f for d in code.deps if (ROOT / str(d.def_path)).is_dir()
              for f in sorted((ROOT / str(d.def_path)).rglob("*")) if f.is_file()
              and "__pycache__" not in f.parts
              and not repo.dvcignore.is_ignored(repo.fs, str(f))]
    assert any(f.suffix == ".py" for f in hashed)
    extra = [str(f.relative_to(ROOT)) for f in hashed
             if f.suffix != ".py" and "templates" not in f.parts]
    assert not extra, f"the code stage hashes {extra}, which no stage runs: add them to .dvcignore"
    benches = [f for f in hashed if "bench" in f.parts]
    assert not benches, f"the code stage hashes the benchmarks {benches}: add them to .dvcignore"


def test_a_listing_holds_the_closure_and_changes_only_with_it(tmp_path):
    """pipelines.code writes `sha256  path` per file of the closure: sha256sum's own format."""
    import hashlib
    import subprocess
    import sys

    from pipelines import code

    for name in ("vaebench", "kernels", "pipelines"):
        shutil.copytree(ROOT / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__", "bench"))
    code_closure.cache_clear()
    assert code.main(["train", "evaluate"], tmp_path) == 0
    train = (tmp_path / "runs/code/train.txt").read_text()
    rows = [line.split("  ") for line in train.splitlines()]
    assert [p for _, p in rows] == list(code_closure("pipelines/train.py", tmp_path))
    assert all(h == hashlib.sha256((tmp_path / p).read_bytes()).hexdigest() for h, p in rows)
    check = subprocess.run(["sha256sum", "--quiet", "-c", "runs/code/train.txt"], cwd=tmp_path)
    assert check.returncode == 0
    evaluate = (tmp_path / "runs/code/evaluate.txt").read_text()
    (tmp_path / "vaebench" / "evaluate.py").write_text("# edited\n")  # not in train's closure
    code_closure.cache_clear()
    assert code.main(["train", "evaluate"], tmp_path) == 0
    assert (tmp_path / "runs/code/train.txt").read_text() == train
    assert (tmp_path / "runs/code/evaluate.txt").read_text() != evaluate
    out = subprocess.run([sys.executable, "-m", "pipelines.code", "trian"], cwd=tmp_path,
                         capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path)})
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: pipelines.code: trian is not a stage module; valid: "
        + ", ".join(code.entries(tmp_path))]
    code_closure.cache_clear()


def test_digest_changes_with_any_file_of_the_closure(tmp_path):
    for name in ("vaebench", "kernels", "pipelines"):
        shutil.copytree(ROOT / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__", "bench"))
    before = code_digest("pipelines/train.py", tmp_path)
    assert before == code_digest("pipelines/train.py", tmp_path)
    path = tmp_path / "vaebench" / "objectives.py"
    path.write_text(path.read_text().replace("return log_px_z - beta * kl",
                                             "return log_px_z - 1.5 * beta * kl"))
    code_closure.cache_clear()
    assert code_digest("pipelines/train.py", tmp_path) != before
    # a file outside the train stage's closure does not count
    code_closure.cache_clear()
    changed = code_digest("pipelines/train.py", tmp_path)
    (tmp_path / "vaebench" / "report.py").write_text("# edited\n")
    code_closure.cache_clear()
    assert code_digest("pipelines/train.py", tmp_path) == changed


def test_a_finished_run_is_never_resumed_and_an_interrupted_one_is(tmp_path):
    from vaebench.train import resumable_checkpoint

    path = tmp_path / "checkpoint.pt"
    assert resumable_checkpoint(path, "fp", 5) is None
    torch.save({"fingerprint": "fp", "state": {"epoch": 3}}, path)
    assert resumable_checkpoint(path, "fp", 5) is not None  # interrupted: resume
    assert resumable_checkpoint(path, "other", 5) is None   # other code or params: afresh
    assert resumable_checkpoint(path, "fp", 3) is None      # finished (dvc repro -f): afresh

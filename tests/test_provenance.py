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


def test_every_stage_declares_every_file_it_can_import():
    dvc_repo = pytest.importorskip("dvc.repo")
    repo = dvc_repo.Repo(str(ROOT))
    checked = 0
    for stage in repo.index.stages:
        module = stage.cmd.split()[2]  # "python -m pipelines.<stage> ..."
        entry = module.replace(".", "/") + ".py"
        missing = [f for f in code_closure(entry) if not _covered(f, _declared(stage))]
        assert not missing, f"{stage.addressing} runs {missing} without declaring them"
        checked += 1
    assert checked > 10


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

"""dvc.yaml and the code agree: one naming rule for runs, a validation stage first, the
metrics experiments keep, and stages that depend only on the parameters they use."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vaebench.cells import cells
from vaebench.config import parse_params, read_yaml

ROOT = Path(__file__).resolve().parents[1]
dvc_repo = pytest.importorskip("dvc.repo")


def dvc_project(tmp_path: Path, params: dict) -> Path:
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc_repo.Repo.init(str(tmp_path), no_scm=True)
    return tmp_path


def stages(root: Path):
    return list(dvc_repo.Repo(str(root)).index.stages)


@pytest.mark.parametrize("betas", [[0.5, 1.0, 2.0], [1, 4.0, 0.5], [2, 8]])
def test_dvc_names_every_run_as_the_code_does(tmp_path, betas):
    raw = read_yaml(ROOT / "params.yaml")
    raw["sweep"]["betas"] = betas
    raw["study"]["seeds"] = [0, 3]
    root = dvc_project(tmp_path, raw)
    outs = {str(o.def_path) for s in stages(root) if s.name.startswith("train")
            for o in s.outs}
    assert outs == {f"runs/{c.run}/train" for c in cells(parse_params(raw))}
    sweep = {c.run for c in cells(parse_params(raw)) if c.group == "sweep"}
    # an int keeps its spelling, "beta1", as DVC writes ${item.beta}
    if any(type(b) is int and b == 1 for b in betas):
        assert "linear-linear-gaussian-beta1/seed0" in sweep


def test_stage_commands_find_their_cells(tmp_path):
    """Every train/evaluate command line resolves to a declared cell with the same folder."""
    from vaebench.cells import find_cell

    raw = read_yaml(ROOT / "params.yaml")
    raw["sweep"]["betas"] = [1, 2.5]
    params = parse_params(raw)
    root = dvc_project(tmp_path, raw)
    for stage in stages(root):
        words = stage.cmd.split()
        if words[2] not in ("pipelines.train", "pipelines.evaluate"):
            continue
        seed = int(words[words.index("--seed") + 1])
        beta = words[words.index("--beta") + 1] if "--beta" in words else None
        latent = int(words[words.index("--latent-dim") + 1]) if "--latent-dim" in words else None
        cell = find_cell(params, words[3], words[4], seed, beta, latent)
        folder = f"runs/{cell.run}/" + ("train" if words[2].endswith("train") else "eval")
        assert folder in {str(o.def_path) for o in stage.outs}, stage.addressing


def test_only_reports_metrics_json_is_a_metric_and_eval_outputs_are_cached():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    metrics = [m for s in dvc["stages"].values() for m in (s.get("do", s).get("metrics") or [])]
    assert [next(iter(m)) if isinstance(m, dict) else m for m in metrics] == [
        "reports/metrics.json"]
    for name in ("evaluate", "evaluate_linear", "evaluate_sweep"):
        outs = dvc["stages"][name]["outs"]
        assert all(isinstance(o, str) for o in outs), outs  # cached: experiments keep them


def test_the_sweep_depends_on_its_own_block_only():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    for name in ("train_sweep", "evaluate_sweep"):
        params = dvc["stages"][name]["params"]
        assert not any(str(p).startswith("train") for p in params), params
    assert "sweep.train" in dvc["stages"]["train_sweep"]["params"]


def test_validate_runs_before_every_other_stage(tmp_path):
    root = dvc_project(tmp_path, read_yaml(ROOT / "params.yaml"))
    repo = dvc_repo.Repo(str(root))
    graph = repo.index.graph
    validate = next(s for s in repo.index.stages if s.name == "validate")
    import networkx as nx

    for stage in repo.index.stages:
        if stage is not validate:
            assert validate in nx.descendants(graph, stage), stage.addressing


@pytest.mark.slow
def test_a_bad_value_fails_first_in_validate_naming_the_file(tmp_path):
    for name in ("vaebench", "kernels", "pipelines"):
        shutil.copytree(ROOT / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__", "bench"))
    raw = read_yaml(ROOT / "presets" / "tiny.yaml")
    del raw["train"]["vae"]["lr"]
    dvc_project(tmp_path, raw)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(tmp_path), "VAEBENCH_NO_TRACK": "1"}
    out = subprocess.run(["dvc", "repro"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode != 0
    assert "error: params.yaml: train.vae.lr: missing required key" in out.stderr
    assert "failed to reproduce 'validate'" in out.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()


def test_dvc_and_the_cli_run_the_cells_in_one_order(tmp_path, monkeypatch):
    """`vaebench study` and dvc.yaml list the runs as vaebench.cells.cells does, in its order."""
    from typer.testing import CliRunner

    from vaebench import cli

    raw = read_yaml(ROOT / "params.yaml")
    raw["sweep"]["betas"] = [1, 2.5]
    raw["study"]["seeds"] = [3, 0]
    expected = [f"runs/{c.run}/train" for c in cells(parse_params(raw))]
    root = dvc_project(tmp_path, raw)
    declared = [str(o.def_path) for s in stages(root) if s.name.startswith("train")
                for o in s.outs]
    assert declared == expected
    calls: list[tuple[str, str]] = []

    def stage(kind):
        def main(**kw):
            if kind in ("train", "evaluate"):
                beta = "" if kw["beta"] is None else f"-beta{kw['beta']}"
                z = "" if kw["latent_dim"] is None else f"-z{kw['latent_dim']}"
                calls.append((kind, f"runs/{kw['model']}-{kw['dataset']}{z}{beta}/seed"
                              f"{kw['seed']}/train"))
            else:
                calls.append((kind, ""))
        return main

    monkeypatch.setattr(cli.data_stage, "main", stage("data"))
    monkeypatch.setattr(cli.train_stage, "main", stage("train"))
    monkeypatch.setattr(cli.evaluate_stage, "main", stage("evaluate"))
    monkeypatch.setattr(cli, "report", stage("report"))
    from pipelines import validate

    monkeypatch.setattr(validate, "main", stage("validate"))
    out = CliRunner().invoke(cli.app, ["study", "--params", str(root / "params.yaml")])
    assert out.exit_code == 0, out.output
    assert [path for kind, path in calls if kind == "train"] == expected
    assert [path for kind, path in calls if kind == "evaluate"] == expected
    assert calls[0] == ("validate", "") and calls[-1] == ("report", "")

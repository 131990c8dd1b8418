"""The real pipeline, end to end, on the tiny preset, in a temporary copy of the project.

`dvc repro` runs validate -> data -> train -> evaluate -> report; the test then checks the
outputs, the summary's columns, the theory verdict, the MLflow store (one run per run of the
study, grouped by cell), that a second `dvc repro` skips everything, that a code change reruns
the stages that run that code, that `dvc repro -f` retrains and gives the same metrics bit for
bit, that `dvc metrics diff` works, and that parameters rerun only the stages that use them.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from vaebench.config import cells, load_params

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    work = tmp_path_factory.mktemp("study")
    for name in ("vaebench", "kernels", "pipelines", "presets"):
        shutil.copytree(ROOT / name, work / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, work / name)
    shutil.copy(ROOT / "presets" / "tiny.yaml", work / "params.yaml")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(work),
           "TORCHINDUCTOR_CACHE_DIR": str(ROOT / ".cache" / "inductor")}
    for key in ("MLFLOW_TRACKING_URI", "VAEBENCH_NO_TRACK", "VAEBENCH_ROOT",
                "PYTHONDONTWRITEBYTECODE"):  # Python writes __pycache__ as on a user's machine
        env.pop(key, None)
    run(["git", "init", "-q"], work, env)
    run(["git", "config", "user.email", "e2e@vaebench"], work, env)
    run(["git", "config", "user.name", "e2e"], work, env)
    run(["dvc", "init", "-q"], work, env)
    first = run(["dvc", "repro"], work, env)
    return work, env, first


def runs_of(work: Path) -> list[str]:
    return [c.run for c in cells(load_params(work / "params.yaml"))]


def changed_stages(work: Path, env) -> set[str]:
    out = run(["dvc", "status", "--json"], work, env)
    return set(json.loads(out.stdout or "{}"))


def test_outputs_and_summary(study):
    work, _, _ = study
    params = yaml.safe_load((work / "params.yaml").read_text())
    summary = pd.read_csv(work / "reports" / "summary.csv")
    for col in ["model", "dataset", "elbo", "elbo_se", "recon", "kl", "nll", "nll_k",
                "active_units", "train_seconds"]:
        assert col in summary.columns, col
    assert len(summary) == len(runs_of(work))
    assert (summary["nll_k"] == params["evaluate"]["iw_k"]).all()
    # ELBO = recon - KL, and the IS estimate is at least as tight as the ELBO bound
    assert ((summary["elbo"] - (summary["recon"] - summary["kl"])).abs() < 1e-3).all()
    assert (summary["nll"] <= -summary["elbo"] + 4 * summary["elbo_se"]).all()
    for rid in runs_of(work):
        m = json.loads((work / "runs" / rid / "eval" / "metrics.json").read_text())
        assert m["run"] == rid
        row = summary[summary["run"] == rid].iloc[0]
        assert row["elbo"] == pytest.approx(m["elbo"])
    assert (work / "reports" / "index.html").stat().st_size > 1000
    assert list((work / "reports" / "figures").glob("*.png"))
    theory = json.loads((work / "reports" / "theory.json").read_text())
    checks = theory["checks"]
    assert checks and all(c["passed"] for c in checks)
    assert {"kl_mc_vs_analytic", "linear_decomposition"} <= {c["name"] for c in checks}
    lock = yaml.safe_load((work / "dvc.lock").read_text())
    assert "report" in lock["stages"]


def test_mlflow_has_one_run_per_run_grouped_by_cell(study):
    work, _, _ = study
    params = yaml.safe_load((work / "params.yaml").read_text())
    db = sqlite3.connect(work / "mlflow.db")
    runs = dict(db.execute(
        "select r.name, r.status from runs r join experiments e on r.experiment_id = "
        "e.experiment_id where e.name = ?", (params["study"]["name"],)).fetchall())
    assert set(runs) == set(runs_of(work))
    assert set(runs.values()) == {"FINISHED"}
    keys = {k for (k,) in db.execute("select distinct key from metrics")}
    assert {"val_elbo", "train_elbo", "train_kl", "train_recon", "test_elbo", "test_nll"} <= keys
    tags = {k for (k,) in db.execute("select distinct key from tags")}
    assert {"git_commit", "dataset_sha256", "vaebench_version", "kernel_backend", "cell",
            "seed", "machine.cpu", "machine.cpu_isa", "machine.torch_threads",
            "machine.gemm"} <= tags
    cell_of = dict(db.execute("select r.name, t.value from runs r join tags t on "
                              "r.run_uuid = t.run_uuid where t.key = 'cell'").fetchall())
    assert {name: cell_of[name] for name in runs} == {r: r.split("/")[0] for r in runs}


def test_rerun_skips_and_a_code_change_reruns_what_runs_it(study):
    work, env, _ = study
    second = run(["dvc", "repro"], work, env)
    assert "Running stage" not in second.stdout
    path = work / "vaebench" / "objectives.py"
    source = path.read_text()
    path.write_text(source.replace("return log_px_z - beta * kl",
                                   "return log_px_z - 1.5 * beta * kl"))
    try:
        stale = changed_stages(work, env)
    finally:
        path.write_text(source)
    expected = {f"{kind}@{c.model}-{c.dataset}-" + ("" if c.beta is None else f"{c.beta}-")
                + f"{c.seed}" for c in cells(load_params(work / "params.yaml"))
                for kind in ("train", "evaluate")}
    stale_runs = {s.replace("_linear", "").replace("_sweep", "") for s in stale}
    assert expected <= stale_runs and "report" in stale, sorted(stale)
    assert changed_stages(work, env) == set()


def test_force_retrains_and_gives_the_same_metrics_bit_for_bit(study):
    work, env, _ = study
    folder = work / "runs" / "vae-digits" / "seed0"
    ckpt = (folder / "train" / "checkpoint.pt").stat().st_mtime_ns
    before = json.loads((folder / "eval" / "metrics.json").read_text())
    forced = run(["dvc", "repro", "-f", "-s", "train@vae-digits-0"], work, env)
    assert "from scratch" in forced.stdout + forced.stderr
    assert (folder / "train" / "checkpoint.pt").stat().st_mtime_ns != ckpt
    run(["dvc", "repro"], work, env)
    after = json.loads((folder / "eval" / "metrics.json").read_text())
    timing = {"train_seconds"}
    assert {k: v for k, v in after.items() if k not in timing} == {
        k: v for k, v in before.items() if k not in timing}


def test_metrics_diff_and_params_rerun_only_their_stages(study):
    work, env, _ = study
    run(["git", "add", "-A"], work, env)
    run(["git", "commit", "-q", "-m", "study"], work, env)
    shown = run(["dvc", "metrics", "show", "--json"], work, env)
    assert list(json.loads(shown.stdout)[""]["data"]) == ["reports/metrics.json"]
    run(["dvc", "metrics", "diff", "HEAD"], work, env)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["train"]["linear"]["lr"] = 0.03  # the sweep runs the linear model with its own block
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stale = changed_stages(work, env)  # the stages whose own dependencies changed
    seeds = params["study"]["seeds"]
    assert stale == {f"train_linear@linear-linear-gaussian-{s}" for s in seeds} | {
        "validate"}, sorted(stale)
    params["train"]["vae"]["lr"] = 0.002
    params["train"]["linear"]["lr"] = 0.02
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = run(["dvc", "repro"], work, env)
    ran = {line.split("'")[1] for line in third.stdout.splitlines()
           if line.startswith("Running stage")}
    assert ran == {"validate", "report"} | {f"{k}@vae-digits-{s}" for k in ("train", "evaluate")
                                            for s in seeds}, third.stdout
    run(["dvc", "metrics", "diff", "HEAD"], work, env)

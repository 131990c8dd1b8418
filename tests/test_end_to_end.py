"""The real pipeline, end to end, on the tiny preset, in a temporary copy of the project.

`dvc repro` runs validate -> data -> train -> evaluate -> report; the test then checks the
outputs, the summary's columns, the theory verdict, the MLflow store (one run per run of the
study, grouped by cell), that a second `dvc repro` skips everything, that a code change reruns
the stages that run that code, that `dvc repro -f` retrains and gives the same metrics bit for
bit, that `dvc metrics diff` and `dvc plots show` work, that every MLflow run names its data
splits and holds its figures, and that parameters rerun only the stages that use them.
"""

from __future__ import annotations

import hashlib
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

from vaebench.cells import cells
from vaebench.config import load_params
from vaebench.results import RunMetrics

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
    (work / "reports").mkdir()  # the committed planted-bug result, an input of the report stage
    shutil.copy(ROOT / "reports" / "planted_bugs.json", work / "reports" / "planted_bugs.json")
    shutil.copytree(ROOT / "reports" / "paper", work / "reports" / "paper")  # paper-preset runs
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
    shutil.copytree(ROOT / ".dvc" / "plots", work / ".dvc" / "plots")  # dvc.yaml's templates
    first = run(["dvc", "repro"], work, env)
    return work, env, first


def runs_of(work: Path) -> list[str]:
    return [c.run for c in cells(load_params(work / "params.yaml"))]


def changed_stages(work: Path, env) -> set[str]:
    out = run(["dvc", "status", "--json"], work, env)
    return set(json.loads(out.stdout or "{}"))


def test_outputs_summary_and_checks(study):
    work, _, _ = study
    params = load_params(work / "params.yaml")
    runs = runs_of(work)
    summary = pd.read_csv(work / "reports" / "summary.csv")
    assert len(summary) == len({c.name for c in cells(params)})
    for col in ["cell", "n_seeds", "elbo", "elbo_ci95", "elbo_se_run", "nll", "nll_ci95", "kl",
                "active_units", "train_seconds"]:
        assert col in summary.columns, col
    assert (summary["n_seeds"] == len(params.study.seeds)).all()
    long = pd.read_csv(work / "reports" / "runs.csv")
    for rid in runs:
        m = RunMetrics.model_validate_json((work / "runs" / rid / "eval" / "metrics.json")
                                           .read_text())
        assert m.run == rid and m.nll_k == params.evaluate.iw_k
        # ELBO = recon - KL, and the IS estimate is at least as tight as the ELBO bound
        assert m.elbo.mean == pytest.approx(m.recon.mean - m.kl.mean, abs=1e-6)
        assert m.nll.mean <= -m.elbo.mean + 4 * m.elbo.se
        row = long[(long["run"] == rid) & (long["metric"] == "elbo")].iloc[0]
        assert row["value"] == pytest.approx(m.elbo.mean)
    assert (work / "reports" / "index.html").stat().st_size > 1000
    assert list((work / "reports" / "figures").glob("*.png"))
    theory = json.loads((work / "reports" / "theory.json").read_text())
    model = theory["model_checks"]
    assert model["total"] > 0 and model["passed"] == model["total"], model["failed"]
    assert theory["self_tests"]["passed"] == theory["self_tests"]["total"]
    names = {c["name"] for c in model["checks"]}
    assert {"objective_matches_reference", "objective_gradient_matches_reference",
            "test_set_is_the_fixed_one", "elbo_gap_equals_kl_to_posterior",
            "is_converges_to_log_px", "sweep_rate_closed_form"} <= names
    comparisons = pd.read_csv(work / "reports" / "comparisons.csv")
    assert set(comparisons["a"]) == set(params.study.models) - {"vae"}
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


def test_mlflow_runs_name_their_data_splits_and_hold_their_figures(study):
    work, _, _ = study
    db = sqlite3.connect(work / "mlflow.db")
    inputs = db.execute(
        "select r.name, d.name, d.digest, t.value from runs r join inputs i on "
        "i.destination_id = r.run_uuid join datasets d on d.dataset_uuid = i.source_id join "
        "input_tags t on t.input_uuid = i.input_uuid where t.name = 'mlflow.data.context'")
    expected = set()
    for c in cells(load_params(work / "params.yaml")):
        sha = hashlib.sha256((work / "data" / c.dataset / "arrays.npz").read_bytes()).hexdigest()
        expected |= {(c.run, f"{c.dataset}/{split}", sha[:36], context)
                     for split, context in (("train", "train"), ("val", "validation"),
                                            ("test", "test"))}
    assert set(inputs) == expected
    for name, run_id in db.execute("select name, run_uuid from runs"):
        logged = {p.name for p in (work / "mlruns" / run_id / "artifacts" / "figures").glob("*")}
        drawn = {p.name for p in (work / "runs" / name / "figures").glob("*.png")}
        assert "latents.png" in drawn and logged == drawn, name


def test_dvc_plots_show_draws_every_runs_training_curves(study):
    work, env, _ = study
    out = run(["dvc", "plots", "show", "--json"], work, env)
    charts = {path: entry[0]["content"] for path, entry in json.loads(out.stdout)["data"].items()}
    for c in cells(load_params(work / "params.yaml")):
        history = json.loads((work / "runs" / c.run / "train" / "train.json").read_text())["history"]
        for quantity in ("elbo", "recon", "kl"):
            shown = {(r["series"], int(r["epoch"])): float(r[quantity])
                     for r in charts[f"reports/plots/{quantity}/{c.name}.csv"]["data"]["values"]
                     if r["seed"] == str(c.seed)}
            assert shown == {(f"seed{c.seed} {split}", row["epoch"]): row[f"{split}_{quantity}"]
                             for row in history for split in ("train", "val")}
        points = charts[f"reports/plots/rate_distortion/{c.dataset}.csv"]["data"]["values"]
        metrics = json.loads((work / "runs" / c.run / "eval" / "metrics.json").read_text())
        assert [(float(p["rate"]), float(p["distortion"])) for p in points
                if p["run"] == c.run] == [(metrics["kl"]["mean"], -metrics["recon"]["mean"])]


def test_rerun_skips_and_a_code_change_reruns_what_runs_it(study):
    work, env, _ = study
    second = run(["dvc", "repro"], work, env)
    assert "Running stage" not in second.stdout
    path = work / "vaebench" / "objectives.py"
    source = path.read_text()
    path.write_text(source.replace("return log_px_z - beta * kl",
                                   "return log_px_z - 1.5 * beta * kl"))
    try:  # DVC sees the edit in validate (which lists its files) and code (which lists all)
        assert changed_stages(work, env) == {"validate", "code"}
        run(["dvc", "repro", "-s", "validate", "code"], work, env)  # the lists change
        stale = changed_stages(work, env)
    finally:
        path.write_text(source)
    from dvc.repo import Repo

    expected = {st.addressing.rsplit(":", 1)[-1] for st in Repo(str(work)).index.stages
                if st.cmd.split()[2] in ("pipelines.train", "pipelines.evaluate")}
    assert expected <= stale and "report" in stale, sorted(stale)
    run(["dvc", "repro", "-s", "validate", "code"], work, env)  # back to the study's code
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


def test_verify_reruns_a_subset_bit_for_bit(study):
    work, env, _ = study
    out = run([sys.executable, "-m", "vaebench.cli", "verify", "--cells",
               "vae-digits,linear-linear-gaussian-z4"], work, env)
    assert "bitwise identical" in out.stdout, out.stdout[-2000:]
    assert "MISMATCH" not in out.stdout


def test_verify_against_keeps_the_study_as_a_runs_csv_for_later(study):
    """`--against` the study's own runs.csv: every metric identical; `--keep` writes the
    study's runs as the report's runs.csv has them, and `--this` compares two such files."""
    import pandas as pd

    work, env, _ = study
    kept, page = work / "kept" / "runs.csv", work / "kept" / "page.md"
    kept.parent.mkdir()
    out = run([sys.executable, "-m", "vaebench.cli", "verify", "--against", "reports/runs.csv",
               "--keep", str(kept), "--out", str(page), "--this-label", "here"], work, env)
    assert "bitwise identical" in out.stdout, out.stdout[-2000:]
    pd.testing.assert_frame_equal(pd.read_csv(kept), pd.read_csv(work / "reports" / "runs.csv"))
    text = page.read_text()
    assert "- this study: here" in text and "agree within their errors" in text
    out = run([sys.executable, "-m", "vaebench.cli", "verify", "--against", "reports/runs.csv",
               "--this", str(kept)], work, env)
    assert "bitwise identical" in out.stdout, out.stdout[-2000:]


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
    assert stale == {f"train_linear@cell0-{s}" for s in seeds} | {"validate"}, sorted(stale)
    params["train"]["vae"]["lr"] = 0.002
    params["train"]["linear"]["lr"] = 0.02
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = run(["dvc", "repro"], work, env)
    ran = {line.split("'")[1] for line in third.stdout.splitlines()
           if line.startswith("Running stage")}
    assert ran == {"validate", "report"} | {f"{k}@vae-digits-{s}" for k in ("train", "evaluate")
                                            for s in seeds}, third.stdout
    run(["dvc", "metrics", "diff", "HEAD"], work, env)

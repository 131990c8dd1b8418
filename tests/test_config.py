"""params.yaml validation: every bad input is one line naming the key, the value and the choices."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vaebench.cells import Cell, cells, find_cell, run_spec
from vaebench.config import ConfigError, load_params, parse_params, read_yaml
from vaebench.nets.linear import resolve_gemm

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = read_yaml(ROOT / "params.yaml")


def with_change(path: str, value, delete: bool = False) -> dict:
    raw = copy.deepcopy(DEFAULT)
    node = raw
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[k]
    if delete:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return raw


def test_default_params_and_presets_validate():
    params = load_params(ROOT / "params.yaml")
    assert params.study.models == ["vae", "beta_vae", "cvae", "iwae", "betatc"]
    assert [(c.dataset, c.latent_dim) for c in params.study.linear] == [
        ("linear-gaussian", 4), ("fashion-mnist", 4), ("fashion-mnist", 8)]
    assert len(params.study.seeds) >= 3
    for preset in (ROOT / "presets").glob("*.yaml"):
        load_params(preset)


@pytest.mark.parametrize("path, value, expect", [
    ("study.models", ["vae", "vea"], ["study.models", "'vea'", "valid choices", "beta_vae"]),
    ("study.models", ["vae", "vae"], ["study.models", "duplicate model 'vae'"]),
    ("study.datasets", ["digits", "mnist2"], ["study.datasets", "'mnist2'", "fashion-mnist"]),
    ("study.backend", "cuda-fast", ["study.backend", "'cuda-fast'", "compile", "triton"]),
    ("study.seeds", [], ["study.seeds", "at least 1 item"]),
    ("study.seeds", [0, 1, 1], ["study.seeds", "duplicate seed 1"]),
    ("study.seeds", [0, -1], ["study.seeds.1", "greater than or equal to 0", "-1"]),
    ("study.seeds", [0, 1.5], ["study.seeds.1", "valid integer", "1.5"]),
    ("study.seeds", [0, "1"], ["study.seeds.1", "valid integer", "'1'"]),
    ("train.beta_vae.beta", -1.0, ["train.beta_vae.beta", "-1.0", "greater than or equal to 0"]),
    ("train.vae.latent_dim", 0, ["train.vae.latent_dim", "0", "greater than 0"]),
    ("train.vae.epochs", "10", ["train.vae.epochs", "valid integer", "'10'"]),
    ("train.vae.lr", "0.001", ["train.vae.lr", "valid number", "'0.001'"]),
    ("train.vae.epochs", 10.0, ["train.vae.epochs", "valid integer", "10.0"]),
    ("train.iwae.k", 0, ["train.iwae.k", "0", "greater than 0"]),
    ("train.vae.lattent_dim", 4, ["train.vae.lattent_dim", "unknown key"]),
    ("train.vae.arch", "resnet", ["train.vae.arch", "'resnet'", "'mlp'", "'conv'"]),
    ("sweep.betas", [1.0, -2.0], ["sweep.betas", "-2.0", "must be >= 0"]),
    ("sweep.betas", [1.0, 1], ["sweep.betas", "duplicate beta 1 (same as 1.0)"]),
    ("sweep.betas", [1.0, True], ["sweep.betas.1"]),
    ("sweep.model", "vae", ["sweep.model", "model 'vae' has no beta", "linear"]),
    ("sweep.train", {"latent_dim": 4, "epochs": 2, "batch_size": 8, "lr": 0.1, "beta": 2.0},
     ["sweep.train.beta", "unknown key", "sweep.betas"]),
])
def test_bad_values_are_one_line(path, value, expect):
    with pytest.raises(ConfigError) as err:
        parse_params(with_change(path, value))
    msg = str(err.value)
    assert "\n" not in msg
    for part in expect:
        assert part in msg, (part, msg)


@pytest.mark.parametrize("path, expect", [
    ("study", "study: missing required key"),
    ("study.seeds", "study.seeds: missing required key"),
    ("train.cvae", "train.cvae: missing required key"),
    ("data.dsprites", "data.dsprites: missing required key"),
    ("train.vae.lr", "train.vae.lr: missing required key"),
    ("train.vae.epochs", "train.vae.epochs: missing required key"),
    ("train.beta_vae.beta", "train.beta_vae.beta: missing required key"),
    ("train.iwae.k", "train.iwae.k: missing required key"),
    ("train.betatc.gamma", "train.betatc.gamma: missing required key"),
    ("sweep.train", "sweep.train: missing required key"),
    ("sweep.train.lr", "sweep.train.lr: missing required key"),
])
def test_missing_keys(path, expect):
    with pytest.raises(ConfigError, match=expect):
        parse_params(with_change(path, None, delete=True))


def test_file_errors_name_the_file_and_numbers_read_as_dvc_reads_them(tmp_path):
    raw = with_change("train.vae.lr", 1)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw).replace("lr: 1\n", "lr: 1e-3\n", 1))
    assert "lr: 1e-3" in path.read_text()
    assert load_params(path).train["vae"]["lr"] == 0.001  # YAML 1.2, as DVC: a float
    path.write_text(yaml.safe_dump(with_change("train.vae.lr", None, delete=True)))
    with pytest.raises(ConfigError, match=r"^params.yaml: train.vae.lr: missing required key$"):
        load_params(path)


def test_defaults_are_named():
    params = parse_params(DEFAULT)
    spec = run_spec(params, Cell("vae", "digits", 0))
    assert spec.defaults == {"likelihood": "auto", "lr_schedule": "constant", "adam_eps": 1e-8,
                             "adam_betas": [0.9, 0.999], "grad_normalization": "none",
                             "kl_warmup_epochs": 0, "kl_estimator": "analytic",
                             "early_stopping": None, "bernoulli_eps": None}
    spec = run_spec(params, Cell("linear", "fashion-mnist", 0, "linear", latent_dim=20))
    assert spec.defaults["beta"] == 1.0 and "lr" not in spec.defaults
    assert spec.train.latent_dim == 20 and "latent_dim" not in spec.defaults
    assert spec.run_id == "linear-fashion-mnist-z20/seed0"


def test_cells_runs_and_find_cell():
    params = parse_params(DEFAULT)
    declared = cells(params)
    seeds = params.study.seeds
    n_grid = len(params.study.models) * len(params.study.datasets)
    assert len(declared) == len(seeds) * (n_grid + len(params.study.linear)
                                          + len(params.sweep.betas))
    assert declared[0].run == "vae-digits/seed0" and declared[1].run == "vae-digits/seed1"
    assert len({c.run for c in declared}) == len(declared)
    assert len({c.eval_seed for c in declared}) == len(declared)  # independent evaluation noise
    sweep = [c for c in declared if c.group == "sweep"]
    assert sweep[0].name == "linear-linear-gaussian-beta1.0"
    spec = run_spec(params, find_cell(params, "linear", "linear-gaussian", 2, "4.0"))
    assert spec.run_id == "linear-linear-gaussian-beta4.0/seed2" and spec.train.beta == 4.0
    assert spec.train.lr == params.sweep.train["lr"]
    with pytest.raises(ConfigError, match="model: unknown model 'gan'; valid choices: vae"):
        find_cell(params, "gan", "digits", 0)
    with pytest.raises(ConfigError, match=r"--seed: seed 7 is not in study.seeds; valid choices: "
                                          r"0, 1, 2"):
        find_cell(params, "vae", "digits", 7)
    with pytest.raises(ConfigError, match=r"--beta: beta 3.0 .* valid choices: linear on "
                                          r"linear-gaussian with beta 1.0, 4.0"):
        find_cell(params, "linear", "linear-gaussian", 0, "3.0")
    with pytest.raises(ConfigError, match="run: vae on linear-gaussian is not in the study"):
        find_cell(params, "vae", "linear-gaussian", 0)


def test_fingerprint_tracks_what_determines_the_model():
    params = parse_params(DEFAULT)
    cell = Cell("vae", "digits", 0)
    a = run_spec(params, cell).fingerprint("abc")
    assert a == run_spec(params, cell).fingerprint("abc")
    assert a != run_spec(params, cell).fingerprint("abd")
    assert a != run_spec(params, Cell("vae", "digits", 1)).fingerprint("abc")
    changed = parse_params(with_change("train.vae.lr", 0.01))
    assert a != run_spec(changed, cell).fingerprint("abc")
    # the GEMM library changes the rounding, hence the model ("auto" is what it resolves to)
    aten = run_spec(parse_params(with_change("study.gemm", "aten")), cell)
    assert (aten.fingerprint("abc") == a) == (resolve_gemm("auto") == "aten")


@pytest.mark.parametrize("stage, args", [
    ("train", ["vea", "digits", "--seed", "0"]),
    ("train", ["vae", "digitz", "--seed", "0"]),
    ("train", ["vae", "digits", "--seed", "9"]),
    ("evaluate", ["vae", "digitz", "--seed", "0"]),
    ("data", ["digitz"]),
])
def test_stage_rejects_bad_input_before_writing(tmp_path, stage, args):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    env = {**os.environ, "VAEBENCH_ROOT": str(tmp_path), "VAEBENCH_NO_TRACK": "1"}
    out = subprocess.run([sys.executable, "-m", f"pipelines.{stage}", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    lines = [ln for ln in out.stderr.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("error:"), out.stderr
    assert "valid choices" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_bad_params_file_fails_before_writing(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(with_change("train.beta_vae.beta", -3)))
    env = {**os.environ, "VAEBENCH_ROOT": str(tmp_path), "VAEBENCH_NO_TRACK": "1"}
    for stage in (["validate"], ["train", "beta_vae", "digits", "--seed", "0"]):
        out = subprocess.run([sys.executable, "-m", f"pipelines.{stage[0]}", *stage[1:]],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 2
        assert out.stderr.strip() == ("error: params.yaml: train.beta_vae.beta: Input should be "
                                      "greater than or equal to 0 (got -3)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_cli_lists_the_stages():
    from typer.testing import CliRunner

    from vaebench.cli import app

    out = CliRunner().invoke(app, ["--help"])
    assert out.exit_code == 0
    for command in ("data", "train", "evaluate", "report", "study"):
        assert command in out.output
    bad = CliRunner().invoke(app, ["train", "vea", "digits", "--seed", "0"])
    assert bad.exit_code == 2

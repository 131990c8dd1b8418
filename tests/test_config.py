"""params.yaml validation: every bad input is one line naming the key, the value and the choices."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vaebench.config import ConfigError, load_params, parse_params, run_id, run_spec
from vaebench.nets.linear import resolve_gemm

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())


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
    assert params.study.linear_datasets == ["linear-gaussian", "fashion-mnist"]
    for preset in (ROOT / "presets").glob("*.yaml"):
        load_params(preset)


@pytest.mark.parametrize("path, value, expect", [
    ("study.models", ["vae", "vea"], ["study.models", "'vea'", "valid choices", "beta_vae"]),
    ("study.datasets", ["digits", "mnist2"], ["study.datasets", "'mnist2'", "fashion-mnist"]),
    ("study.backend", "cuda-fast", ["study.backend", "'cuda-fast'", "compile", "triton"]),
    ("train.beta_vae.beta", -1.0, ["train.beta_vae.beta", "-1.0", "greater than or equal to 0"]),
    ("train.vae.latent_dim", 0, ["train.vae.latent_dim", "0", "greater than 0"]),
    ("train.iwae.k", 0, ["train.iwae.k", "0", "greater than 0"]),
    ("train.vae.lattent_dim", 4, ["train.vae.lattent_dim", "unknown key"]),
    ("train.vae.arch", "resnet", ["train.vae.arch", "'resnet'", "'mlp'", "'conv'"]),
    ("sweep.betas", [1.0, -2.0], ["sweep.betas", "-2.0", "greater than or equal to 0"]),
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
    ("train.cvae", "train.cvae: missing required key"),
    ("data.dsprites", "data.dsprites: missing required key"),
])
def test_missing_keys(path, expect):
    with pytest.raises(ConfigError, match=expect):
        parse_params(with_change(path, None, delete=True))


def test_run_spec_and_ids():
    params = parse_params(DEFAULT)
    spec = run_spec(params, "beta_vae", "linear-gaussian", beta=0.5)
    assert spec.run_id == "beta_vae-linear-gaussian-beta0.5" == run_id("beta_vae",
                                                                       "linear-gaussian", 0.5)
    assert spec.train.beta == 0.5
    assert run_id("vae", "digits", 1.0) == "vae-digits-beta1.0"  # as DVC writes ${item.beta}
    with pytest.raises(ConfigError, match="model: unknown model 'gan'; valid choices: vae"):
        run_spec(params, "gan", "digits")
    with pytest.raises(ConfigError, match="--beta: model 'iwae' has no beta"):
        run_spec(params, "iwae", "digits", beta=2.0)
    with pytest.raises(ConfigError, match="greater than or equal to 0"):
        run_spec(params, "beta_vae", "digits", beta=-1.0)


def test_fingerprint_tracks_what_determines_the_model():
    params = parse_params(DEFAULT)
    a = run_spec(params, "vae", "digits").fingerprint("abc")
    assert a == run_spec(params, "vae", "digits").fingerprint("abc")
    assert a != run_spec(params, "vae", "digits").fingerprint("abd")
    changed = parse_params(with_change("train.vae.lr", 0.01))
    assert a != run_spec(changed, "vae", "digits").fingerprint("abc")
    # the GEMM library changes the rounding, hence the model ("auto" is what it resolves to)
    aten = run_spec(parse_params(with_change("study.gemm", "aten")), "vae", "digits")
    assert (aten.fingerprint("abc") == a) == (resolve_gemm("auto") == "aten")


@pytest.mark.parametrize("stage, args", [
    ("train", ["vea", "digits"]),
    ("train", ["vae", "digitz"]),
    ("evaluate", ["vae", "digitz"]),
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
    out = subprocess.run([sys.executable, "-m", "pipelines.train", "beta_vae", "digits"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip() == ("error: train.beta_vae.beta: Input should be greater than or "
                                  "equal to 0 (got -3)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_cli_lists_the_stages():
    from typer.testing import CliRunner

    from vaebench.cli import app

    out = CliRunner().invoke(app, ["--help"])
    assert out.exit_code == 0
    for command in ("data", "train", "evaluate", "report", "study"):
        assert command in out.output
    bad = CliRunner().invoke(app, ["train", "vea", "digits"])
    assert bad.exit_code == 2

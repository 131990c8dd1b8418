"""The cut of presets/gpu.yaml that ``make gpu-check`` runs parses under the configuration
schema and names the run it trains: a preset or schema change that breaks it fails here, on
the CPU, rather than on a rarely lent GPU (``benchmarks/gpu_preset.py``)."""

from __future__ import annotations

import yaml

from benchmarks.gpu_preset import check_params
from vaebench.cells import Cell, run_spec
from vaebench.config import load_params


def test_the_gpu_checks_params_parse_and_train_one_conv_vae(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(check_params("cuda"), sort_keys=False))
    params = load_params(path)
    assert (params.study.models, params.study.datasets, params.study.seeds) == (
        ["vae"], ["dsprites"], [0])
    assert params.study.device == "cuda" and params.study.linear == []
    spec = run_spec(params, Cell("vae", "dsprites", 0))
    assert spec.train.arch == "conv" and spec.train.epochs == 2


def test_the_dry_run_trains_on_the_cpu(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(check_params("cpu"), sort_keys=False))
    assert load_params(path).study.device == "cpu"

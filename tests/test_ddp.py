"""One run across two processes (torchrun, gloo on the CPU): with the same global batch, its
metrics and weights equal one process computing both shards in turn, within float tolerance;
only rank 0 writes."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from scratch import env_for, micro_params

from vaebench import data
from vaebench.cells import Cell, run_spec
from vaebench.config import parse_params
from vaebench.parallel import ParallelError, Shards
from vaebench.tracking import NullTracker
from vaebench.train import train

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 3


def test_shard_zero_draws_what_one_process_draws_and_shards_tile_the_batch():
    shards = Shards(4, (0, 1, 2, 3))
    assert [shards.stream(2, r) for r in range(4)] == [2, 6, 10, 14]  # no stream shared
    idx = torch.randperm(64)
    assert torch.equal(torch.cat([shards.rows(idx, r) for r in range(4)]), idx)
    with pytest.raises(ParallelError, match=r"train.vae.batch_size: 64 points do not split "
                                            r"into 3 equal shards"):
        Shards(3, (0,)).check(64, "train.vae")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    work = tmp_path_factory.mktemp("ddp")
    raw = micro_params()
    raw["train"]["vae"]["epochs"] = EPOCHS
    (work / "params.yaml").write_text(json.dumps(raw))
    data.prepare("digits", {}, work / "data" / "digits")
    return work, raw


@pytest.mark.slow
def test_two_processes_equal_one_process_computing_both_shards(project, tmp_path):
    work, raw = project
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun is installed with torch"
    env = env_for(work, VAEBENCH_ROOT=str(work), OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    free = str(port.getsockname()[1])
    port.close()
    out = subprocess.run([torchrun, "--nnodes", "1", "--nproc_per_node", "2",
                          "--master_addr", "127.0.0.1", "--master_port", free,
                          "-m", "pipelines.train", "vae", "digits", "--seed", "0"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    folder = work / "runs" / "vae-digits" / "seed0" / "train"
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint.pt", "midpoint.pt", "train.json"]
    ddp = json.loads((folder / "train.json").read_text())
    assert ddp["processes"] == 2 and ddp["epochs"] == EPOCHS

    # the reference: one process, both shards in turn, gradients accumulated
    spec = run_spec(parse_params(raw), Cell("vae", "digits", 0))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, ref = train(spec, data.load(work / "data" / "digits"), tmp_path, NullTracker(), "fp",
                       progress=False, shards=Shards(2, (0, 1)))
    finally:
        torch.set_num_threads(before)
    assert len(ddp["history"]) == len(ref.history) == EPOCHS
    for got, want in zip(ddp["history"], ref.history, strict=True):
        assert got.keys() == want.keys()
        for key in (k for k in want if k != "seconds"):
            assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-9), key
    weights = torch.load(folder / "checkpoint.pt", weights_only=False)["model"]
    reference = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["model"]
    for name, w in reference.items():
        torch.testing.assert_close(weights[name], w, rtol=1e-5, atol=1e-6)
    # and the shards matter: one process with one shard of the same batch trains otherwise
    _, single = train(spec, data.load(work / "data" / "digits"), tmp_path / "one",
                      NullTracker(), "fp", progress=False)
    assert single.history[-1]["val_elbo"] != ref.history[-1]["val_elbo"]


def test_the_gpu_preset_is_a_valid_study_of_conv_models_on_cuda():
    from vaebench.cells import cells
    from vaebench.config import load_params

    params = load_params(ROOT / "presets" / "gpu.yaml")
    assert params.study.device == "cuda" and params.study.backend == "auto"
    grid = [c for c in cells(params) if c.group == "grid"]
    assert grid and {params.train[c.model]["arch"] for c in grid} == {"conv"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_study_device_cuda_without_a_gpu_is_a_one_line_error_before_any_work(tmp_path):
    raw = micro_params(device="cuda")
    (tmp_path / "params.yaml").write_text(json.dumps(raw))
    env = env_for(tmp_path, VAEBENCH_ROOT=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "pipelines.train", "vae", "digits", "--seed",
                          "0"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: study.device: 'cuda', but torch sees no CUDA device; valid choices here: cpu"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing written

"""The training loop: same seed -> same metrics, crash -> resume to the same result, NaN -> stop."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
import yaml

from vaebench import data
from vaebench.cells import Cell, run_spec
from vaebench.config import parse_params
from vaebench.tracking import NullTracker
from vaebench.train import BY_HAND, TrainingDiverged, load_trained, train

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "digits"
    data.prepare("digits", {}, out)
    return data.load(out)


@pytest.fixture(params=["aten", "onednn"])
def gemm(request, monkeypatch):
    """Both GEMM libraries, oneDNN for every layer size (the tiny nets are under its threshold)."""
    from vaebench.nets import linear

    if request.param == "onednn" and not linear.onednn_available():
        pytest.skip("torch without oneDNN")
    monkeypatch.setattr(linear, "ONEDNN_MIN_MACS", 0)
    return request.param


def spec_for(model: str = "vae", seed: int = 0, epochs: int = 3, gemm: str = "auto", **train):
    raw = yaml.safe_load((ROOT / "presets" / "tiny.yaml").read_text())
    raw["study"]["seeds"] = [seed]
    raw["study"]["backend"] = "eager"
    raw["study"]["gemm"] = gemm
    raw["train"][model] = {**raw["train"][model], "epochs": epochs, **train}
    return run_spec(parse_params(raw), Cell(model, "digits", seed))


def test_same_seed_same_metrics_other_seed_differs(digits, tmp_path, gemm):
    hists = []
    for i, seed in enumerate([0, 0, 1]):
        spec = spec_for(seed=seed, gemm=gemm)
        _, state = train(spec, digits, tmp_path / f"r{i}", NullTracker(), "fp", progress=False)
        hists.append([{k: v for k, v in row.items() if k != "seconds"} for row in state.history])
    assert hists[0] == hists[1]
    assert hists[0] != hists[2]


@pytest.mark.parametrize("lookahead", [3, 64])
def test_drawing_ahead_trains_what_a_step_by_step_loop_trains(digits, tmp_path, lookahead):
    """The trainer draws inputs and eps a block ahead (``vaebench.lookahead``; blocks of 3
    cross each other's ends, 64 hold an epoch); its
    weights after two epochs are, to the bit, those of the training benchmark's bare loop,
    which binarizes and draws eps step by step from the same seed streams
    (``benchmarks.loops.run_vaebench_compiled``, eager, its backward pass written out as the
    trainer's is for the VAE)."""
    from benchmarks.loops import run_vaebench_compiled

    spec = spec_for(epochs=2, gemm="aten")
    model, state = train(spec, digits, tmp_path / "ahead", NullTracker(), "fp", progress=False,
                         lookahead=lookahead)
    assert state.gradients == BY_HAND
    _, step_by_step = run_vaebench_compiled(spec, digits, 2, spec.seed, compiled=False,
                                            by_hand=True)
    assert len(digits.x_train) // spec.train.batch_size % lookahead  # blocks end mid-epoch
    for name, value in step_by_step.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name


def test_the_backward_pass_by_hand_trains_what_autograd_trains(digits, tmp_path, monkeypatch):
    """The trainer steps on ``vaebench.fused_step`` for the models it covers and on autograd
    for the others (IWAE here, and every model once ``unsupported`` says so); for the VAE the
    two train to the same weights, up to float32 round-off, over three epochs (aten)."""
    from vaebench import fused_step

    spec = spec_for(epochs=3, gemm="aten")
    hand, by_hand = train(spec, digits, tmp_path / "hand", NullTracker(), "fp", progress=False)
    monkeypatch.setattr(fused_step, "unsupported", lambda model: "switched off")
    auto, by_autograd = train(spec, digits, tmp_path / "auto", NullTracker(), "fp",
                              progress=False)
    assert (by_hand.gradients, by_autograd.gradients) == (BY_HAND, "autograd")
    for name, w in auto.state_dict().items():
        torch.testing.assert_close(hand.state_dict()[name], w, rtol=1e-3, atol=1e-4, msg=name)
    for a, b in zip(by_hand.history, by_autograd.history, strict=True):
        assert a["val_elbo"] == pytest.approx(b["val_elbo"], rel=1e-4)
    monkeypatch.undo()
    _, iwae = train(spec_for("iwae", epochs=1), digits, tmp_path / "iwae", NullTracker(), "fp",
                    progress=False)
    assert iwae.gradients == "autograd"


def test_crash_then_resume_matches_uninterrupted(digits, tmp_path, gemm):
    spec = spec_for(epochs=4, gemm=gemm)
    _, full = train(spec, digits, tmp_path / "full", NullTracker(), "fp", progress=False)

    def crash(state):
        if state.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(spec, digits, tmp_path / "resumed", NullTracker(), "fp", progress=False,
              on_epoch=crash)
    ckpt = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    assert ckpt["state"]["epoch"] == 2
    # a worker killed while it wrote epoch 3's checkpoint left its temporary behind
    (tmp_path / "resumed" / ".checkpoint.pt.k1ll3d.tmp").write_bytes(b"half")
    tracker = NullTracker()
    _, resumed = train(spec, digits, tmp_path / "resumed", tracker, "fp", progress=False)
    assert sorted(os.listdir(tmp_path / "resumed")) == ["checkpoint.pt", "midpoint.pt"]
    assert [s for s, _ in tracker.metrics] == [3, 4]  # only the missing epochs ran
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in full.history]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in resumed.history] == strip
    assert resumed.resumed_from == 2
    # a finished run is never returned as it stands: trained again (dvc repro -f), it retrains
    tracker = NullTracker()
    _, again = train(spec, digits, tmp_path / "resumed", tracker, "fp", progress=False)
    assert [s for s, _ in tracker.metrics] == [1, 2, 3, 4] and again.resumed_from == 0
    # an interrupted checkpoint of other code or params (another fingerprint) is not resumed
    with pytest.raises(KeyboardInterrupt):
        train(spec, digits, tmp_path / "other", NullTracker(), "fp", progress=False,
              on_epoch=crash)
    tracker = NullTracker()
    train(spec, digits, tmp_path / "other", tracker, "other code", progress=False)
    assert [s for s, _ in tracker.metrics] == [1, 2, 3, 4]
    model, state, midpoint = load_trained(spec, digits, tmp_path / "other")
    assert midpoint is not None  # the model half-way through training
    assert state["epoch"] == 4


def test_nan_loss_stops_and_keeps_last_good_checkpoint(digits, tmp_path, monkeypatch):
    spec = spec_for(epochs=3)
    from vaebench.models.vae import VAE

    original = VAE.objective
    calls = {"n": 0}
    steps_per_epoch = len(digits.x_train) // spec.train.batch_size

    def poisoned(self, x, y, seed):
        obj, stats = original(self, x, y, seed)
        if self.training:
            calls["n"] += 1
            if calls["n"] > steps_per_epoch + 3:  # inside the second epoch
                obj = obj * math.nan
        return obj, stats

    monkeypatch.setattr(VAE, "objective", poisoned)
    with pytest.raises(TrainingDiverged, match=r"loss is nan at epoch 2.*epoch 1\) is kept"):
        train(spec, digits, tmp_path, NullTracker(), "fp", progress=False)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ckpt["state"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_nan_marks_the_mlflow_run_failed(digits, tmp_path, monkeypatch):
    """Through the stage entry point, with a real MLflow store."""
    from typer.testing import CliRunner

    import pipelines.common as common
    import pipelines.train as stage
    from vaebench.models.vae import VAE

    (tmp_path / "params.yaml").write_text((ROOT / "presets" / "tiny.yaml").read_text())
    data.prepare("digits", {}, tmp_path / "data" / "digits")
    for mod in (common, stage):
        monkeypatch.setattr(mod, "ROOT", tmp_path, raising=False)
        monkeypatch.setattr(mod, "RUNS", tmp_path / "runs", raising=False)
    monkeypatch.setattr(common, "DATA", tmp_path / "data")
    monkeypatch.setattr(common, "TRACKING", tmp_path / ".cache" / "tracking")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.delenv("VAEBENCH_NO_TRACK", raising=False)
    original = VAE.objective

    def poisoned(self, x, y, seed):
        obj, stats = original(self, x, y, seed)
        return (obj * math.nan if self.training else obj), stats

    monkeypatch.setattr(VAE, "objective", poisoned)
    result = CliRunner().invoke(stage.app, ["vae", "digits", "--seed", "0"])
    assert result.exit_code == 1
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert runs[0].info.run_name == "vae-digits/seed0"
    assert runs[0].data.tags["cell"] == "vae-digits" and runs[0].data.tags["seed"] == "0"
    assert runs[0].data.tags["machine.cpu"] and runs[0].data.params["defaults_used"]

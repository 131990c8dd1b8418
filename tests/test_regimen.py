"""The published training regimen: KL warm-up, Burda's schedule, early stopping, AdamNormGrad."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from vaebench import data
from vaebench.cells import Cell, run_spec
from vaebench.config import parse_params
from vaebench.regimen import (
    EarlyStopping,
    burda_epochs,
    burda_lr_factor,
    burda_stage,
    kl_warmup_weight,
    normalize_gradients_,
)
from vaebench.tracking import NullTracker
from vaebench.train import load_trained, resumable_checkpoint, train

ROOT = Path(__file__).resolve().parents[1]


def test_kl_warmup_is_the_vampprior_formula():
    # utils/training.py of the VampPrior: beta = epoch / warmup (epochs from 1), capped at 1
    assert [kl_warmup_weight(e, 100) for e in (1, 2, 50, 99, 100, 101, 500)] == [
        0.01, 0.02, 0.5, 0.99, 1.0, 1.0, 1.0]
    assert kl_warmup_weight(1, 0) == 1.0
    with pytest.raises(ValueError, match="counted from 1"):
        kl_warmup_weight(0, 100)


def test_burda_schedule_stages_and_rates():
    # 3^i epochs in stage i, 3280 in all; the official code's rounded rates
    lengths = [sum(1 for e in range(burda_epochs()) if burda_stage(e) == i) for i in range(8)]
    assert lengths == [1, 3, 9, 27, 81, 243, 729, 2187] and burda_epochs() == 3280
    firsts = [sum(3 ** j for j in range(i)) for i in range(8)]
    assert [burda_lr_factor(e) for e in firsts] == pytest.approx(
        [1.0, 0.72, 0.52, 0.37, 0.27, 0.19, 0.14, 0.10])
    assert burda_lr_factor(5000) == pytest.approx(0.1)
    # within rounding of the paper's 10^(-i/7)
    for i, e in enumerate(firsts):
        assert abs(burda_lr_factor(e) - 10 ** (-i / 7)) <= 0.005


def test_early_stopping_counts_as_the_vampprior_code():
    # patience 2, warm-up 3: the counter stays 0 before epoch 3, stops when it exceeds 2
    es = EarlyStopping(patience=2, warmup_epochs=3)
    values = [1.0, 2.0, 1.5, 1.0, 1.9, 1.8]
    improved = [es.update(e, v) for e, v in enumerate(values, 1)]
    assert improved == [True, True, False, False, False, False]
    assert (es.best_epoch, es.best_value, es.stopped_at) == (2, 2.0, 5)
    assert es.stop
    es = EarlyStopping(patience=2, warmup_epochs=10)  # inside the warm-up it never stops
    for e, v in enumerate([5.0] + [1.0] * 8, 1):
        es.update(e, v)
    assert not es.stop and es.counter == 0


def _adamnormgrad_reference(params, grads, lr, steps, betas=(0.9, 0.999), eps=1e-8,
                            torch_eps=False):
    """utils/optimizer.py of the VampPrior (AdamNormGrad), written out in float64; with
    ``torch_eps`` eps is added after the bias correction of sqrt(v), as PyTorch's Adam does."""
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    out = [p.clone() for p in params]
    for t in range(1, steps + 1):
        for i, g in enumerate(grads[t - 1]):
            g = g / (g.norm() + 1e-7)
            m[i] = betas[0] * m[i] + (1 - betas[0]) * g
            v[i] = betas[1] * v[i] + (1 - betas[1]) * g * g
            bc1, bc2 = 1 - betas[0] ** t, 1 - betas[1] ** t
            if torch_eps:
                out[i] = out[i] - lr / bc1 * m[i] / (v[i].sqrt() / math.sqrt(bc2) + eps)
            else:
                out[i] = out[i] - lr * math.sqrt(bc2) / bc1 * m[i] / (v[i].sqrt() + eps)
    return out


def test_unit_norm_adam_matches_adamnormgrad():
    g = torch.Generator().manual_seed(0)
    shapes = [(30, 20), (30,), (5, 30)]
    start = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]
    grads = [[torch.randn(s, generator=g, dtype=torch.float64) * 10 ** k
              for k, s in enumerate(shapes)] for _ in range(5)]
    params = [torch.nn.Parameter(p.clone()) for p in start]
    opt = torch.optim.Adam(params, lr=5e-4)
    for step in grads:
        for p, gr in zip(params, step, strict=True):
            p.grad = gr.clone()
        normalize_gradients_(params)
        for p in params:
            assert p.grad.norm().item() == pytest.approx(1.0, abs=1e-6)
        opt.step()
    same_eps = _adamnormgrad_reference(start, grads, 5e-4, 5, torch_eps=True)
    theirs = _adamnormgrad_reference(start, grads, 5e-4, 5)
    for p, r, t, s in zip(params, same_eps, theirs, start, strict=True):
        ours = p.detach() - s
        assert torch.allclose(ours, r - s, rtol=1e-9, atol=1e-15)
        # AdamNormGrad adds eps before the bias correction: it only shows on elements whose
        # normalized gradient is tiny, and the updates agree to 0.5% as a whole
        assert (ours - (t - s)).norm() / (t - s).norm() < 5e-3


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "digits"
    data.prepare("digits", {}, out)
    return data.load(out)


def spec_for(epochs: int, **train):
    raw = yaml.safe_load((ROOT / "presets" / "tiny.yaml").read_text())
    raw["study"].update(seeds=[0], backend="eager")
    raw["train"]["vae"] = {**raw["train"]["vae"], "epochs": epochs, **train}
    return run_spec(parse_params(raw), Cell("vae", "digits", 0))


def test_early_stopping_keeps_the_best_epoch_and_warmup_weights(digits, tmp_path, monkeypatch):
    """A scripted validation curve stops training at the predicted epoch; the model returned
    (and the one the evaluate stage loads) is the one an uninterrupted run has after the
    best epoch, trained with the same KL weights."""
    import vaebench.train as trainer

    script = iter([-50.0, -40.0, -45.0, -41.0, -42.0, -43.0, -39.0])  # best at 2, stop at 5
    real = trainer.evaluate_split

    def scripted(*args, **kwargs):
        return {**real(*args, **kwargs), "elbo": next(script)}

    monkeypatch.setattr(trainer, "evaluate_split", scripted)
    spec = spec_for(7, early_stopping={"patience": 2}, kl_warmup_epochs=3)
    model, state = train(spec, digits, tmp_path / "es", NullTracker(), "fp", progress=False)
    assert state.epoch == 5 and state.early_stopping["stopped_at"] == 5
    assert state.early_stopping["best_epoch"] == 2
    assert [round(r["kl_weight"], 6) for r in state.history] == [0.333333, 0.666667, 1, 1, 1]
    assert resumable_checkpoint(tmp_path / "es" / "checkpoint.pt", "fp", 7) is None
    monkeypatch.setattr(trainer, "evaluate_split", real)
    ref, _ = train(spec_for(2, kl_warmup_epochs=3), digits, tmp_path / "ref", NullTracker(),
                   "fp", progress=False)
    loaded, _, _ = load_trained(spec, digits, tmp_path / "es")
    for name, value in ref.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
        assert torch.equal(loaded.state_dict()[name], value), name

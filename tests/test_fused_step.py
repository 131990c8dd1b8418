"""vaebench.fused_step: the hand-written backward pass against autograd's, and its forward pass
against the model's own objective."""

from __future__ import annotations

import pytest
import torch

from vaebench.fused_step import elbo_step, unsupported
from vaebench.models import DataInfo, build_model, config_class
from vaebench.nets.linear import onednn_available, set_gemm

D, N_CLASSES = 30, 4
CASES = {  # model, its options, hidden sizes, kl_weight
    "vae": ("vae", {}, [16], 1.0),
    "vae, two hidden layers, KL warm-up": ("vae", {}, [24, 12], 0.25),
    "beta-VAE": ("beta_vae", {"beta": 4.0}, [16], 1.0),
    "CVAE": ("cvae", {}, [16], 1.0),
}


def _model(name: str, options: dict, hidden: list[int], kl_weight: float, dtype, seed: int = 0,
           dim: int = D, **cfg):
    torch.manual_seed(seed)
    info = DataInfo(dim=dim, image_shape=None, kind="image", n_classes=N_CLASSES)
    config = config_class(name)(latent_dim=3, epochs=1, batch_size=8, lr=1e-3, hidden=hidden,
                                likelihood="bernoulli", **options, **cfg)
    model = build_model(name, config, info, backend="eager").to(dtype)
    model.kl_weight = kl_weight
    return model


def _batch(n: int, dtype, dim: int = D):
    gen = torch.Generator().manual_seed(3)
    x = torch.bernoulli(torch.rand(n, dim, generator=gen, dtype=dtype), generator=gen)
    return x, torch.randint(0, N_CLASSES, (n,), generator=gen)


def _autograd(model, x, y, seed):
    model.zero_grad(set_to_none=True)
    value, stats = model.objective(x, y, seed)
    (-value.mean()).backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    return value.detach(), {k: v.detach() for k, v in stats.items()}, grads


def _fused(model, x, y, seed):
    model.zero_grad(set_to_none=True)
    value, stats = elbo_step(model, x, y, seed)
    return value, stats, {k: p.grad.clone() for k, p in model.named_parameters()}


@pytest.mark.parametrize("case", CASES)
def test_gradients_equal_autograds_in_float64(case):
    model = _model(*CASES[case], dtype=torch.float64)
    x, y = _batch(8, torch.float64)
    value, stats, grads = _fused(model, x, y, seed=11)
    ref_value, ref_stats, ref_grads = _autograd(model, x, y, seed=11)
    torch.testing.assert_close(value, ref_value, rtol=0, atol=0)
    for k in ("elbo", "recon", "kl"):
        torch.testing.assert_close(stats[k], ref_stats[k], rtol=0, atol=0)
    assert grads.keys() == ref_grads.keys()
    for k, g in grads.items():
        torch.testing.assert_close(g, ref_grads[k], rtol=1e-11, atol=1e-13, msg=k)


@pytest.mark.parametrize("gemm", ["aten", "onednn"])
def test_float32_step_matches_the_objective_and_float64_gradients(gemm):
    """In float32, through the GEMM library the trainer would use: the stats are the model's
    own to the bit, the gradients those of float64 autograd to float32 round-off. The layer is
    large enough (128 x 784 x 64 multiply-adds) to go through oneDNN under ``onednn``."""
    if gemm == "onednn" and not onednn_available():
        pytest.skip("this torch build has no oneDNN linear op")
    dim = 784
    model = _model("beta_vae", {"beta": 2.0}, [64], 1.0, torch.float32, dim=dim)
    x, y = _batch(128, torch.float32, dim)
    try:
        set_gemm(gemm)
        value, stats, grads = _fused(model, x, y, seed=5)
        ref_value, ref_stats, _ = _autograd(model, x, y, seed=5)
    finally:
        set_gemm("aten")
    assert torch.equal(value, ref_value)
    assert all(torch.equal(stats[k], ref_stats[k]) for k in ref_stats)
    _, _, ref_grads = _autograd(model.double(), x.double(), y, seed=5)
    for k, g in grads.items():
        scale = ref_grads[k].abs().max()
        assert (g.double() - ref_grads[k]).abs().max() <= 1e-5 * scale, k


def test_the_gradient_moves_the_loss_as_it_says():
    """An independent check of the sign and size of the whole gradient: a small step against
    it lowers the loss by the step times the squared norm, to first order (float64)."""
    model = _model("vae", {}, [16], 1.0, torch.float64)
    x, y = _batch(8, torch.float64)
    value, _, grads = _fused(model, x, y, seed=2)
    h = 1e-6
    with torch.no_grad():
        for k, p in model.named_parameters():
            p.sub_(h * grads[k])
        moved, _ = model.objective(x, y, 2)
    drop = float(moved.mean() - value.mean())  # the objective rises as the loss falls
    predicted = h * sum(float((g * g).sum()) for g in grads.values())
    assert drop == pytest.approx(predicted, rel=1e-4)


@pytest.mark.parametrize("name, cfg, why", [
    ("iwae", {"k": 5}, "its own objective"),
    ("vae", {"likelihood": "gaussian"}, "likelihood 'gaussian'"),
    ("vae", {"bernoulli_eps": 1e-5}, "bernoulli_eps=1e-05"),
    ("vae", {"kl_estimator": "monte_carlo"}, "kl_estimator 'monte_carlo'"),
    ("vae", {"arch": "gated_mlp"}, "arch 'gated_mlp'"),
])
def test_models_it_does_not_cover_are_named_and_refused(name, cfg, why):
    cfg = {"likelihood": "bernoulli", **cfg}
    info = DataInfo(dim=D, image_shape=None, kind="image", n_classes=N_CLASSES)
    config = config_class(name)(latent_dim=3, epochs=1, batch_size=8, lr=1e-3, **cfg)
    model = build_model(name, config, info, backend="eager")
    assert why in unsupported(model)
    x, y = _batch(8, torch.float32)
    with pytest.raises(ValueError, match="elbo_step cannot train this model"):
        elbo_step(model, x, y, 0)


def test_the_trainers_models_are_covered():
    for case in CASES.values():
        assert unsupported(_model(*case, dtype=torch.float32)) is None

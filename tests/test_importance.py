"""The fast importance-sampling log weights against vaebench.evaluate's implementation.

Same draws by contract (per sample chunk and point batch seeds), so the values must agree:
to float64 round-off for float64 models (the decoder's blocks and the likelihood's algebra
change only the summation order), and within ``F32_ATOL`` nats in float32.
"""

from __future__ import annotations

import pytest
import torch

from vaebench import evaluate, importance
from vaebench.models import DataInfo, build_model, config_class
from vaebench.nets.linear import set_gemm

F32_ATOL = 2e-3  # nats on log w of magnitude ~50: float32 GEMMs in another blocking


def _model(name="vae", likelihood="bernoulli", n_classes=None, dtype=torch.float64,
           backend="eager"):
    torch.manual_seed(0)
    info = DataInfo(dim=12, image_shape=None, kind="image", n_classes=n_classes)
    cfg = config_class(name)(hidden=[16], latent_dim=3, likelihood=likelihood, epochs=1,
                             batch_size=8, lr=1e-3)
    return build_model(name, cfg, info, backend=backend).to(dtype).eval()


def _data(n=37, dtype=torch.float64, binary=True):
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(n, 12, generator=gen, dtype=dtype)
    return (x > 0.5).to(dtype) if binary else x


@pytest.mark.parametrize("k,k_chunk,bs,rows", [(7, 3, 2, 5), (201, 100, 4, 64), (5, 5, 1, 1)])
def test_bernoulli_fast_path_equals_the_reference_in_float64(k, k_chunk, bs, rows):
    model, x = _model(), _data()
    ref = evaluate.importance_log_weights(model, x, None, k, 3, bs, k_chunk)
    fast = importance.importance_log_weights(model, x, None, k, 3, bs, k_chunk, rows=rows)
    assert fast.shape == ref.shape == (k, len(x)) and fast.dtype == torch.float64
    torch.testing.assert_close(fast, ref, rtol=0, atol=1e-10)
    assert importance._bernoulli_head(model) is not None  # the fast path was taken


@pytest.mark.parametrize("case", ["gaussian", "conditional"])
def test_generic_path_equals_the_reference_in_float64(case):
    if case == "gaussian":
        model, x, y = _model(likelihood="gaussian"), _data(binary=False), None
    else:
        model, x = _model("cvae", n_classes=3), _data()
        y = torch.arange(len(x)) % 3
    assert importance._bernoulli_head(model) is None
    ref = evaluate.importance_log_weights(model, x, y, 9, 5, 3, 4)
    fast = importance.importance_log_weights(model, x, y, 9, 5, 3, 4, rows=7)
    torch.testing.assert_close(fast, ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("backend,gemm", [("eager", "aten"), ("compile", "auto")])
def test_float32_within_tolerance(backend, gemm):
    set_gemm(gemm)
    try:
        model = _model(dtype=torch.float32, backend="eager")
        x = _data(n=300, dtype=torch.float32)
        ref = evaluate.importance_log_weights(model, x, None, 40, 2, 50, 20)
        model.backend = backend  # the same eps up to float32 ulps of log/cos
        fast = importance.importance_log_weights(model, x, None, 40, 2, 50, 20)
    finally:
        set_gemm("aten")
    assert (fast - ref).abs().max() < F32_ATOL
    # the tolerance is far below the Monte Carlo noise of the estimate it feeds
    assert F32_ATOL < 0.01 * ref.std(0).mean()


def test_softplus_rowsum_is_the_closed_form_over_the_whole_range_of_logits():
    """sum_i softplus(l_i) = sum_i max(l_i, 0) + log1p(exp(-|l_i|)) for logits from -100 to
    100: to float64 round-off in float64 (past the fused kernel's threshold too, where a
    threshold of 20 would drop up to 2e-9 per pixel) and to float32 round-off in float32."""
    logits = torch.linspace(-100.0, 100.0, 8 * 784, dtype=torch.float64).reshape(8, 784)
    ref = (torch.relu(logits) + torch.log1p(torch.exp(-logits.abs()))).sum(-1)
    torch.testing.assert_close(importance._softplus_rowsum_eager(logits), ref,
                               rtol=1e-15, atol=1e-12)
    got32 = importance._softplus_rowsum_eager(logits.float()).double()
    torch.testing.assert_close(got32, ref, rtol=1e-6, atol=1e-4)

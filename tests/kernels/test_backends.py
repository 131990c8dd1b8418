"""Every backend against the eager reference, closed forms and torch.distributions."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal, kl_divergence

import kernels
from kernels import reference

BACKENDS = ["eager", "compile", pytest.param("triton", marks=pytest.mark.triton)]
LOW_PRECISION = [torch.bfloat16, torch.float16]


def _sigma64(logvar):
    return torch.exp(0.5 * logvar.double())


@pytest.mark.parametrize("backend", BACKENDS)
def test_log_probs_match_torch_distributions(backend, inputs):
    mu, logvar = inputs((4, 6, 5), torch.float64, seed=1)
    z, log_q, log_p = kernels.reparameterize(mu, logvar, 3, seed=4, with_log_probs=True,
                                             backend=backend)
    assert z.shape == (3, 4, 6, 5) and log_q.shape == log_p.shape == (3, 4, 6)
    assert log_q.dtype == log_p.dtype == torch.float64
    expected_q = Normal(mu, _sigma64(logvar)).log_prob(z).sum(-1)
    expected_p = Normal(0.0, 1.0).log_prob(z).sum(-1)
    torch.testing.assert_close(log_q, expected_q, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(log_p, expected_p, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, *LOW_PRECISION])
def test_kl_matches_closed_form(backend, dtype, inputs):
    mu, logvar = inputs((7, 33), dtype, seed=2)
    kl = kernels.gaussian_kl(mu, logvar, backend=backend)
    _, kl_fused = kernels.reparameterize_kl(mu, logvar, 2, seed=1, backend=backend)
    # float64 reference from the very same (possibly rounded) inputs
    m, lv = mu.double(), logvar.double()
    closed = 0.5 * (m**2 + lv.exp() - 1.0 - lv).sum(-1)
    library = kl_divergence(Normal(m, _sigma64(lv)), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(closed, library, rtol=1e-12, atol=1e-12)
    assert kl.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    torch.testing.assert_close(kl.double(), closed, rtol=tol, atol=tol)
    torch.testing.assert_close(kl_fused, kl, rtol=tol, atol=tol)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, *LOW_PRECISION])
def test_z_matches_float64_reparameterization(backend, dtype, inputs):
    mu, logvar = inputs((3, 2, 17), dtype, seed=3)
    z = kernels.reparameterize(mu, logvar, 4, seed=21, backend=backend)
    assert z.dtype == dtype and z.shape == (4, 3, 2, 17)
    eps = reference.standard_normal(21, (4, 3, 2, 17), mu.device, torch.float64)
    z64 = mu.double() + _sigma64(logvar) * eps
    # float32 math, one rounding to the output dtype (eps itself agrees to float32 ulps).
    # Triton's CPU interpreter truncates float32 -> bfloat16 (interpreter.py, cast_impl)
    # where GPUs round to nearest: one bfloat16 ulp, not half of one.
    rtol = {torch.float32: 2e-6, torch.bfloat16: 2**-8, torch.float16: 2**-11}[dtype]
    if backend == "triton" and dtype == torch.bfloat16:
        rtol = 2**-7
    torch.testing.assert_close(z.double(), z64, rtol=rtol, atol=4e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n_samples", [1, 3])
def test_gradients_match_eager_autograd(backend, n_samples, inputs):
    mu, logvar = inputs((5, 2, 9), requires_grad=True, seed=4)
    mu_e, logvar_e = (t.detach().clone().requires_grad_() for t in (mu, logvar))
    outs = kernels.reparameterize(mu, logvar, n_samples, seed=6, with_log_probs=True,
                                  backend=backend)
    outs_e = kernels.reparameterize(mu_e, logvar_e, n_samples, seed=6, with_log_probs=True,
                                    backend="eager")
    kl = kernels.gaussian_kl(mu, logvar, backend=backend)
    kl_e = kernels.gaussian_kl(mu_e, logvar_e, backend="eager")
    gen = torch.Generator().manual_seed(0)
    weights = [torch.randn(o.shape, generator=gen).to(mu.device) for o in (*outs_e, kl_e)]
    sum((o * w).sum() for o, w in zip((*outs, kl), weights, strict=True)).backward()
    sum((o * w).sum() for o, w in zip((*outs_e, kl_e), weights, strict=True)).backward()
    torch.testing.assert_close(mu.grad, mu_e.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logvar.grad, logvar_e.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_float64(backend, inputs):
    mu, logvar = inputs((3, 4), torch.float64, seed=5, requires_grad=True)

    def with_log_probs(m, lv):
        return kernels.reparameterize(m, lv, 2, seed=3, with_log_probs=True, backend=backend)

    def fused(m, lv):
        return kernels.reparameterize_kl(m, lv, 2, seed=3, backend=backend)

    def kl_only(m, lv):
        return kernels.gaussian_kl(m, lv, backend=backend)

    for fn in (with_log_probs, fused, kl_only):
        assert torch.autograd.gradcheck(fn, (mu, logvar), eps=1e-6, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_inputs_and_leading_shapes(backend, inputs):
    base = inputs((6, 4, 9), seed=6)
    # (4, 6, 9) with non-unit row strides, a (3, 6) transposed slice, a strided (3, 4, 7)
    for view in (lambda t: t.transpose(0, 1), lambda t: t[:, 1, :3].t(),
                 lambda t: t[::2, :, 1:8]):
        leaves = [t.clone().requires_grad_() for t in base]
        leaves_e = [t.clone().requires_grad_() for t in base]
        mu, logvar = view(leaves[0]), view(leaves[1])
        assert not mu.is_contiguous()
        z, kl = kernels.reparameterize_kl(mu, logvar, 2, seed=9, backend=backend)
        z_e, kl_e = kernels.reparameterize_kl(view(leaves_e[0]), view(leaves_e[1]), 2, seed=9,
                                              backend="eager")
        torch.testing.assert_close(z, z_e, rtol=1e-6, atol=2e-6)
        torch.testing.assert_close(kl, kl_e, rtol=1e-6, atol=1e-6)
        w = torch.linspace(-1.0, 1.0, z.numel(), device=z.device).view(z.shape)
        ((z * w).sum() + kl.sum()).backward()
        ((z_e * w).sum() + kl_e.sum()).backward()
        for leaf, leaf_e in zip(leaves, leaves_e, strict=True):
            torch.testing.assert_close(leaf.grad, leaf_e.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_propagates_without_crash(backend, inputs):
    mu, logvar = inputs((4, 6), seed=7)
    mu[1, 2] = float("nan")
    logvar[3, 0] = float("nan")
    mu.requires_grad_()
    logvar.requires_grad_()
    z, log_q, log_p = kernels.reparameterize(mu, logvar, 2, seed=1, with_log_probs=True,
                                             backend=backend)
    kl = kernels.gaussian_kl(mu, logvar, backend=backend)
    nan_z = torch.zeros(2, 4, 6, dtype=torch.bool, device=mu.device)
    nan_z[:, 1, 2] = True
    nan_z[:, 3, 0] = True
    assert torch.equal(z.isnan(), nan_z)
    assert torch.equal(kl.isnan().cpu(), torch.tensor([False, True, False, True]))
    assert torch.equal(log_p.isnan(), nan_z.any(-1))
    assert torch.equal(log_q.isnan().cpu(), torch.tensor([[False, False, False, True]] * 2))
    (z.nan_to_num().sum() + log_q.nan_to_num().sum()).backward()
    finite_rows = torch.tensor([True, True, True, False], device=mu.device)
    assert torch.isfinite(mu.grad).all()  # dz/dmu = 1 whatever mu is
    assert torch.isfinite(logvar.grad[finite_rows]).all()
    assert logvar.grad[3, 0].isnan()


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_batch(backend, device):
    mu = torch.zeros(0, 5, device=device)
    z, kl = kernels.reparameterize_kl(mu, mu, 3, backend=backend)
    assert z.shape == (3, 0, 5) and kl.shape == (0,)


def test_compile_backend_does_not_recompile_for_new_sizes_samples_or_seeds(inputs):
    """After one call with n_samples == 1 and one with n_samples > 1 (dynamo specializes
    sizes of 1), the graphs serve every batch size, sample count and seed."""
    from torch._dynamo.utils import counters

    def run(n, s, seed):
        mu, logvar = inputs((n, 6), requires_grad=True, seed=n)
        z, kl = kernels.reparameterize_kl(mu, logvar, s, seed=seed, backend="compile")
        (z.sum() + kl.sum()).backward()
        with torch.no_grad():
            kernels.reparameterize_kl(mu, logvar, s, seed=seed, backend="compile")

    for n, s in [(5, 3), (6, 2), (5, 1), (6, 1)]:  # warm-up; the first calls may specialize
        run(n, s, 0)
    before = counters["stats"]["unique_graphs"]
    for n, s, seed in [(7, 4, 2), (9, 1, 3), (33, 5, 2**62 + 1), (2, 7, 5)]:
        run(n, s, seed)
    assert counters["stats"]["unique_graphs"] == before

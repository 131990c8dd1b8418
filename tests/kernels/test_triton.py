"""Triton kernels (by the interpreter on the CPU, compiled on CUDA): masks, tiling, dtypes and
the hand-written backward against autograd of the eager formulas on the very eps the kernel
drew."""

from __future__ import annotations

import pytest
import torch

from kernels import reference

pytestmark = pytest.mark.triton
triton_latent = pytest.importorskip("kernels.triton_latent")

# (shape, block_d): odd sizes leave partial row tiles and column chunks; block_d < D makes
# the forward loop over column chunks and the backward grid span several column tiles.
SHAPES = [((1, 1), None), ((3, 5), None), ((37, 19), None), ((2, 3, 33), 16), ((5, 70), 32)]


@pytest.mark.parametrize("shape,block_d", SHAPES)
@pytest.mark.parametrize("n_samples", [1, 4])
def test_forward_matches_eager(shape, block_d, n_samples, inputs):
    mu, logvar = inputs(shape, seed=sum(shape))
    kw = {"tile": 64, "block_d": block_d}
    z, log_q, log_p = triton_latent.reparameterize(mu, logvar, n_samples, 17,
                                                   with_log_probs=True, **kw)
    z_e, log_q_e, log_p_e = reference.reparameterize(mu, logvar, n_samples, 17, True)
    torch.testing.assert_close(z, z_e, rtol=1e-6, atol=2e-6)
    torch.testing.assert_close(log_q, log_q_e, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(log_p, log_p_e, rtol=1e-5, atol=1e-5)
    z2, kl = triton_latent.reparameterize_kl(mu, logvar, n_samples, 17, **kw)
    assert torch.equal(z2, z)
    torch.testing.assert_close(kl, reference.gaussian_kl(mu, logvar), rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(triton_latent.gaussian_kl(mu, logvar, **kw), kl, rtol=0, atol=0)


def _eager_outputs(mu, logvar, eps):
    """The reference formulas on a given eps (autograd gives the expected gradients)."""
    z = reference.reparameterize_with_eps(mu, logvar, eps)
    return (z, reference.gaussian_kl(mu, logvar), reference.log_q_from_eps(logvar, eps),
            reference.log_p_standard(z))


@pytest.mark.parametrize("shape,block_d", SHAPES[1:])
@pytest.mark.parametrize("n_samples", [1, 3])
@pytest.mark.parametrize("used", [(0,), (1,), (2,), (3,), (0, 1), (0, 2, 3), (0, 1, 2, 3)])
def test_backward_matches_autograd_on_recovered_eps(shape, block_d, n_samples, used, inputs):
    mu, logvar = inputs(shape, torch.float64, seed=len(shape), requires_grad=True)
    outs = triton_latent.LatentTriton.apply(mu, logvar, n_samples, 5, True, True, True, 0, 64,
                                            block_d)
    z, kl, log_q, log_p = outs[0], outs[1], outs[2], outs[3]
    sigma = torch.exp(0.5 * logvar.detach())
    eps = ((z.detach() - mu.detach().reshape(z.shape[1:])) / sigma.reshape(z.shape[1:]))
    eps = eps.reshape(n_samples, *shape)
    if n_samples == 1:
        eps = eps[0]
    ref = _eager_outputs(mu, logvar, eps)
    # forward agrees on this eps
    for got, want in zip((z.reshape(ref[0].shape), kl.reshape(ref[1].shape),
                          log_q.reshape(ref[2].shape), log_p.reshape(ref[3].shape)), ref, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    gen = torch.Generator().manual_seed(1)
    weights = [torch.randn(r.shape, generator=gen, dtype=torch.float64).to(mu.device)
               for r in ref]
    got = torch.autograd.grad(sum((outs[i].reshape(ref[i].shape) * weights[i]).sum()
                                  for i in used), (mu, logvar))
    want = torch.autograd.grad(sum((ref[i] * weights[i]).sum() for i in used), (mu, logvar),
                               materialize_grads=True)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_backward_against_float64(dtype, inputs):
    mu, logvar = inputs((6, 40), dtype, seed=9, requires_grad=True)
    z, kl = triton_latent.reparameterize_kl(mu, logvar, 2, 3, block_d=16)
    assert z.dtype == dtype and kl.dtype == torch.float32
    g_z = torch.linspace(-1, 1, z.numel(), device=z.device).view(z.shape).to(dtype)
    g_mu, g_lv = torch.autograd.grad((z, kl), (mu, logvar), (g_z, torch.ones_like(kl)))
    assert g_mu.dtype == g_lv.dtype == dtype
    # float64 reference on the same rounded inputs and the eager eps
    m, lv = mu.detach().double().requires_grad_(), logvar.detach().double().requires_grad_()
    eps = reference.standard_normal(3, (2, 6, 40), m.device, torch.float64)
    z64, kl64 = reference.reparameterize_with_eps(m, lv, eps), reference.gaussian_kl(m, lv)
    w_mu, w_lv = torch.autograd.grad((z64, kl64), (m, lv), (g_z.double(), torch.ones_like(kl64)))
    tol = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype]
    torch.testing.assert_close(g_mu.double(), w_mu, rtol=tol, atol=tol)
    torch.testing.assert_close(g_lv.double(), w_lv, rtol=tol, atol=tol)


def test_counters_beyond_2_pow_32_in_backward(inputs):
    """With counters past 2**32 the backward must regenerate the forward's eps."""
    mu, logvar = inputs((4, 9), torch.float64, seed=2, requires_grad=True)
    offset = 2**32 - 20
    (z,) = triton_latent.LatentTriton.apply(mu, logvar, 2, 7, True, False, False, offset, 16, 8)
    eps = (z.detach() - mu.detach()) / torch.exp(0.5 * logvar.detach())
    g_mu, g_lv = torch.autograd.grad(z.sum(), (mu, logvar))
    torch.testing.assert_close(g_mu, torch.full_like(g_mu, 2.0), rtol=0, atol=1e-12)
    expected = (0.5 * torch.exp(0.5 * logvar.detach()) * eps).sum(0)
    torch.testing.assert_close(g_lv, expected, rtol=1e-12, atol=1e-12)
    eager = reference.standard_normal(7, (2, 4, 9), mu.device, torch.float64, offset=offset)
    torch.testing.assert_close(eps, eager, rtol=0, atol=2e-6)


def test_more_than_2_pow_31_elements(device):
    """64-bit offsets: a draw of 2**31 + 2**20 elements matches the reference past 2**31,
    forward and backward (mu = 0, logvar = 0, so z = eps and d z / d logvar = eps / 2).
    On CUDA only (about 50 GB of GPU memory): the interpreter would take hours."""
    if device.type != "cuda":
        pytest.skip("needs a CUDA device (VAEBENCH_TEST_DEVICE=cuda)")
    n, d = (1 << 25) + (1 << 14), 64
    if torch.cuda.mem_get_info(device)[0] < 50 * 2**30:
        pytest.skip("less than 50 GB of GPU memory free")
    mu = torch.zeros(n, d, device=device, requires_grad=True)
    logvar = torch.zeros(n, d, device=device, requires_grad=True)
    z, kl = triton_latent.reparameterize_kl(mu, logvar, 1, 3)
    assert z.numel() > 2**31 and torch.equal(kl, torch.zeros_like(kl))
    for start in (2**31 - 2048, z.numel() - 4096):
        want = reference.standard_normal(3, (4096,), device, offset=start)
        torch.testing.assert_close(z.view(-1)[start:start + 4096], want, rtol=0, atol=2e-6)
    g_mu, g_lv = torch.autograd.grad(z.sum(), (mu, logvar))
    tail = slice(z.numel() - 4096, None)
    assert torch.equal(g_mu.view(-1)[tail], torch.ones(4096, device=device))
    torch.testing.assert_close(g_lv.view(-1)[tail], 0.5 * z.detach().view(-1)[tail],
                               rtol=0, atol=1e-6)

"""``benchmarks/gpu_draw.py`` reports nothing from a broken kernel: its check passes the two
draw kernels (through Triton's interpreter on the CPU, compiled on a GPU) and stops on a
planted wrong stream or wrong moments."""

from __future__ import annotations

import pytest
import torch

from benchmarks import gpu_draw

N = 3 * gpu_draw.BLOCK + 5  # not a multiple of 4 * BLOCK: the masks of both kernels are used


def test_the_check_passes_the_draw_kernels(device):
    got = gpu_draw.check(device, n=N)
    assert got["randn_matches_reference"] == N
    assert abs(got["randn4x_mean"]) < 0.2 and abs(got["randn4x_var"] - 1) < 0.2


def test_the_check_stops_on_another_stream(device, monkeypatch):
    draw = gpu_draw.draw_randn
    monkeypatch.setattr(gpu_draw, "draw_randn", lambda out, seed: draw(out, seed + 1))
    with pytest.raises(SystemExit, match="does not draw kernels.reference's stream"):
        gpu_draw.check(device, n=N)


def test_the_check_stops_on_wrong_moments(device, monkeypatch):
    draw = gpu_draw.draw_randn4x

    def scaled(out: torch.Tensor, seed: int) -> None:
        draw(out, seed)
        out.mul_(1.1)  # variance 1.21

    monkeypatch.setattr(gpu_draw, "draw_randn4x", scaled)
    with pytest.raises(SystemExit, match="randn4x draws mean"):
        gpu_draw.check(device, n=N)


def test_the_randn4x_kernel_fills_every_position(device):
    out = torch.full((N,), float("nan"), device=device)
    gpu_draw.draw_randn4x(out, 3)
    assert not out.isnan().any()


@pytest.mark.parametrize("fused", ["z_randn", "z_randn4x"])
def test_the_check_stops_on_a_wrong_fused_z(device, monkeypatch, fused):
    kernel = getattr(gpu_draw, fused)

    def shifted(mu, lv, z, seed):
        kernel(mu, lv, z, seed)
        z[-1, -1] += 1e-3  # the last element: a ragged tail's mask

    monkeypatch.setattr(gpu_draw, fused, shifted)
    with pytest.raises(SystemExit, match=f"{fused} is not mu"):
        gpu_draw.check(device, n=N)

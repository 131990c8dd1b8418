"""The procedural dSprites-like renderer: factor grid, geometry of the shapes, seeded subsample."""

from __future__ import annotations

import numpy as np
import pytest

from vaebench.data import dsprites as ds
from vaebench.data import load, prepare

PIXELS = ds.IMAGE_SIZE
HALF = ds.HALF_WIDTH * PIXELS  # half side of the square at scale 1, in pixels (9.6)


def positions():
    grid = np.linspace(0.0, 1.0, 32)
    px, py = np.meshgrid(grid, grid)
    return px.ravel(), py.ravel()


def areas(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1).sum(axis=1)


def centroids(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.indices(images.shape[1:])
    mass = areas(images)
    return (images * cols).sum(axis=(1, 2)) / mass, (images * rows).sum(axis=(1, 2)) / mass


def test_factor_grid_matches_dsprites():
    assert ds.FACTOR_SIZES == (3, 6, 40, 32, 32) and ds.N_COMBINATIONS == 737280
    grid = ds.all_factor_indices()
    assert grid.shape == (737280, 5)
    assert np.array_equal(np.ravel_multi_index(grid.T, ds.FACTOR_SIZES), np.arange(737280))
    values = ds.factor_values()
    assert np.allclose(values["scale"], [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert values["orientation"][0] == 0.0 and values["orientation"][-1] < 2 * np.pi
    assert np.allclose(np.diff(values["orientation"]), 2 * np.pi / 40)
    assert values["posX"][0] == 0.0 and values["posX"][-1] == 1.0 and len(values["posY"]) == 32


@pytest.mark.parametrize(("scale", "orientation", "rtol"), [
    (1.0, 0.3, 0.005), (0.5, 0.3, 0.01), (1.0, np.pi / 4, 0.01), (1.0, 0.0, 0.025),
])
def test_square_area(scale, orientation, rtol):
    """Pixel-centre sampling is unbiased over random offsets: the mean area over the 32x32
    positions approaches the exact area (2 * half side)^2; each image is within one perimeter."""
    images = ds.render(0, scale, orientation, *positions())
    exact = (2 * HALF * scale) ** 2
    assert abs(areas(images).mean() - exact) <= rtol * exact
    assert np.all(np.abs(areas(images) - exact) <= 4 * 2 * HALF * scale)


def test_ellipse_area_and_symmetry():
    images = ds.render(1, 1.0, 0.3, *positions())
    exact = np.pi * HALF * (ds.ELLIPSE_ASPECT * HALF)
    assert abs(areas(images).mean() - exact) <= 0.01 * exact
    # centred, unrotated: exactly mirror symmetric about both axes
    centred = ds.render(1, 0.8, 0.0, 0.5, 0.5)[0]
    assert np.array_equal(centred, centred[:, ::-1]) and np.array_equal(centred, centred[::-1])
    # wider than tall at orientation 0, taller than wide at a quarter turn
    assert np.ptp(np.flatnonzero(centred.any(0))) > np.ptp(np.flatnonzero(centred.any(1)))
    turned = ds.render(1, 0.8, np.pi / 2, 0.5, 0.5)[0]
    assert np.array_equal(turned, centred.T)
    # invariant under a half turn (up to boundary pixels) for any position and angle
    theta = ds.factor_values()["orientation"][7]
    a = ds.render(1, 1.0, theta, 0.37, 0.61)[0]
    b = ds.render(1, 1.0, theta + np.pi, 0.37, 0.61)[0]
    assert (a != b).sum() <= 2


def test_heart_mirror_symmetric_but_not_half_turn_symmetric():
    heart = ds.render(2, 0.8, 0.0, 0.5, 0.5)[0]
    assert np.array_equal(heart, heart[:, ::-1])
    assert (heart != heart[::-1]).sum() > 50
    # the lobes are at the top: more mass above the centre row than below
    assert heart[:32].sum() > heart[32:].sum()
    assert (ds.render(2, 1.0, 0.0, 0.4, 0.6)[0] != ds.render(2, 1.0, np.pi, 0.4, 0.6)[0]).sum() > 50


def test_square_quarter_turn_symmetry():
    a = ds.render(0, 1.0, 0.4, 0.3, 0.7)[0]
    b = ds.render(0, 1.0, 0.4 + np.pi / 2, 0.3, 0.7)[0]
    assert (a != b).sum() <= 2


@pytest.mark.parametrize("shape", [0, 1, 2])
def test_position_moves_centroid(shape):
    """Centroid (pixel index units) = centre * 64 - 0.5 with centre = 0.2 + 0.6 * pos."""
    grid = np.linspace(0.0, 1.0, 32)
    images = ds.render(shape, 1.0, 0.0, grid, 0.5)
    cx, cy = centroids(images)
    expected = (0.5 + (grid - 0.5) * ds.POSITION_SPAN) * PIXELS - 0.5
    assert np.all(np.abs(cx - expected) < 0.5)
    assert np.ptp(cy) < 0.2  # moving along x leaves the row centroid in place
    if shape < 2:  # mirror symmetric about the centre row
        assert np.allclose(cy, 31.5, atol=1e-9)
    slope = np.polyfit(grid, cx, 1)[0]
    assert slope == pytest.approx(ds.POSITION_SPAN * PIXELS, rel=0.01)
    images = ds.render(shape, 1.0, 0.0, 0.5, grid)
    cx, cy = centroids(images)
    assert np.polyfit(grid, cy, 1)[0] == pytest.approx(ds.POSITION_SPAN * PIXELS, rel=0.01)
    assert np.allclose(cx, 31.5, atol=1e-9)  # every shape is mirror symmetric left-right


def brute_force(factors: np.ndarray) -> np.ndarray:
    """Reference renderer: every pixel of the full 64x64 grid, float64, one image at a time."""
    values = ds.factor_values()
    centres = (np.arange(PIXELS) + 0.5) / PIXELS
    gy, gx = np.meshgrid(centres, centres, indexing="ij")
    out = np.zeros((len(factors), PIXELS, PIXELS), np.uint8)
    for n, (s, sc, o, x, y) in enumerate(factors):
        r = values["scale"][sc] * ds.HALF_WIDTH
        t = values["orientation"][o]
        cx = 0.2 + 0.6 * values["posX"][x]
        cy = 0.2 + 0.6 * values["posY"][y]
        u = (np.cos(t) * (gx - cx) + np.sin(t) * (gy - cy)) / r
        v = (-np.sin(t) * (gx - cx) + np.cos(t) * (gy - cy)) / r
        if s == 0:
            inside = np.maximum(abs(u), abs(v)) <= 1
        elif s == 1:
            inside = u**2 + (2 * v) ** 2 <= 1
        else:
            a, b = 1.118 * u, 0.118 - 1.118 * v
            inside = (a**2 + b**2 - 1) ** 3 <= a**2 * b**3
        out[n] = inside
    return out


def test_render_matches_full_grid_reference():
    factors = ds.sample_factor_indices(400, seed=11)
    fast = ds.render_indices(factors)
    reference = brute_force(factors)
    mismatches = (fast != reference).sum(axis=(1, 2))
    # float32 versus float64 may flip a pixel whose centre lies on the boundary, nothing more
    assert mismatches.max() <= 1 and mismatches.sum() <= 4
    assert areas(reference).min() > 20


def test_subsample_is_seeded_distinct_and_uniform():
    a = ds.sample_factor_indices(20000, seed=5)
    assert np.array_equal(a, ds.sample_factor_indices(20000, seed=5))
    assert not np.array_equal(a, ds.sample_factor_indices(20000, seed=6))
    flat = np.ravel_multi_index(a.T, ds.FACTOR_SIZES)
    assert len(np.unique(flat)) == 20000
    # each factor's marginal is uniform: |count - n/size| < 5 binomial standard deviations
    for j, size in enumerate(ds.FACTOR_SIZES):
        counts = np.bincount(a[:, j], minlength=size)
        p = 1 / size
        assert np.all(np.abs(counts - 20000 * p) < 5 * np.sqrt(20000 * p * (1 - p)))


def test_prepare_dsprites_small(tmp_path):
    manifest = prepare("dsprites", {"n_samples": 300, "val_size": 40, "test_size": 60, "seed": 2},
                       tmp_path / "out")
    bundle = load(tmp_path / "out")
    assert (len(bundle.x_train), len(bundle.x_val), len(bundle.x_test)) == (200, 40, 60)
    assert bundle.x_train.dtype == np.uint8 and set(np.unique(bundle.x_train)) <= {0, 1}
    assert bundle.levels == 2 and bundle.n_classes == 3 and bundle.image_shape == (1, 64, 64)
    assert bundle.factor_names == ds.FACTOR_NAMES and bundle.factor_sizes == ds.FACTOR_SIZES
    assert bundle.factor_values["orientation"] == pytest.approx(
        list(ds.factor_values()["orientation"]))
    factors = np.concatenate([bundle.factors_train, bundle.factors_val, bundle.factors_test])
    assert np.array_equal(factors, ds.sample_factor_indices(300, seed=2))
    assert np.array_equal(bundle.y_val, bundle.factors_val[:, 0])
    assert np.array_equal(bundle.x_test, ds.render_indices(bundle.factors_test).reshape(60, -1))
    assert "not the original" in manifest["source"]["note"]
    with pytest.raises(ValueError, match="val_size \\+ test_size = 300"):
        prepare("dsprites", {"n_samples": 300, "val_size": 150, "test_size": 150}, tmp_path / "x")

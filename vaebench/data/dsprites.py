"""A dSprites-like data set rendered procedurally with numpy.

This is not the original dSprites file (Matthey et al. 2017, https://github.com/deepmind/dsprites-dataset):
the shapes are drawn here from implicit inequalities, on the same factor grid as the original
(shape 3, scale 6 in [0.5, 1], orientation 40 in [0, 2 pi), posX 32 and posY 32 in [0, 1];
737,280 binary 64x64 images). Pixel values are 0/1.

Geometry (unit-square image coordinates, x to the right along columns, y downwards along rows; the
pixel in row i, column j has its centre at ((j + 0.5)/64, (i + 0.5)/64)):

- centre c = 0.5 + (pos - 0.5) * POSITION_SPAN for posX (x) and posY (y);
- a pixel p belongs to the shape when its local coordinates
  (u, v) = R(-theta) (p - c) / (scale * HALF_WIDTH) satisfy the shape's inequality:
  square max(|u|, |v|) <= 1; ellipse u^2 + (v / 0.5)^2 <= 1;
  heart (a^2 + b^2 - 1)^3 - a^2 b^3 <= 0 with a = HEART_ZOOM u, b = HEART_SHIFT - HEART_ZOOM v
  (Taubin's heart curve, flipped so that the point is at the bottom, fitted into about [-1, 1]^2).
"""

from __future__ import annotations

import numpy as np

from vaebench.data.bundle import Built

FACTOR_NAMES: tuple[str, ...] = ("shape", "scale", "orientation", "posX", "posY")
FACTOR_SIZES: tuple[int, ...] = (3, 6, 40, 32, 32)
SHAPES: tuple[str, ...] = ("square", "ellipse", "heart")
N_COMBINATIONS = int(np.prod(FACTOR_SIZES))  # 737280
IMAGE_SIZE = 64
HALF_WIDTH = 0.15  # half side of the square at scale 1, as a fraction of the image width
POSITION_SPAN = 0.6  # centres range over [0.2, 0.8] of the image
ELLIPSE_ASPECT = 0.5
HEART_ZOOM = 1.118  # the heart curve spans x in [-1.139, 1.139], y in [-1, 1.236]
HEART_SHIFT = 0.118
LOCAL_RADIUS = 1.5  # bounds |(u, v)| inside every shape: square sqrt(2), heart 1.196, ellipse 1
_CHUNK = 2048


def factor_values() -> dict[str, np.ndarray]:
    """Values of each factor, indexed by the factor index (shape values 1, 2, 3 as in dSprites)."""
    return {
        "shape": np.array([1.0, 2.0, 3.0]),
        "scale": np.linspace(0.5, 1.0, 6),
        "orientation": np.linspace(0.0, 2.0 * np.pi, 40, endpoint=False),
        "posX": np.linspace(0.0, 1.0, 32),
        "posY": np.linspace(0.0, 1.0, 32),
    }


def all_factor_indices() -> np.ndarray:
    """Every grid point as (737280, 5) int64 factor indices, in C order of FACTOR_SIZES."""
    return np.stack(np.unravel_index(np.arange(N_COMBINATIONS), FACTOR_SIZES), axis=1)


def sample_factor_indices(n_samples: int, seed: int) -> np.ndarray:
    """``n_samples`` distinct grid points drawn uniformly without replacement, in random order."""
    if not 1 <= n_samples <= N_COMBINATIONS:
        raise ValueError(f"n_samples={n_samples} must be in [1, {N_COMBINATIONS}]")
    flat = np.random.default_rng(seed).choice(N_COMBINATIONS, size=n_samples, replace=False)
    return np.stack(np.unravel_index(flat, FACTOR_SIZES), axis=1)


def render(
    shape: np.ndarray,
    scale: np.ndarray,
    orientation: np.ndarray,
    pos_x: np.ndarray,
    pos_y: np.ndarray,
    size: int = IMAGE_SIZE,
) -> np.ndarray:
    """Render shapes from continuous factor values: uint8 0/1 images of shape (n, size, size).

    ``shape`` holds shape indices (0 square, 1 ellipse, 2 heart); the other arguments are the factor
    values (scale, orientation in radians, positions in [0, 1]), broadcast to a common length.
    """
    shape, scale, orientation, pos_x, pos_y = np.broadcast_arrays(
        np.asarray(shape), np.asarray(scale, np.float64), np.asarray(orientation, np.float64),
        np.asarray(pos_x, np.float64), np.asarray(pos_y, np.float64),
    )
    shape = shape.ravel().astype(np.int64)
    bad = (shape < 0) | (shape >= len(SHAPES))
    if bad.any():
        raise ValueError(f"shape index {int(shape[bad][0])} is invalid; valid: 0, 1, 2 ({SHAPES})")
    n = shape.size
    scale, orientation = scale.ravel(), orientation.ravel()
    pos_x, pos_y = pos_x.ravel(), pos_y.ravel()
    # Every shape lies within LOCAL_RADIUS * scale * HALF_WIDTH of its centre, so only a window
    # of side ``win`` around the centre needs evaluating; the rest of the image is 0.
    reach = LOCAL_RADIUS * HALF_WIDTH * float(scale.max(initial=0.0)) * size
    win = min(size, 2 * (int(np.ceil(reach)) + 1))
    offsets = np.arange(win)
    out = np.zeros((n, size, size), dtype=np.uint8)
    for kind in range(len(SHAPES)):
        members = np.flatnonzero(shape == kind)
        for start in range(0, members.size, _CHUNK):
            idx = members[start : start + _CHUNK]
            cx = 0.5 + (pos_x[idx] - 0.5) * POSITION_SPAN
            cy = 0.5 + (pos_y[idx] - 0.5) * POSITION_SPAN
            col0 = np.clip(np.floor(cx * size) - win // 2, 0, size - win).astype(np.int64)
            row0 = np.clip(np.floor(cy * size) - win // 2, 0, size - win).astype(np.int64)
            cols = col0[:, None] + offsets  # (m, win) pixel indices
            rows = row0[:, None] + offsets
            dx = ((cols + 0.5) / size - cx[:, None]).astype(np.float32)[:, None, :]
            dy = ((rows + 0.5) / size - cy[:, None]).astype(np.float32)[:, :, None]
            radius = (scale[idx] * HALF_WIDTH).astype(np.float32)[:, None, None]
            cos = np.cos(orientation[idx]).astype(np.float32)[:, None, None]
            sin = np.sin(orientation[idx]).astype(np.float32)[:, None, None]
            u = (cos * dx + sin * dy) / radius
            v = (cos * dy - sin * dx) / radius
            out[idx[:, None, None], rows[:, :, None], cols[:, None, :]] = _inside(kind, u, v)
    return out


def _inside(kind: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Evaluate shape ``kind``'s inequality on local coordinates (u, v); boolean array."""
    if kind == 0:
        return np.maximum(np.abs(u), np.abs(v)) <= 1.0
    if kind == 1:
        v = v / ELLIPSE_ASPECT
        return u * u + v * v <= 1.0
    a2 = HEART_ZOOM * u
    a2 *= a2
    b = HEART_SHIFT - HEART_ZOOM * v
    b2 = b * b
    t = a2 + b2 - 1.0
    return t * t * t <= a2 * b2 * b


def render_indices(factors: np.ndarray) -> np.ndarray:
    """Render (n, 5) factor indices to uint8 0/1 images of shape (n, 64, 64)."""
    factors = np.asarray(factors)
    if factors.ndim != 2 or factors.shape[1] != len(FACTOR_SIZES):
        raise ValueError(f"factors must have shape (n, 5), got {factors.shape}")
    for j, (name, size) in enumerate(zip(FACTOR_NAMES, FACTOR_SIZES, strict=True)):
        col = factors[:, j]
        if col.size and (col.min() < 0 or col.max() >= size):
            raise ValueError(
                f"factor {name} index out of range [0, {size}): {col.min()}..{col.max()}"
            )
    values = factor_values()
    return render(
        factors[:, 0],
        values["scale"][factors[:, 1]],
        values["orientation"][factors[:, 2]],
        values["posX"][factors[:, 3]],
        values["posY"][factors[:, 4]],
    )


def build(cfg) -> Built:
    """Sample ``cfg.n_samples`` grid points (seeded), render them, split into train/val/test."""
    factors = sample_factor_indices(cfg.n_samples, cfg.seed)
    images = render_indices(factors).reshape(cfg.n_samples, IMAGE_SIZE * IMAGE_SIZE)
    n_train = cfg.n_samples - cfg.val_size - cfg.test_size
    bounds = {"train": (0, n_train), "val": (n_train, n_train + cfg.val_size),
              "test": (n_train + cfg.val_size, cfg.n_samples)}
    arrays: dict[str, np.ndarray] = {}
    for split, (lo, hi) in bounds.items():
        arrays[f"x_{split}"] = images[lo:hi]
        arrays[f"y_{split}"] = factors[lo:hi, 0].astype(np.int64)
        arrays[f"factors_{split}"] = factors[lo:hi].astype(np.int64)
    return Built(
        arrays=arrays,
        kind="image",
        levels=2,
        image_shape=(1, IMAGE_SIZE, IMAGE_SIZE),
        n_classes=len(SHAPES),
        factor_names=FACTOR_NAMES,
        factor_sizes=FACTOR_SIZES,
        factor_values={k: [float(x) for x in v] for k, v in factor_values().items()},
        source={
            "generator": "vaebench.data.dsprites (procedural numpy rendering)",
            "note": "dSprites-like: rendered procedurally on the dSprites factor grid; "
            "not the original dSprites file (Matthey et al. 2017)",
        },
        info={
            "shapes": list(SHAPES),
            "n_combinations": N_COMBINATIONS,
            "sampling": "uniform without replacement over the factor grid, "
            "numpy.random.default_rng(seed).choice; split in sampled order train|val|test",
            "geometry": {
                "half_width_at_scale_1": HALF_WIDTH,
                "position_span": POSITION_SPAN,
                "ellipse_aspect": ELLIPSE_ASPECT,
                "heart": "Taubin heart (a^2+b^2-1)^3 - a^2 b^3 <= 0, "
                f"a = {HEART_ZOOM} u, b = {HEART_SHIFT} - {HEART_ZOOM} v",
                "pixel_rule": "pixel is 1 when its centre satisfies the shape inequality",
            },
            "labels": "y = shape index (0 square, 1 ellipse, 2 heart)",
        },
    )

"""Pictures of a trained model on image data: prior samples, reconstructions, latent traversals.

Pure functions from a model and test images to image grids (numpy arrays in [0, 1]); the
evaluate stage writes them as PNG files.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from vaebench import estimators
from vaebench.inputs import seeded_generator


def to_images(flat: Tensor, shape: tuple[int, int, int]) -> np.ndarray:
    """(n, C*H*W) in [0, 1] -> (n, H, W) for one channel, (n, H, W, C) otherwise."""
    c, h, w = shape
    img = flat.clamp(0, 1).reshape(-1, c, h, w).permute(0, 2, 3, 1).numpy()
    return img[..., 0] if c == 1 else img


def grid(images: np.ndarray, ncols: int, pad: int = 1) -> np.ndarray:
    """Tile (n, H, W[, C]) images into one array, row-major, with a white border."""
    n, h, w = images.shape[:3]
    rows = math.ceil(n / ncols)
    shape = (rows * (h + pad) + pad, ncols * (w + pad) + pad, *images.shape[3:])
    out = np.ones(shape, dtype=np.float32)
    for i, im in enumerate(images):
        r, c = divmod(i, ncols)
        out[pad + r * (h + pad): pad + r * (h + pad) + h,
            pad + c * (w + pad): pad + c * (w + pad) + w] = im
    return out


def traversal_rows(model, mu0: Tensor, y0: Tensor | None, dims: list[int],
                   steps: Tensor) -> Tensor:
    """Decoder means along each latent in ``dims`` from ``mu0`` (one row per latent)."""
    rows = []
    for j in dims:
        zz = mu0.repeat(len(steps), 1)
        zz[:, j] = steps
        rows.append(model.mean_x(zz, None if y0 is None else y0.repeat(len(steps))))
    return torch.cat(rows)


def latent_order(mu: Tensor, logvar: Tensor) -> list[int]:
    """Latent dimensions by decreasing KL(q(z_j|x) || p(z_j)) averaged over the points."""
    return [int(i) for i in estimators.kl_per_dim(mu, logvar).argsort(descending=True)]


@torch.no_grad()
def pictures(shape: tuple[int, int, int], model, x: Tensor, y: Tensor | None, mu: Tensor,
             seed: int, order: list[int], factor_dims: dict[str, int] | None
             ) -> dict[str, np.ndarray]:
    """Samples from the prior, reconstructions and latent traversals, as image grids.

    ``mu`` holds the encoder means of ``x``; ``order`` ranks the latents by KL; with
    ground-truth factors, ``factor_dims`` names the latent most related to each factor.
    """
    gen = seeded_generator(seed + 3)
    ys = torch.arange(64) % model.n_classes if model.n_classes else None
    z = torch.randn(64, model.latent_dim, generator=gen)
    out = {"samples": grid(to_images(model.mean_x(z, ys), shape), 8)}
    yr = None if y is None else y[:16]
    pairs = torch.stack([x[:16], model.mean_x(mu[:16], yr)], 1).reshape(-1, x.shape[1])
    out["reconstructions"] = grid(to_images(pairs, shape), 8)
    steps = torch.linspace(-3, 3, 9)
    y0 = None if y is None else y[:1]
    out["traversals"] = grid(to_images(traversal_rows(model, mu[:1], y0, order[:8], steps),
                                       shape), len(steps))
    if factor_dims is not None:  # one row per ground-truth factor
        rows = traversal_rows(model, mu[:1], y0, list(factor_dims.values()), steps)
        out["factor_traversals"] = grid(to_images(rows, shape), len(steps))
    return out

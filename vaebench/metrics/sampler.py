"""Ground truth over a finite dataset, for the metrics that sample with one factor fixed.

The FactorVAE score (Kim & Mnih 2018) and the beta-VAE score (Higgins et al. 2017) draw new
observations with one generative factor held at a value and the others random. Over a finite
dataset of (factor indices, observation) rows, with the representation precomputed for every
row, "draw an observation" means "choose a row". A value held fixed is matched by choosing,
uniformly and with replacement, among the rows that share it; so a subsample of the full factor
grid, where a value may have few rows, is handled. The random value of a factor is the value of
a uniformly drawn row, i.e. values follow their empirical frequencies (uniform on a full grid,
which is what disentanglement_lib's ground-truth samplers draw).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vaebench.metrics._checks import as_factors, int_at_least


@dataclass(frozen=True, eq=False)
class FactorSampler:
    """Rows of a finite dataset indexed by their integer ground-truth factors.

    ``factors[n, f]`` is the index of factor ``f`` for row ``n``, in ``range(factor_sizes[f])``.
    Methods return row indices; the caller looks them up in its own arrays (e.g. the encoder
    means ``codes[rows]``). ``rng`` is a ``numpy.random.Generator``.
    """

    factors: np.ndarray
    factor_sizes: tuple[int, ...]

    def __post_init__(self) -> None:
        factors = as_factors("factors", self.factors)
        sizes = tuple(self.factor_sizes)
        if len(sizes) != factors.shape[1]:
            raise ValueError(f"factor_sizes must have one entry per factor column "
                             f"({factors.shape[1]}); got {len(sizes)}")
        sizes = tuple(int_at_least(f"factor_sizes[{f}]", s, 1) for f, s in enumerate(sizes))
        too_big = np.flatnonzero(factors.max(axis=0) >= np.asarray(sizes))
        if too_big.size:
            f = int(too_big[0])
            raise ValueError(f"factors[:, {f}] must lie in range({sizes[f]}) "
                             f"(factor_sizes[{f}]); got maximum {factors[:, f].max()}")
        factors = factors.copy()
        factors.flags.writeable = False
        # For each factor f, the rows sorted by their value of f, and where each value's run
        # of rows starts and how long it is, flattened over (f, value) with per-factor offsets.
        order = np.argsort(factors, axis=0, kind="stable").T.copy()
        counts = np.concatenate([np.bincount(factors[:, f], minlength=s)
                                 for f, s in enumerate(sizes)])
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        starts = np.concatenate([np.cumsum(counts[o:o + s]) - counts[o:o + s]
                                 for o, s in zip(offsets, sizes, strict=True)])
        object.__setattr__(self, "factors", factors)
        object.__setattr__(self, "factor_sizes", sizes)
        object.__setattr__(self, "_order", order)
        object.__setattr__(self, "_starts", starts)
        object.__setattr__(self, "_counts", counts)
        object.__setattr__(self, "_offsets", offsets)

    @classmethod
    def from_factors(cls, factors: np.ndarray) -> FactorSampler:
        """A sampler whose factor sizes are ``factors.max(axis=0) + 1``."""
        array = as_factors("factors", factors)
        return cls(array, tuple(int(m) + 1 for m in array.max(axis=0)))

    @property
    def num_rows(self) -> int:
        """N, the number of rows."""
        return int(self.factors.shape[0])

    @property
    def num_factors(self) -> int:
        """F, the number of factors."""
        return int(self.factors.shape[1])

    def sample(self, batch: int | tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        """Row indices drawn uniformly with replacement; ``batch`` is a count or a shape."""
        return rng.integers(0, self.num_rows, size=batch)

    def sample_matching(self, factor: int | np.ndarray, rows: np.ndarray,
                        rng: np.random.Generator) -> np.ndarray:
        """For each entry of ``rows``, a row drawn uniformly with replacement among the rows
        that share its value of ``factor`` (an int, or an int array broadcast against rows)."""
        rows = np.asarray(rows)
        factor = np.asarray(factor)
        if factor.dtype.kind not in "iu" or rows.dtype.kind not in "iu":
            raise TypeError("factor and rows must be integer arrays; "
                            f"got dtypes {factor.dtype} and {rows.dtype}")
        if factor.size and (factor.min() < 0 or factor.max() >= self.num_factors):
            raise ValueError(f"factor must lie in range({self.num_factors}); "
                             f"got values in [{factor.min()}, {factor.max()}]")
        if rows.size and (rows.min() < 0 or rows.max() >= self.num_rows):
            raise ValueError(f"rows must lie in range({self.num_rows}); "
                             f"got values in [{rows.min()}, {rows.max()}]")
        factor, rows = np.broadcast_arrays(factor, rows)
        group = self._offsets[factor] + self.factors[rows, factor]
        offset = rng.integers(0, self._counts[group])
        return self._order[factor, self._starts[group] + offset]

    def sample_fixed_batches(self, factor: np.ndarray, batch: int,
                             rng: np.random.Generator) -> np.ndarray:
        """Row indices of shape (len(factor), batch): batch b shares one random value of
        ``factor[b]`` (the value of a uniformly drawn row) and its other factors vary."""
        batch = int_at_least("batch", batch, 1)
        factor = np.asarray(factor)
        anchors = self.sample(factor.shape, rng)
        return self.sample_matching(factor[:, None], np.repeat(anchors[:, None], batch, axis=1),
                                    rng)

    def sample_fixed(self, factor: int, batch: int, rng: np.random.Generator) -> np.ndarray:
        """``batch`` row indices sharing one random value of ``factor``."""
        factor = int_at_least("factor", factor, 0)
        if factor >= self.num_factors:
            raise ValueError(f"factor must lie in range({self.num_factors}); got {factor}")
        return self.sample_fixed_batches(np.array([factor]), batch, rng)[0]

"""Input checks shared by the disentanglement metrics: one-line errors naming the argument."""

from __future__ import annotations

import numbers

import numpy as np


def as_codes(name: str, codes: object) -> np.ndarray:
    """``codes`` as a finite float64 array of shape (N, K) with N >= 1 and K >= 1."""
    array = np.asarray(codes)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (N, K); got shape {array.shape}")
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers; got dtype {array.dtype}")
    array = array.astype(np.float64, copy=False)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite; got {int(np.sum(~np.isfinite(array)))} "
                         "NaN or infinite entries")
    return array


def as_factors(name: str, factors: object) -> np.ndarray:
    """``factors`` as a non-negative int64 array of shape (N, F) with N >= 1 and F >= 1."""
    array = np.asarray(factors)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (N, F); got shape {array.shape}")
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer factor indices; got dtype {array.dtype}")
    array = array.astype(np.int64, copy=False)
    if array.min() < 0:
        raise ValueError(f"{name} must hold non-negative indices; got minimum {array.min()}")
    return array


def same_rows(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    """Raise unless ``a`` and ``b`` have the same number of rows."""
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{name_a} and {name_b} must have the same number of rows; "
                         f"got {a.shape[0]} and {b.shape[0]}")


def int_at_least(name: str, value: object, minimum: int) -> int:
    """``value`` as an int, raising unless it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def as_rng(rng: object) -> np.random.Generator:
    """A numpy Generator from a Generator or an integer seed (None is refused: results must
    be reproducible)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy Generator or an integer seed; got {rng!r}")

"""Mutual information gap (MIG), the disentanglement_lib variant.

Chen, Li, Grosse & Duvenaud 2018, "Isolating Sources of Disentanglement in Variational
Autoencoders": for each factor v_k with entropy H(v_k), let j(k) be the code that
shares the most information with it; then

    MIG = (1/F) sum_k [ I(z_{j(k)}; v_k) - max_{j != j(k)} I(z_j; v_k) ] / H(v_k).

Variant: Locatello et al. 2019 (disentanglement_lib, ``mig.py``), not Chen et al.'s own
estimator. Each code dimension (the encoder means) is histogrammed into ``n_bins`` equal-width
bins over its range; I(z_j; v_k) is the plug-in (empirical) mutual information of the binned code
and the factor index, as ``sklearn.metrics.mutual_info_score``; H(v_k) is the empirical entropy
of the factor, and every factor is kept (Chen et al. sample q(z|x), normalize by log(#values)
and leave dSprites' shape out). All logarithms are natural.

Known consequence: a factor with more values than bins loses information to the binning, so a
perfect code of a 40-valued factor scores log(20)/log(40) = 0.81, not 1.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import mutual_info_score

from vaebench.metrics._checks import as_codes, as_factors, int_at_least, same_rows


def histogram_discretize(codes: np.ndarray, n_bins: int = 20) -> np.ndarray:
    """Bin each column of ``codes`` (N, K) into ``n_bins`` equal-width bins over its own
    [min, max]; returns int64 bin indices in range(n_bins). The partition is numpy's
    ``np.histogram(column, n_bins)`` (the right edge belongs to the last bin); a constant column
    falls in bin 0."""
    codes = as_codes("codes", codes)
    n_bins = int_at_least("n_bins", n_bins, 1)
    binned = np.empty(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        column = codes[:, j]
        low, high = column.min(), column.max()
        if high == low:
            binned[:, j] = 0
            continue
        edges = np.linspace(low, high, n_bins + 1)
        binned[:, j] = np.digitize(column, edges[1:-1])
    return binned


def discrete_mutual_info(codes_binned: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Plug-in mutual information (nats) between every discrete code column and every factor
    column: I[j, k] = sum_{a,b} p(a,b) log[p(a,b) / (p(a) p(b))], shape (K, F)."""
    codes_binned = as_factors("codes_binned", codes_binned)
    factors = as_factors("factors", factors)
    same_rows("codes_binned", codes_binned, "factors", factors)
    mi = np.empty((codes_binned.shape[1], factors.shape[1]))
    for j in range(codes_binned.shape[1]):
        for k in range(factors.shape[1]):
            mi[j, k] = mutual_info_score(factors[:, k], codes_binned[:, j])
    return mi


def discrete_entropy(factors: np.ndarray) -> np.ndarray:
    """Empirical entropy (nats) of each factor column, H(v) = -sum_b p(b) log p(b), shape (F,)."""
    factors = as_factors("factors", factors)
    entropy = np.empty(factors.shape[1])
    for k in range(factors.shape[1]):
        p = np.bincount(factors[:, k]) / factors.shape[0]
        p = p[p > 0]
        entropy[k] = float(-np.sum(p * np.log(p)))
    return entropy


def mig_from_mutual_info(mi: np.ndarray, entropy: np.ndarray) -> np.ndarray:
    """Per-factor gap [I_(1) - I_(2)] / H from a (K, F) mutual-information matrix, K >= 2.

    A factor with zero entropy (one value in the data) has no defined gap: NaN."""
    mi = np.asarray(mi, dtype=np.float64)
    entropy = np.asarray(entropy, dtype=np.float64)
    if mi.ndim != 2 or mi.shape[0] < 2:
        raise ValueError(f"mi must be a 2-D array (K, F) with K >= 2 codes; got shape {mi.shape}")
    if entropy.shape != (mi.shape[1],):
        raise ValueError(f"entropy must have shape ({mi.shape[1]},); got {entropy.shape}")
    top_two = -np.sort(-mi, axis=0)[:2]
    gap = top_two[0] - top_two[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(entropy > 0, gap / np.where(entropy > 0, entropy, 1.0), np.nan)


def mig(codes: np.ndarray, factors: np.ndarray, n_bins: int = 20) -> dict:
    """Mutual information gap of ``codes`` (N, K) (encoder means, K >= 2) against integer
    ``factors`` (N, F), disentanglement_lib variant (module docstring).

    Returns ``{"mig": mean over factors, "per_factor": [F gaps], "mutual_info": (K, F) nested
    list in nats, "entropy": [F entropies in nats]}``. Factors with a single value in the data
    get a NaN gap and are left out of the mean.
    """
    codes = as_codes("codes", codes)
    factors = as_factors("factors", factors)
    same_rows("codes", codes, "factors", factors)
    if codes.shape[1] < 2:
        raise ValueError(f"codes must have at least 2 columns for a gap; got {codes.shape[1]}")
    n_bins = int_at_least("n_bins", n_bins, 2)
    entropy = discrete_entropy(factors)
    if not np.any(entropy > 0):
        raise ValueError("factors must have at least one column with more than one value; "
                         "every column is constant")
    mi = discrete_mutual_info(histogram_discretize(codes, n_bins), factors)
    per_factor = mig_from_mutual_info(mi, entropy)
    return {"mig": float(np.nanmean(per_factor)), "per_factor": per_factor.tolist(),
            "mutual_info": mi.tolist(), "entropy": entropy.tolist()}

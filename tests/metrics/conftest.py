"""Synthetic ground truth for the disentanglement metrics: a 5,000-row subsample of a
dSprites-sized factor grid (3, 6, 40, 32, 32) and codes with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from vaebench.metrics import FactorSampler

SIZES = (3, 6, 40, 32, 32)
N_ROWS = 5000
N_FACTORS = len(SIZES)


@pytest.fixture(scope="session")
def factors() -> np.ndarray:
    """(5000, 5) integer factors: distinct rows of the full grid, drawn without replacement."""
    rng = np.random.default_rng(20180101)
    flat = rng.choice(int(np.prod(SIZES)), size=N_ROWS, replace=False)
    return np.stack(np.unravel_index(flat, SIZES), axis=1).astype(np.int64)


@pytest.fixture(scope="session")
def sampler(factors: np.ndarray) -> FactorSampler:
    return FactorSampler(factors, SIZES)


def _pad(core: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """K = 10 codes: the 5 given columns, one nuisance N(0, 1) column, four constant columns."""
    n = core.shape[0]
    return np.concatenate([core, rng.normal(size=(n, 1)), np.zeros((n, 4))], axis=1)


@pytest.fixture(scope="session")
def perfect_codes(factors: np.ndarray) -> np.ndarray:
    """Code j = factor j (the integer index itself), plus a nuisance and constant columns."""
    return _pad(factors.astype(np.float64), np.random.default_rng(1))


@pytest.fixture(scope="session")
def noise_codes() -> np.ndarray:
    """Ten N(0, 1) codes independent of the factors."""
    return np.random.default_rng(2).normal(size=(N_ROWS, 10))


@pytest.fixture(scope="session")
def entangled_codes(factors: np.ndarray) -> np.ndarray:
    """The standardised perfect code mixed by the Householder reflection H = I - (2/F) 1 1^T:
    an orthogonal map (no information lost) that puts every factor in every code, with weights
    of magnitude 1 - 2/F and 2/F."""
    standard = (factors - factors.mean(axis=0)) / factors.std(axis=0)
    householder = np.eye(N_FACTORS) - 2.0 / N_FACTORS * np.ones((N_FACTORS, N_FACTORS))
    return _pad(standard @ householder, np.random.default_rng(3))


@pytest.fixture(scope="session")
def redundant_codes(factors: np.ndarray) -> np.ndarray:
    """Factor 0 written twice (codes 0 and 1), then factors 1..4: nothing lost, nothing mixed."""
    core = np.concatenate([factors[:, :1], factors], axis=1).astype(np.float64)
    n = core.shape[0]
    return np.concatenate([core, np.zeros((n, 4))], axis=1)

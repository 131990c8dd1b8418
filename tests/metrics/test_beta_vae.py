"""beta-VAE score (Higgins et al. 2017) on codes with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from vaebench.metrics import FactorSampler, beta_vae_features, beta_vae_score


def test_features_vanish_on_the_shared_factor(perfect_codes, sampler):
    # Pairs share factor y, and code y is factor y itself: |z1 - z2| is exactly 0 there, and
    # positive elsewhere (other factors vary across the 64 pairs).
    n_factors = sampler.num_factors
    x, y = beta_vae_features(perfect_codes, sampler, np.random.default_rng(0), 64, 500)
    assert x.shape == (500, 10) and y.shape == (500,)
    assert np.all(x[np.arange(500), y] == 0)
    others = np.ones((500, n_factors), dtype=bool)
    others[np.arange(500), y] = False
    assert np.all(x[:, :n_factors][others] > 0)
    # Constant codes give 0; the factor is chosen uniformly.
    assert np.all(x[:, 6:] == 0)
    assert set(np.unique(y)) == set(range(n_factors))


def test_features_are_mean_absolute_differences_of_matched_pairs():
    factors = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    codes = np.arange(4, dtype=np.float64)[:, None]
    sampler = FactorSampler(factors, (2, 2))
    x, y = beta_vae_features(codes, sampler, np.random.default_rng(1), 20_000, 40)
    # For either factor, the matching row differs from the first by 0 (itself) or by 1 or 2
    # (the other row sharing the value): E|r1 - r2| = (0 + 1)/2 for factor 0 (rows 0,1 and
    # 2,3 share it) and (0 + 2)/2 for factor 1 (rows 0,2 and 1,3).
    # |r1 - r2| is 0 or d with probability 1/2 each, so its standard deviation is d / 2.
    expected = np.where(y == 0, 0.5, 1.0)
    standard_error = np.where(y == 0, 0.5, 1.0) / np.sqrt(20_000)
    assert np.all(np.abs(x[:, 0] - expected) < 4 * standard_error)


def test_perfect_code_scores_near_one(perfect_codes, sampler):
    result = beta_vae_score(perfect_codes, sampler, 0)
    assert result["beta_vae"] >= 0.95
    assert result["train_accuracy"] >= 0.95


def test_noise_scores_near_chance(noise_codes, sampler):
    # Chance is 1/F; the finite dataset lifts it slightly (see the FactorVAE noise test).
    result = beta_vae_score(noise_codes, sampler, 1)
    assert abs(result["beta_vae"] - 1 / sampler.num_factors) < 0.05


def test_entangled_code_scores_clearly_lower(perfect_codes, entangled_codes, sampler):
    perfect = beta_vae_score(perfect_codes, sampler, 2)["beta_vae"]
    entangled = beta_vae_score(entangled_codes, sampler, 2)["beta_vae"]
    assert entangled < perfect - 0.2


def test_same_seed_same_score(entangled_codes, sampler):
    a = beta_vae_score(entangled_codes, sampler, 5, n_train=500, n_eval=200)
    b = beta_vae_score(entangled_codes, sampler, np.random.default_rng(5), n_train=500,
                       n_eval=200)
    assert a == b


def test_bad_input(sampler):
    with pytest.raises(ValueError, match="codes and sampler must have the same number of rows"):
        beta_vae_score(np.zeros((sampler.num_rows + 1, 3)), sampler, 0)
    with pytest.raises(ValueError, match="codes must be a non-empty 2-D array"):
        beta_vae_score(np.zeros((sampler.num_rows, 0)), sampler, 0)
    with pytest.raises(ValueError, match="n_eval must be an integer >= 1"):
        beta_vae_score(np.ones((sampler.num_rows, 3)), sampler, 0, n_eval=0)

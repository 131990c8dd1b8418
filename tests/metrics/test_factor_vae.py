"""FactorVAE score (Kim & Mnih 2018) on codes with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from vaebench.metrics import FactorSampler, factor_vae_score, majority_vote_accuracy


def test_majority_vote_accuracy_by_hand():
    # votes[k, j]: factor k fixed, code j won. Code 0 -> factor 0 (5 > 1), code 1 -> factor 1
    # (4 > 2), code 2 -> factor 0 (tie 3 = 3 goes to the lower factor).
    train = np.array([[5, 2, 3], [1, 4, 3]])
    evaluation = np.array([[1, 1, 0], [2, 6, 1]])
    train_acc, eval_acc = majority_vote_accuracy(train, evaluation)
    assert train_acc == pytest.approx((5 + 4 + 3) / 18)
    assert eval_acc == pytest.approx((1 + 6 + 0) / 11)


def test_perfect_code_scores_near_one(perfect_codes, sampler):
    result = factor_vae_score(perfect_codes, sampler, np.random.default_rng(0))
    assert result["factor_vae"] >= 0.95
    assert result["train_accuracy"] >= 0.95
    # The four constant columns are pruned; the factor columns and the nuisance one stay.
    assert result["num_active_dims"] == 6


def test_noise_scores_near_chance(noise_codes, sampler):
    # Chance is 1/F. On 5,000 rows the per-value row groups (about 125 rows for a 40-valued
    # factor) are reused by every vote, which lifts noise a little above 1/F (it shrinks to
    # 1/F as N grows); hence the tolerance.
    result = factor_vae_score(noise_codes, sampler, 1)
    assert abs(result["factor_vae"] - 1 / sampler.num_factors) < 0.05


def test_entangled_code_scores_clearly_lower(perfect_codes, entangled_codes, sampler):
    perfect = factor_vae_score(perfect_codes, sampler, 2)["factor_vae"]
    entangled = factor_vae_score(entangled_codes, sampler, 2)["factor_vae"]
    assert entangled < perfect - 0.2


def test_invariant_to_rescaling_each_code(entangled_codes, sampler):
    # Votes use Var_batch(z_j) / Var_global(z_j), which no positive rescaling of z_j changes
    # (a scale at least 1 keeps the pruning unchanged too).
    scales = np.array([1.0, 40.0, 3.0, 1e3, 7.0, 1.0, 2.0, 5.0, 9.0, 11.0])
    plain = factor_vae_score(entangled_codes, sampler, 3, n_train=2000, n_eval=1000)
    scaled = factor_vae_score(entangled_codes * scales, sampler, 3, n_train=2000, n_eval=1000)
    assert plain == scaled


def test_same_seed_same_score(entangled_codes, sampler):
    a = factor_vae_score(entangled_codes, sampler, 4, n_train=500, n_eval=500)
    b = factor_vae_score(entangled_codes, sampler, np.random.default_rng(4), n_train=500,
                         n_eval=500)
    assert a == b


def test_all_codes_pruned_scores_zero(sampler):
    codes = np.full((sampler.num_rows, 3), 2.0)
    codes[:, 0] += 0.01 * np.random.default_rng(0).normal(size=sampler.num_rows)
    result = factor_vae_score(codes, sampler, 0)
    assert result == {"factor_vae": 0.0, "train_accuracy": 0.0, "eval_accuracy": 0.0,
                      "num_active_dims": 0}


def test_bad_input(sampler):
    with pytest.raises(ValueError, match="codes and sampler must have the same number of rows"):
        factor_vae_score(np.zeros((sampler.num_rows - 1, 3)), sampler, 0)
    with pytest.raises(ValueError, match="codes must be a non-empty 2-D array"):
        factor_vae_score(np.zeros((0, 3)), sampler, 0)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 2"):
        factor_vae_score(np.ones((sampler.num_rows, 3)), sampler, 0, batch_size=1)
    with pytest.raises(ValueError, match="prune_std must be a finite number >= 0"):
        factor_vae_score(np.ones((sampler.num_rows, 3)), sampler, 0, prune_std=-1.0)
    with pytest.raises(TypeError, match="rng must be a numpy Generator or an integer seed"):
        factor_vae_score(np.ones((sampler.num_rows, 3)), sampler, None)
    with pytest.raises(TypeError, match="sampler must be a FactorSampler"):
        factor_vae_score(np.ones((4, 3)), np.zeros((4, 2), dtype=int), 0)


def test_small_groups_are_sampled_with_replacement():
    # Value 2 of factor 0 has a single row; batches holding it repeat that row.
    factors = np.array([[0, 0], [0, 1], [1, 0], [1, 1], [2, 0], [0, 2], [1, 2]])
    codes = factors.astype(np.float64)
    result = factor_vae_score(codes, FactorSampler(factors, (3, 3)), 0, batch_size=8,
                              n_train=300, n_eval=300)
    assert result["factor_vae"] >= 0.95

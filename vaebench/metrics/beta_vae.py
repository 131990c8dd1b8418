"""beta-VAE disentanglement score.

Higgins et al. 2017, "beta-VAE: Learning Basic Visual Concepts with a Constrained Variational
Framework". One training point: choose a factor y uniformly; draw
L = ``batch_size`` pairs of observations (v1_l, v2_l) that share the value of y (each pair its
own random value; every other factor random); with z = the encoder means, the feature is

    z_diff = (1/L) sum_l |z(v1_l) - z(v2_l)|                (one entry per code)

and the label is y. A linear classifier predicts y from z_diff; the score is its accuracy on
``n_eval`` fresh points.

Variant: disentanglement_lib's (Locatello et al. 2019, ``beta_vae.py``): ``n_train`` = 10,000 and
``n_eval`` = 5,000 points of 64 pairs, classifier ``sklearn.linear_model.LogisticRegression``
(multinomial, L2, C = 1, lbfgs). Here the features are standardised with the training points'
mean and standard deviation before the fit, so that lbfgs converges whatever the scale of the
codes (the paper only asks for a linear classifier, and a standardised linear classifier is
one), and "drawing an observation" chooses a row of the finite dataset (see ``FactorSampler``).
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from vaebench.metrics._checks import as_codes, as_rng, int_at_least
from vaebench.metrics.sampler import FactorSampler

_POINTS_PER_CHUNK = 1024


def beta_vae_features(codes: np.ndarray, sampler: FactorSampler, rng: np.random.Generator,
                      batch_size: int, n_points: int) -> tuple[np.ndarray, np.ndarray]:
    """``n_points`` pairs (z_diff, y): z_diff (n_points, K) is the mean |z1 - z2| over
    ``batch_size`` pairs of rows sharing the value of factor y (Higgins et al. 2017)."""
    features = np.empty((n_points, codes.shape[1]))
    labels = np.empty(n_points, dtype=np.int64)
    for start in range(0, n_points, _POINTS_PER_CHUNK):
        size = min(_POINTS_PER_CHUNK, n_points - start)
        fixed = rng.integers(0, sampler.num_factors, size=size)
        first = sampler.sample((size, batch_size), rng)
        second = sampler.sample_matching(fixed[:, None], first, rng)
        features[start:start + size] = np.abs(codes[first] - codes[second]).mean(axis=1)
        labels[start:start + size] = fixed
    return features, labels


def beta_vae_score(codes: np.ndarray, sampler: FactorSampler, rng: np.random.Generator | int,
                   batch_size: int = 64, n_train: int = 10_000, n_eval: int = 5_000) -> dict:
    """beta-VAE score of ``codes`` (N, K), the encoder means of the N rows of ``sampler``.

    Returns ``{"beta_vae": eval accuracy, "train_accuracy", "eval_accuracy"}``. Chance level is
    about 1/F (the factor is chosen uniformly).
    """
    codes = as_codes("codes", codes)
    if not isinstance(sampler, FactorSampler):
        raise TypeError(f"sampler must be a FactorSampler; got {type(sampler).__name__}")
    if codes.shape[0] != sampler.num_rows:
        raise ValueError(f"codes and sampler must have the same number of rows; "
                         f"got {codes.shape[0]} and {sampler.num_rows}")
    rng = as_rng(rng)
    batch_size = int_at_least("batch_size", batch_size, 1)
    n_train = int_at_least("n_train", n_train, 2)
    n_eval = int_at_least("n_eval", n_eval, 1)
    x_train, y_train = beta_vae_features(codes, sampler, rng, batch_size, n_train)
    x_eval, y_eval = beta_vae_features(codes, sampler, rng, batch_size, n_eval)
    if np.unique(y_train).size < 2:
        # One class in training (F = 1, or very few points): the classifier is constant.
        label = int(y_train[0])
        return {"beta_vae": float(np.mean(y_eval == label)), "train_accuracy": 1.0,
                "eval_accuracy": float(np.mean(y_eval == label))}
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(x_train, y_train)
    train = float(model.score(x_train, y_train))
    evaluation = float(model.score(x_eval, y_eval))
    return {"beta_vae": evaluation, "train_accuracy": train, "eval_accuracy": evaluation}

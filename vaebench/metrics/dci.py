"""DCI: disentanglement, completeness and informativeness.

Eastwood & Williams 2018, "A Framework for the Quantitative Evaluation of Disentangled
Representations". One predictor per factor k is fit on the codes; R[j, k] >= 0 is the
importance of code j for predicting factor k (K codes, F factors).

- Disentanglement of code j: D_j = 1 - H_F(P_j.), with P_jk = R_jk / sum_k' R_jk' and
  H_F(p) = -sum_k p_k log_F p_k; overall D = sum_j rho_j D_j with rho_j = sum_k R_jk / sum R.
- Completeness of factor k: C_k = 1 - H_K(P~_.k), with P~_jk = R_jk / sum_j' R_j'k; overall C is
  the mean over factors.
- Informativeness: how well the predictors recover the factors on held-out data.

Variant: disentanglement_lib's (Locatello et al. 2019, ``dci.py``) in its use of a classifier per
factor (the factors are integer indices), of the predictors' impurity-based
``feature_importances_`` as R, and of mean test accuracy as informativeness (the paper reports a
prediction error). The default predictor differs: disentanglement_lib's
``GradientBoostingClassifier()`` takes 1.5 to 2.5 minutes on 4,000 x 10 codes of factors of
sizes (3, 6, 40, 32, 32) on two cores, so the default is a random forest, one of the paper's two
predictors: ``sklearn.ensemble.RandomForestClassifier(n_estimators=10, max_depth=10,
max_features=None)``. Every split sees every code, so importance cannot leak to a code merely
because the right one was left out of a random feature subset. ``model="gradient_boosting"``
reproduces disentanglement_lib's predictor exactly.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier

from vaebench.metrics._checks import as_codes, as_factors, as_rng, int_at_least, same_rows

MODELS = ("random_forest", "gradient_boosting")


def _check_importance(importance: np.ndarray) -> np.ndarray:
    array = np.asarray(importance, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"importance must be a non-empty 2-D array (K codes, F factors); "
                         f"got shape {array.shape}")
    if not np.all(np.isfinite(array)) or array.min() < 0:
        raise ValueError("importance must be finite and non-negative; "
                         f"got minimum {np.nanmin(array)}")
    return array


def _one_minus_normalized_entropy(weights: np.ndarray) -> np.ndarray:
    """1 - H_B(p) for each row of ``weights`` (n, B), p the row normalised to sum 1 and H_B the
    entropy in base B. Rows summing to 0 give 0; with B = 1 a non-zero row gives 1."""
    totals = weights.sum(axis=1)
    out = np.zeros(weights.shape[0])
    nonzero = totals > 0
    if weights.shape[1] == 1:
        out[nonzero] = 1.0
        return out
    p = weights[nonzero] / totals[nonzero, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(p), 0.0)
    out[nonzero] = 1.0 + plogp.sum(axis=1) / np.log(weights.shape[1])
    return out


def disentanglement_per_code(importance: np.ndarray) -> np.ndarray:
    """D_j = 1 - H_F(P_j.) for each code j of the importance matrix R (K, F) (Eastwood &
    Williams 2018); a code with zero total importance gets 0."""
    return _one_minus_normalized_entropy(_check_importance(importance))


def disentanglement(importance: np.ndarray) -> float:
    """D = sum_j rho_j D_j, rho_j = sum_k R_jk / sum R (Eastwood & Williams 2018);
    0 when R is all zeros."""
    importance = _check_importance(importance)
    total = importance.sum()
    if total == 0:
        return 0.0
    rho = importance.sum(axis=1) / total
    return float(np.sum(rho * _one_minus_normalized_entropy(importance)))


def completeness_per_factor(importance: np.ndarray) -> np.ndarray:
    """C_k = 1 - H_K(P~_.k) for each factor k of R (K, F) (Eastwood & Williams 2018);
    a factor no code predicts (zero column) gets 0."""
    return _one_minus_normalized_entropy(_check_importance(importance).T)


def completeness(importance: np.ndarray) -> float:
    """C = mean_k C_k (Eastwood & Williams 2018; disentanglement_lib averages
    factors with equal weight)."""
    return float(np.mean(completeness_per_factor(importance)))


def _make_model(model: str, seed: int, n_estimators: int, max_depth: int | None):
    if model == "random_forest":
        return RandomForestClassifier(n_estimators=n_estimators, max_depth=max_depth,
                                      max_features=None, random_state=seed)
    return GradientBoostingClassifier(random_state=seed)


def importance_matrix(codes_train: np.ndarray, factors_train: np.ndarray,
                      codes_test: np.ndarray, factors_test: np.ndarray,
                      model: str = "random_forest", rng: np.random.Generator | int = 0,
                      n_estimators: int = 10, max_depth: int | None = 10,
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit one classifier per factor on the training codes; returns R (K, F) (each column the
    classifier's ``feature_importances_``, summing to 1 or, if the factor takes one value in
    training, all zeros), and the train and test accuracies per factor, shape (F,).
    ``n_estimators`` and ``max_depth`` apply to the random forest only."""
    codes_train = as_codes("codes_train", codes_train)
    codes_test = as_codes("codes_test", codes_test)
    factors_train = as_factors("factors_train", factors_train)
    factors_test = as_factors("factors_test", factors_test)
    same_rows("codes_train", codes_train, "factors_train", factors_train)
    same_rows("codes_test", codes_test, "factors_test", factors_test)
    if codes_train.shape[1] != codes_test.shape[1]:
        raise ValueError(f"codes_train and codes_test must have the same number of columns; "
                         f"got {codes_train.shape[1]} and {codes_test.shape[1]}")
    if factors_train.shape[1] != factors_test.shape[1]:
        raise ValueError(f"factors_train and factors_test must have the same number of columns;"
                         f" got {factors_train.shape[1]} and {factors_test.shape[1]}")
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}; got {model!r}")
    n_estimators = int_at_least("n_estimators", n_estimators, 1)
    if max_depth is not None:
        max_depth = int_at_least("max_depth", max_depth, 1)
    rng = as_rng(rng)
    n_codes, n_factors = codes_train.shape[1], factors_train.shape[1]
    importance = np.zeros((n_codes, n_factors))
    train_accuracy = np.empty(n_factors)
    test_accuracy = np.empty(n_factors)
    for k in range(n_factors):
        y_train, y_test = factors_train[:, k], factors_test[:, k]
        seed = int(rng.integers(2**31 - 1))
        if np.unique(y_train).size < 2:
            # A constant factor: nothing to learn, every code has importance 0.
            train_accuracy[k] = 1.0
            test_accuracy[k] = float(np.mean(y_test == y_train[0]))
            continue
        classifier = _make_model(model, seed, n_estimators, max_depth)
        classifier.fit(codes_train, y_train)
        importance[:, k] = np.abs(classifier.feature_importances_)
        train_accuracy[k] = classifier.score(codes_train, y_train)
        test_accuracy[k] = classifier.score(codes_test, y_test)
    return importance, train_accuracy, test_accuracy


def dci(codes_train: np.ndarray, factors_train: np.ndarray, codes_test: np.ndarray,
        factors_test: np.ndarray, model: str = "random_forest",
        rng: np.random.Generator | int = 0, n_estimators: int = 10,
        max_depth: int | None = 10) -> dict:
    """DCI of codes (N, K) against integer factors (N, F), predictors fit on the training rows
    and informativeness measured on the test rows (module docstring for the variant).

    Returns ``{"disentanglement", "completeness", "informativeness" (mean test accuracy),
    "informativeness_train" (mean train accuracy), "informativeness_per_factor" [F],
    "importance" (K, F) nested list}``.
    """
    importance, train_accuracy, test_accuracy = importance_matrix(
        codes_train, factors_train, codes_test, factors_test, model=model, rng=rng,
        n_estimators=n_estimators, max_depth=max_depth)
    return {"disentanglement": disentanglement(importance),
            "completeness": completeness(importance),
            "informativeness": float(np.mean(test_accuracy)),
            "informativeness_train": float(np.mean(train_accuracy)),
            "informativeness_per_factor": test_accuracy.tolist(),
            "importance": importance.tolist()}

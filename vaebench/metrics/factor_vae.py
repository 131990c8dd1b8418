"""FactorVAE disentanglement score.

Kim & Mnih 2018, "Disentangling by Factorising". With s_j the standard deviation of code
j over the whole dataset:

1. prune the collapsed codes, s_j < ``prune_std``;
2. one vote: choose a factor k uniformly, draw a batch of ``batch_size`` observations that share
   one random value of k (other factors random), normalise each code by s_j and take
   d = argmin_j Var_batch(z_j) / s_j^2 (sample variances, ddof = 1);
3. the majority-vote classifier maps each code d to the factor that voted for it most often,
   fit on ``n_train`` votes; the score is its accuracy on ``n_eval`` fresh votes.

Variant: disentanglement_lib's (Locatello et al. 2019, ``factor_vae.py``) on a finite dataset:
the global variance is taken over all N rows (disentanglement_lib uses 10,000 sampled points),
"sampling with k fixed" chooses rows that share k's value (see ``FactorSampler``), and the
pruning threshold is the paper's 0.05 on the standard deviation (disentanglement_lib prunes at
0). If every code is pruned the score is 0.
"""

from __future__ import annotations

import numpy as np

from vaebench.metrics._checks import as_codes, as_rng, int_at_least
from vaebench.metrics.sampler import FactorSampler

_VOTES_PER_CHUNK = 1024


def majority_vote_accuracy(train_votes: np.ndarray, eval_votes: np.ndarray) -> tuple[float,
                                                                                         float]:
    """Train and eval accuracy of the majority-vote classifier (Kim & Mnih 2018).

    ``votes[k, j]`` counts the votes where factor k was fixed and code j had the smallest
    normalised variance. The classifier maps code j to argmax_k train_votes[k, j] (ties to the
    lowest k); its accuracy on a vote matrix V is sum_j V[c(j), j] / sum V."""
    classifier = np.argmax(train_votes, axis=0)
    codes = np.arange(train_votes.shape[1])
    train = train_votes[classifier, codes].sum() / train_votes.sum()
    evaluation = eval_votes[classifier, codes].sum() / eval_votes.sum()
    return float(train), float(evaluation)


def _votes(codes: np.ndarray, global_var: np.ndarray, sampler: FactorSampler,
           rng: np.random.Generator, batch_size: int, n_votes: int) -> np.ndarray:
    """Vote matrix (F, K) of ``n_votes`` votes, drawn in chunks to bound memory."""
    votes = np.zeros((sampler.num_factors, codes.shape[1]), dtype=np.int64)
    for start in range(0, n_votes, _VOTES_PER_CHUNK):
        size = min(_VOTES_PER_CHUNK, n_votes - start)
        fixed = rng.integers(0, sampler.num_factors, size=size)
        rows = sampler.sample_fixed_batches(fixed, batch_size, rng)
        local_var = codes[rows].var(axis=1, ddof=1)
        np.add.at(votes, (fixed, np.argmin(local_var / global_var, axis=1)), 1)
    return votes


def factor_vae_score(codes: np.ndarray, sampler: FactorSampler, rng: np.random.Generator | int,
                     batch_size: int = 64, n_train: int = 10_000, n_eval: int = 5_000,
                     prune_std: float = 0.05) -> dict:
    """FactorVAE score of ``codes`` (N, K), the encoder means of the N rows of ``sampler``.

    Returns ``{"factor_vae": eval accuracy, "train_accuracy", "eval_accuracy",
    "num_active_dims"}``. Chance level is about 1/F when the factor is chosen uniformly.
    """
    codes = as_codes("codes", codes)
    if not isinstance(sampler, FactorSampler):
        raise TypeError(f"sampler must be a FactorSampler; got {type(sampler).__name__}")
    if codes.shape[0] != sampler.num_rows:
        raise ValueError(f"codes and sampler must have the same number of rows; "
                         f"got {codes.shape[0]} and {sampler.num_rows}")
    rng = as_rng(rng)
    batch_size = int_at_least("batch_size", batch_size, 2)
    n_train = int_at_least("n_train", n_train, 1)
    n_eval = int_at_least("n_eval", n_eval, 1)
    if not np.isfinite(prune_std) or prune_std < 0:
        raise ValueError(f"prune_std must be a finite number >= 0; got {prune_std!r}")
    global_var = codes.var(axis=0, ddof=1) if codes.shape[0] > 1 else np.zeros(codes.shape[1])
    active = (np.sqrt(global_var) >= prune_std) & (global_var > 0)
    if not active.any():
        return {"factor_vae": 0.0, "train_accuracy": 0.0, "eval_accuracy": 0.0,
                "num_active_dims": 0}
    active_codes = codes[:, active]
    train_votes = _votes(active_codes, global_var[active], sampler, rng, batch_size, n_train)
    eval_votes = _votes(active_codes, global_var[active], sampler, rng, batch_size, n_eval)
    train, evaluation = majority_vote_accuracy(train_votes, eval_votes)
    return {"factor_vae": evaluation, "train_accuracy": train, "eval_accuracy": evaluation,
            "num_active_dims": int(active.sum())}

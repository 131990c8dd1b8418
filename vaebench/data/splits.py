"""Seeded index splits (numpy.random.default_rng, PCG64)."""

from __future__ import annotations

import numpy as np


def _check_sizes(n: int, val_size: int, n_train: int | None) -> int:
    """The number of images left for training; a ValueError for impossible sizes."""
    if not 0 <= val_size < n:
        raise ValueError(f"val_size={val_size} must be in [0, {n - 1}] for {n} training images")
    available = n - val_size
    if n_train is not None and not 1 <= n_train <= available:
        raise ValueError(
            f"n_train={n_train} must be in [1, {available}] ({n} images minus val_size={val_size})"
        )
    return available


def holdout_split(
    n: int, val_size: int, n_train: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split range(n) into (train, val) indices, each sorted.

    val = the last ``val_size`` entries of a seeded permutation; train = the others, or the first
    ``n_train`` of them in permutation order when ``n_train`` is given.
    """
    available = _check_sizes(n, val_size, n_train)
    perm = np.random.default_rng(seed).permutation(n)
    train = perm[:available] if n_train is None else perm[:n_train]
    return np.sort(train), np.sort(perm[available:])


def train_val_split(n: int, val_size: int, n_train: int | None, seed: int,
                    how: str = "random") -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices of an official training set of ``n`` images, sorted.

    ``random``: ``holdout_split``. ``last``: val = the last ``val_size`` images in the file's
    order and train = the ones before them (the first ``n_train`` if given), with no
    shuffling: the split of the VampPrior and Exemplar VAE code (MNIST and Fashion-MNIST:
    train = images 0..49999, val = 50000..59999).
    """
    if how == "random":
        return holdout_split(n, val_size, n_train, seed)
    if how != "last":
        raise ValueError(f"unknown val_split {how!r}; valid choices: random, last")
    available = _check_sizes(n, val_size, n_train)
    return np.arange(available if n_train is None else n_train), np.arange(available, n)


def split_description(how: str, n: int) -> str:
    if how == "last":
        return (f"val = the last val_size of the {n} official training images in file order, "
                "train = the ones before them (first n_train if given), no shuffling; "
                "test = official test set")
    return (f"val = last val_size of numpy.random.default_rng(seed).permutation({n}) of the "
            "official training set; train = the rest (first n_train of it if given); test = "
            "official test set")


def _largest_remainder(total: int, counts: np.ndarray) -> np.ndarray:
    """Allocate ``total`` proportionally to ``counts`` (largest remainder; ties by class order)."""
    quota = total * counts / counts.sum()
    alloc = np.floor(quota).astype(np.int64)
    order = np.argsort(-(quota - alloc), kind="stable")
    alloc[order[: total - alloc.sum()]] += 1
    return alloc


def stratified_split(y: np.ndarray, sizes: tuple[int, ...], seed: int) -> list[np.ndarray]:
    """Split indices into len(sizes) + 1 sorted parts with class proportions preserved.

    Part j (for j < len(sizes)) gets sizes[j] indices, allocated across classes by largest remainder
    of sizes[j] * n_c / n; the last part gets the rest. Within each class the members are taken in
    the order of a seeded permutation.
    """
    y = np.asarray(y)
    classes, counts = np.unique(y, return_counts=True)
    if sum(sizes) >= len(y):
        raise ValueError(f"split sizes {sizes} leave no examples out of {len(y)}")
    allocs = [_largest_remainder(size, counts) for size in sizes]
    taken = np.sum(allocs, axis=0)
    if np.any(taken > counts):
        c = int(np.argmax(taken - counts))
        raise ValueError(
            f"split sizes {sizes} need {taken[c]} of class {classes[c]}; it has {counts[c]}"
        )
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(len(sizes) + 1)]
    for c, label in enumerate(classes):
        members = rng.permutation(np.flatnonzero(y == label))
        start = 0
        for j, alloc in enumerate(allocs):
            parts[j].append(members[start : start + alloc[c]])
            start += alloc[c]
        parts[-1].append(members[start:])
    return [np.sort(np.concatenate(p)) for p in parts]

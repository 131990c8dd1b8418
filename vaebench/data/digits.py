"""sklearn's 8x8 handwritten digits (UCI optdigits test set, 1797 images, grey levels 0..16)."""

from __future__ import annotations

import numpy as np

from vaebench.data.bundle import Built
from vaebench.data.fetch import sha256_bytes
from vaebench.data.splits import stratified_split

LEVELS = 17


def build(cfg) -> Built:
    """Stratified train/val/test split of ``load_digits()`` (offline, bundled with scikit-learn)."""
    import sklearn  # imported here: importing scikit-learn takes about 1.5 s
    from sklearn.datasets import load_digits

    data = load_digits()
    x, y = np.asarray(data.data), np.asarray(data.target)
    if not (np.all(x == np.round(x)) and x.min() >= 0 and x.max() <= LEVELS - 1):
        raise ValueError("sklearn load_digits returned values outside the integers 0..16")
    x = x.astype(np.uint8)
    y = y.astype(np.int64)
    val, test, train = stratified_split(y, (cfg.val_size, cfg.test_size), cfg.seed)
    arrays = {}
    for split, idx in (("train", train), ("val", val), ("test", test)):
        arrays[f"x_{split}"] = x[idx]
        arrays[f"y_{split}"] = y[idx]
    return Built(
        arrays=arrays,
        kind="image",
        levels=LEVELS,
        image_shape=(1, 8, 8),
        n_classes=10,
        source={
            "loader": "sklearn.datasets.load_digits",
            "scikit_learn_version": sklearn.__version__,
            "sha256_x_uint8": sha256_bytes(x.tobytes()),
            "sha256_y_int64": sha256_bytes(y.tobytes()),
            "n_total": int(len(x)),
        },
        info={"split": "stratified by class (largest remainder), seeded permutation per class"},
    )

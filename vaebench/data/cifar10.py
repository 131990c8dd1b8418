"""CIFAR-10 (Krizhevsky 2009) from the official python-pickle archive.

The archive's SHA-256 is verified before anything inside it is unpickled.
"""

from __future__ import annotations

import io
import pickle
import tarfile

import numpy as np

from vaebench.data.bundle import Built
from vaebench.data.fetch import Expected, data_root, obtain_all
from vaebench.data.splits import split_description, train_val_split

ARCHIVE = Expected(
    "cifar-10-python.tar.gz", "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
)
URLS = ("https://www.cs.toronto.edu/~kriz/",)
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
MEMBER_DIR = "cifar-10-batches-py"


class CifarFormatError(ValueError):
    """The (checksum-verified) archive does not hold the expected batches."""


def _batch(archive: tarfile.TarFile, member: str, label: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        fh = archive.extractfile(f"{MEMBER_DIR}/{member}")
    except KeyError:
        raise CifarFormatError(f"{label}: member {MEMBER_DIR}/{member} is missing") from None
    if fh is None:
        raise CifarFormatError(f"{label}: member {MEMBER_DIR}/{member} is not a regular file")
    batch = pickle.loads(fh.read(), encoding="bytes")
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise CifarFormatError(f"{label}: {member} lacks the keys b'data' and b'labels'")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise CifarFormatError(
            f"{label}: {member} data is {data.dtype} {data.shape}, not (N, 3072) uint8"
        )
    if labels.shape != (len(data),) or labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise CifarFormatError(f"{label}: {member} labels do not match {len(data)} images in 0..9")
    return data, labels


def load_raw() -> tuple[dict[str, np.ndarray], dict]:
    """Verified official arrays: x (N, 3072) uint8 in C*H*W order (R, G, B planes), y int64."""
    cache = data_root() / "cifar10"
    (got,) = obtain_all([ARCHIVE], dataset="cifar10", local_dirs=[cache], url_bases=list(URLS),
                        cache_dir=cache)
    label = got.source.get("path") or got.source["url"]
    try:
        archive = tarfile.open(fileobj=io.BytesIO(got.data), mode="r:gz")
    except (tarfile.TarError, OSError, EOFError) as err:
        raise CifarFormatError(f"{label}: cannot open the tar.gz archive ({err})") from None
    with archive:
        train = [_batch(archive, member, label) for member in TRAIN_BATCHES]
        test = _batch(archive, TEST_BATCH, label)
    arrays = {
        "x_train": np.concatenate([d for d, _ in train]),
        "y_train": np.concatenate([y for _, y in train]),
        "x_test": test[0],
        "y_test": test[1],
    }
    return arrays, got.source


def build(cfg) -> Built:
    """Official test batch; validation held out from the 50000 training images (seeded)."""
    raw, source = load_raw()
    train, val = train_val_split(len(raw["x_train"]), cfg.val_size, cfg.n_train, cfg.seed,
                                 cfg.val_split)
    arrays = {
        "x_train": raw["x_train"][train], "y_train": raw["y_train"][train],
        "x_val": raw["x_train"][val], "y_val": raw["y_train"][val],
        "x_test": raw["x_test"], "y_test": raw["y_test"],
    }
    return Built(
        arrays=arrays,
        kind="image",
        levels=256,
        image_shape=(3, 32, 32),
        n_classes=10,
        source={"files": {"archive": source}},
        info={"split": (split_description("last", len(raw["x_train"])) if cfg.val_split == "last"
                         else "val = last val_size of numpy.random.default_rng(seed).permutation("
                         f"{len(raw['x_train'])}) of data_batch_1..5; train = the rest (first "
                         "n_train of it if given); test = test_batch"),
              "n_official": {"train": int(len(raw["x_train"])), "test": int(len(raw["x_test"]))}},
    )

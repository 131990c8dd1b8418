"""MNIST and Fashion-MNIST from their official IDX gz files, checksummed on every use."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaebench.data.bundle import Built
from vaebench.data.fetch import Expected, data_root, obtain_all
from vaebench.data.idx import IdxFormatError, parse_idx, parse_idx_gz
from vaebench.data.splits import split_description, train_val_split

PARTS = ("train-images", "train-labels", "t10k-images", "t10k-labels")

# SHA-256 of the official archives (LeCun et al.; mirrored by PyTorch's ossci and Google's cvdf).
MNIST_FILES: dict[str, Expected] = {
    "train-images": Expected(
        "train-images-idx3-ubyte.gz",
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    ),
    "train-labels": Expected(
        "train-labels-idx1-ubyte.gz",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    ),
    "t10k-images": Expected(
        "t10k-images-idx3-ubyte.gz",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    ),
    "t10k-labels": Expected(
        "t10k-labels-idx1-ubyte.gz",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ),
}
MNIST_URLS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

# Official archive SHA-256 (zalandoresearch/fashion-mnist) and, for re-compressed copies such as
# Debian's dataset-fashion-mnist 0.0~git20200523, the SHA-256 of the decompressed IDX payload.
FASHION_FILES: dict[str, Expected] = {
    "train-images": Expected(
        "train-images-idx3-ubyte.gz",
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    ),
    "train-labels": Expected(
        "train-labels-idx1-ubyte.gz",
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    ),
    "t10k-images": Expected(
        "t10k-images-idx3-ubyte.gz",
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    ),
    "t10k-labels": Expected(
        "t10k-labels-idx1-ubyte.gz",
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
}
FASHION_URLS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


def _sources(name: str) -> tuple[dict[str, Expected], list[Path], list[str], Path]:
    """(files, local folders in search order, URL bases, cache folder) for ``name``."""
    if name == "mnist":
        cache = data_root() / "mnist"
        return MNIST_FILES, [cache], list(MNIST_URLS), cache
    if name == "fashion-mnist":
        cache = data_root() / "fashion-mnist"
        return FASHION_FILES, [cache, FASHION_SYSTEM_DIR], list(FASHION_URLS), cache
    raise ValueError(f"unknown IDX dataset {name!r}; valid choices: mnist, fashion-mnist")


def load_raw(name: str) -> tuple[dict[str, np.ndarray], dict]:
    """Verified official arrays and their sources.

    Returns ({"x_train": (60000, 784) uint8, "y_train", "x_test", "y_test"}, {part: source}) where
    each source records the path or URL used and its checksums.
    """
    files, local_dirs, url_bases, cache = _sources(name)
    got = obtain_all([files[part] for part in PARTS], dataset=name, local_dirs=local_dirs,
                     url_bases=url_bases, cache_dir=cache)
    raw: dict[str, np.ndarray] = {}
    sources: dict[str, dict] = {}
    for part, verified in zip(PARTS, got, strict=True):
        label = verified.source.get("path") or verified.source["url"]
        if verified.payload is not None:
            raw[part] = parse_idx(verified.payload, label)
        else:
            raw[part] = parse_idx_gz(verified.data, label)
        sources[part] = verified.source
    arrays = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = raw[f"{prefix}-images"], raw[f"{prefix}-labels"]
        image_label = sources[f"{prefix}-images"].get("path") or sources[f"{prefix}-images"]["url"]
        if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
            raise IdxFormatError(
                f"{image_label}: expected uint8 images of shape (N, 28, 28), "
                f"got {images.dtype} {images.shape}"
            )
        if labels.ndim != 1 or len(labels) != len(images) or labels.max(initial=0) > 9:
            raise IdxFormatError(
                f"{image_label}: labels of shape {labels.shape} (max {labels.max(initial=0)}) "
                f"do not match {len(images)} images with classes 0..9"
            )
        arrays[f"x_{split}"] = images.reshape(len(images), 28 * 28)
        arrays[f"y_{split}"] = labels.astype(np.int64)
    return arrays, sources


def build_idx(name: str, cfg) -> Built:
    """Official test set; validation held out from the official training set (seeded)."""
    raw, sources = load_raw(name)
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
        image_shape=(1, 28, 28),
        n_classes=10,
        source={"files": sources},
        info={"split": split_description(cfg.val_split, len(raw["x_train"])),
              "n_official": {"train": int(len(raw["x_train"])), "test": int(len(raw["x_test"]))}},
    )

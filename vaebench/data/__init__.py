"""Data layer: prepare data sets once (arrays.npz + manifest.json), load them with a checksum.

>>> manifest = prepare("digits", {"seed": 0}, Path("data/digits"))
>>> bundle = load(Path("data/digits"))
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pydantic
from pydantic import BaseModel, ValidationError

from vaebench.data import cifar10, digits, dsprites, linear_gaussian, mnist
from vaebench.data.bundle import (
    ARRAYS_FILE,
    FORMAT,
    MANIFEST_FILE,
    SPLITS,
    Built,
    Bundle,
    bundle_from,
    manifest_json,
    npz_bytes,
    read_arrays,
    read_manifest,
)
from vaebench.data.configs import (
    CIFAR10Config,
    DigitsConfig,
    DSpritesConfig,
    FashionMNISTConfig,
    LinearGaussianConfig,
    MNISTConfig,
)
from vaebench.data.fetch import ChecksumError, DataUnavailableError, data_root, sha256_bytes
from vaebench.data.idx import IdxFormatError
from vaebench.data.preprocess import preprocessing_record
from vaebench.io import atomic_write_bytes

__all__ = [
    "DATASETS",
    "Bundle",
    "ChecksumError",
    "DataUnavailableError",
    "IdxFormatError",
    "config_class",
    "data_root",
    "load",
    "prepare",
]

DATASETS: tuple[str, ...] = (
    "digits", "fashion-mnist", "dsprites", "linear-gaussian", "mnist", "cifar10",
)

_CONFIGS: dict[str, type[BaseModel]] = {
    "digits": DigitsConfig,
    "fashion-mnist": FashionMNISTConfig,
    "dsprites": DSpritesConfig,
    "linear-gaussian": LinearGaussianConfig,
    "mnist": MNISTConfig,
    "cifar10": CIFAR10Config,
}

_BUILDERS: dict[str, Callable[[BaseModel], Built]] = {
    "digits": digits.build,
    "fashion-mnist": lambda cfg: mnist.build_idx("fashion-mnist", cfg),
    "dsprites": dsprites.build,
    "linear-gaussian": linear_gaussian.build,
    "mnist": lambda cfg: mnist.build_idx("mnist", cfg),
    "cifar10": cifar10.build,
}


def _check_name(name: object) -> str:
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid choices: {', '.join(DATASETS)}")
    return name


def config_class(name: str) -> type[BaseModel]:
    """The typed configuration class of data set ``name`` (extra fields forbidden)."""
    return _CONFIGS[_check_name(name)]


def _validated(name: str, cfg: BaseModel | Mapping | None) -> BaseModel:
    cls = config_class(name)
    if isinstance(cfg, cls):
        return cfg
    if cfg is None:
        cfg = {}
    if isinstance(cfg, BaseModel) or not isinstance(cfg, Mapping):
        raise TypeError(
            f"cfg for dataset {name!r} must be a {cls.__name__} or a dict, got {type(cfg).__name__}"
        )
    try:
        return cls.model_validate(dict(cfg))
    except ValidationError as err:
        problems = []
        for e in err.errors():
            where = ".".join(str(part) for part in e["loc"])
            shown = f"{where}={e['input']!r}" if where else "config"
            problems.append(f"{shown}: {e['msg']}")
        raise ValueError(
            f"invalid config for dataset {name!r}: " + "; ".join(problems)
            + f" (valid fields: {', '.join(cls.model_fields)})"
        ) from None


def _array_record(arrays: dict[str, np.ndarray]) -> dict:
    return {k: {"shape": list(a.shape), "dtype": a.dtype.name} for k, a in sorted(arrays.items())}


def prepare(name: str, cfg: BaseModel | Mapping | None, out_dir: Path) -> dict:
    """Build data set ``name`` from ``cfg``; write out_dir/arrays.npz and manifest.json atomically.

    arrays.npz is written first and manifest.json (which records its SHA-256) last, each through a
    temporary file renamed into place. Returns the manifest.
    """
    cfg = _validated(_check_name(name), cfg)
    built = _BUILDERS[name](cfg)
    arrays = built.arrays
    dim = int(arrays["x_train"].shape[1])
    blob = npz_bytes(arrays)
    manifest = {
        "format": FORMAT,
        "name": name,
        "config": cfg.model_dump(mode="json"),
        "kind": built.kind,
        "levels": built.levels,
        "image_shape": list(built.image_shape) if built.image_shape is not None else None,
        "dim": dim,
        "n_classes": built.n_classes,
        "splits": {split: int(len(arrays[f"x_{split}"])) for split in SPLITS},
        "factor_names": list(built.factor_names) if built.factor_names is not None else None,
        "factor_sizes": list(built.factor_sizes) if built.factor_sizes is not None else None,
        "factor_values": built.factor_values,
        "source": built.source,
        "preprocessing": preprocessing_record(built.kind, built.levels, dim, cfg.seed),
        "arrays": {
            "file": ARRAYS_FILE,
            "sha256": sha256_bytes(blob),
            "bytes": len(blob),
            "members": _array_record(arrays),
        },
        "environment": {
            "numpy": np.__version__,
            "pydantic": pydantic.__version__,
            "python": sys.version.split()[0],
        },
        **built.info,
    }
    bundle_from(manifest, arrays)  # validates shapes before anything is written
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_dir / ARRAYS_FILE, blob)
    atomic_write_bytes(out_dir / MANIFEST_FILE, manifest_json(manifest))
    return manifest


def load(out_dir: Path) -> Bundle:
    """Read a prepared data set, verifying arrays.npz against the SHA-256 in manifest.json."""
    manifest = read_manifest(Path(out_dir))
    _check_name(manifest.get("name"))
    return bundle_from(manifest, read_arrays(Path(out_dir), manifest))

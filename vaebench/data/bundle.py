"""The prepared-data container and its on-disk form (arrays.npz + manifest.json)."""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vaebench.data.fetch import ChecksumError, sha256_file

ARRAYS_FILE = "arrays.npz"
MANIFEST_FILE = "manifest.json"
FORMAT = "vaebench-data/1"
KINDS = ("image", "continuous")
SPLITS = ("train", "val", "test")
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass
class Built:
    """What a data set builder returns: arrays keyed as in arrays.npz plus metadata."""

    arrays: dict[str, np.ndarray]
    kind: str
    levels: int | None
    image_shape: tuple[int, int, int] | None
    n_classes: int | None
    source: dict
    factor_names: tuple[str, ...] | None = None
    factor_sizes: tuple[int, ...] | None = None
    factor_values: dict[str, list[float]] | None = None
    info: dict = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Bundle:
    """A prepared data set: flattened splits, labels, factors and metadata.

    ``x_*`` are (N, D): uint8 grey levels 0..levels-1 for ``kind == "image"`` (C*H*W row-major,
    reshape with ``image_shape``), float32 for ``kind == "continuous"``.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray | None
    x_val: np.ndarray
    y_val: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray | None
    image_shape: tuple[int, int, int] | None
    kind: str
    levels: int | None
    n_classes: int | None
    factors_train: np.ndarray | None = None
    factors_val: np.ndarray | None = None
    factors_test: np.ndarray | None = None
    factor_names: tuple[str, ...] | None = None
    factor_sizes: tuple[int, ...] | None = None
    factor_values: dict[str, list[float]] | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r} is invalid; valid choices: {', '.join(KINDS)}")
        dims = set()
        for split in SPLITS:
            x = getattr(self, f"x_{split}")
            if x.ndim != 2:
                raise ValueError(f"x_{split} must be 2-D (N, D), got shape {x.shape}")
            dims.add(x.shape[1])
            for prefix in ("y", "factors"):
                other = getattr(self, f"{prefix}_{split}")
                if other is not None and len(other) != len(x):
                    raise ValueError(
                        f"{prefix}_{split} has {len(other)} rows but x_{split} has {len(x)}"
                    )
        if len(dims) != 1:
            raise ValueError(f"x_train, x_val and x_test disagree on the dimension: {sorted(dims)}")
        if self.image_shape is not None and int(np.prod(self.image_shape)) != self.dim:
            raise ValueError(f"image_shape {self.image_shape} does not match dim {self.dim}")

    @property
    def dim(self) -> int:
        """Flattened data dimension D."""
        return int(self.x_train.shape[1])


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """Serialise arrays as a reproducible .npz (sorted members, fixed timestamps, deflate level 1).

    The same arrays always give the same bytes, so the SHA-256 identifies the content.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", allowZip64=True) as archive:
        for key in sorted(arrays):
            member = io.BytesIO()
            array = np.asarray(arrays[key])  # (np.ascontiguousarray would turn 0-d into 1-d)
            np.lib.format.write_array(member, np.copy(array, order="C"), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue(), zipfile.ZIP_DEFLATED, compresslevel=1)
    return buffer.getvalue()


def read_arrays(out_dir: Path, manifest: dict) -> dict[str, np.ndarray]:
    """Read arrays.npz after checking its SHA-256 against the manifest."""
    path = Path(out_dir) / ARRAYS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: prepared arrays not found")
    expected = manifest.get("arrays", {}).get("sha256")
    actual = sha256_file(path)
    if actual != expected:
        raise ChecksumError(
            f"{path}: SHA-256 {actual} does not match {expected} recorded in {MANIFEST_FILE}"
        )
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def read_manifest(out_dir: Path) -> dict:
    path = Path(out_dir) / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found (run prepare first)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} manifest")
    return manifest


def manifest_json(manifest: dict) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()


def bundle_from(manifest: dict, arrays: dict[str, np.ndarray]) -> Bundle:
    """Assemble a :class:`Bundle` from a manifest and the arrays it describes."""
    missing = [f"x_{s}" for s in SPLITS if f"x_{s}" not in arrays]
    if missing:
        raise ValueError(f"{ARRAYS_FILE} lacks {', '.join(missing)}")
    shape = manifest.get("image_shape")
    names, sizes = manifest.get("factor_names"), manifest.get("factor_sizes")
    return Bundle(
        name=manifest["name"],
        **{f"{p}_{s}": arrays.get(f"{p}_{s}") for p in ("x", "y", "factors") for s in SPLITS},
        image_shape=tuple(shape) if shape is not None else None,
        kind=manifest["kind"],
        levels=manifest.get("levels"),
        n_classes=manifest.get("n_classes"),
        factor_names=tuple(names) if names is not None else None,
        factor_sizes=tuple(sizes) if sizes is not None else None,
        factor_values=manifest.get("factor_values"),
        extra={k.removeprefix("extra_"): v for k, v in arrays.items() if k.startswith("extra_")},
        manifest=manifest,
    )

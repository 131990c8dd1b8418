"""CIFAR-10 loader against a small archive in the official format (pickled batches in a tar.gz)."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile

import numpy as np
import pytest

from vaebench.data import ChecksumError, DataUnavailableError, load, prepare
from vaebench.data import cifar10 as cifar_mod
from vaebench.data.fetch import Expected

PER_BATCH, N_TEST = 4, 5


def make_archive(batches: dict[str, dict]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, batch in batches.items():
            blob = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            archive.addfile(info, io.BytesIO(blob))
    return buffer.getvalue()


@pytest.fixture
def batches():
    rng = np.random.default_rng(7)
    out = {}
    for i in range(1, 6):
        out[f"data_batch_{i}"] = {
            b"data": rng.integers(0, 256, (PER_BATCH, 3072), dtype=np.uint8),
            b"labels": [int(v) for v in rng.integers(0, 10, PER_BATCH)],
            b"batch_label": f"training batch {i} of 5".encode(),
        }
    out["test_batch"] = {
        b"data": rng.integers(0, 256, (N_TEST, 3072), dtype=np.uint8),
        b"labels": [int(v) for v in rng.integers(0, 10, N_TEST)],
    }
    return out


def install(monkeypatch, data_root, blob: bytes, recorded_sha: str | None = None):
    folder = data_root / "cifar10"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cifar-10-python.tar.gz"
    path.write_bytes(blob)
    digest = recorded_sha or hashlib.sha256(blob).hexdigest()
    monkeypatch.setattr(cifar_mod, "ARCHIVE", Expected("cifar-10-python.tar.gz", digest))
    return path


def test_cifar10_prepare_from_fixture_archive(monkeypatch, data_root, tmp_path, batches):
    install(monkeypatch, data_root, make_archive(batches))
    manifest = prepare("cifar10", {"val_size": 4, "seed": 0}, tmp_path / "out")
    bundle = load(tmp_path / "out")
    assert bundle.image_shape == (3, 32, 32) and bundle.levels == 256 and bundle.dim == 3072
    assert (len(bundle.x_train), len(bundle.x_val), len(bundle.x_test)) == (16, 4, N_TEST)
    assert np.array_equal(bundle.x_test, batches["test_batch"][b"data"])
    assert bundle.y_test.tolist() == batches["test_batch"][b"labels"]
    train_x = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    train_y = sum((batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    # the held-out split is a partition of the five training batches with labels preserved
    got_x = np.concatenate([bundle.x_train, bundle.x_val])
    got_y = np.concatenate([bundle.y_train, bundle.y_val])
    order = [int(np.flatnonzero((train_x == row).all(axis=1))[0]) for row in got_x]
    assert sorted(order) == list(range(20))
    assert got_y.tolist() == [train_y[i] for i in order]
    assert manifest["source"]["files"]["archive"]["verified_by"] == "archive sha256"


def test_cifar10_checksum_checked_before_unpickling(monkeypatch, data_root, tmp_path, batches):
    blob = make_archive(batches)
    path = install(monkeypatch, data_root, blob, recorded_sha="f" * 64)

    def forbidden(*args, **kwargs):
        raise AssertionError("unpickled an unverified archive")

    monkeypatch.setattr(pickle, "loads", forbidden)
    with pytest.raises(ChecksumError) as info:
        prepare("cifar10", {"val_size": 4}, tmp_path / "out")
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert hashlib.sha256(blob).hexdigest() in message and "f" * 64 in message


def test_cifar10_missing_batch_is_named(monkeypatch, data_root, tmp_path, batches):
    del batches["data_batch_3"]
    install(monkeypatch, data_root, make_archive(batches))
    with pytest.raises(ValueError, match="cifar-10-batches-py/data_batch_3 is missing"):
        prepare("cifar10", {"val_size": 4}, tmp_path / "out")


def test_cifar10_offline_error_names_url_and_cache(data_root, tmp_path, offline):
    with pytest.raises(DataUnavailableError) as info:
        prepare("cifar10", {}, tmp_path / "out")
    message = str(info.value)
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert "\n" not in message
    assert f"{url} (URLError: network disabled in tests)" in message
    assert f"{data_root / 'cifar10' / 'cifar-10-python.tar.gz'} (not found)" in message
    assert f"Place the official files in {data_root / 'cifar10'}" in message
    assert not (tmp_path / "out").exists() and not (data_root / "cifar10").exists()
    assert [u for u, _ in offline] == [url]
    assert cifar_mod.ARCHIVE.sha256 == (
        "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
    )

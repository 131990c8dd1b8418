"""IDX reader, checksums, local search order and downloads for MNIST and Fashion-MNIST."""

from __future__ import annotations

import hashlib
import io
import struct
import urllib.request

import numpy as np
import pytest

from vaebench.data import ChecksumError, DataUnavailableError, IdxFormatError, load, prepare
from vaebench.data import mnist as mnist_mod
from vaebench.data.fetch import DOWNLOAD_TIMEOUT_S, Expected
from vaebench.data.idx import parse_idx, parse_idx_gz

N_TRAIN, N_TEST = 30, 10


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def idx_set(fmt):
    """Small MNIST-shaped data and their IDX gz encodings, keyed like mnist.PARTS."""
    rng = np.random.default_rng(123)
    arrays = {
        "train-images": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "train-labels": np.arange(N_TRAIN, dtype=np.uint8) % 10,
        "t10k-images": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "t10k-labels": (np.arange(N_TEST, dtype=np.uint8) * 7) % 10,
    }
    payloads = {part: fmt.idx_bytes(a) for part, a in arrays.items()}
    files = {part: fmt.gz(p) for part, p in payloads.items()}
    return arrays, payloads, files


def install(folder, table, files) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for part, data in files.items():
        (folder / table[part].filename).write_bytes(data)


def archive_table(monkeypatch, table_name: str, files: dict[str, bytes]) -> dict[str, Expected]:
    """Replace a module's SHA table with the fixtures' archive hashes."""
    table = getattr(mnist_mod, table_name)
    new = {part: Expected(table[part].filename, sha(files[part])) for part in table}
    monkeypatch.setattr(mnist_mod, table_name, new)
    return new


# --- IDX reader ---------------------------------------------------------------------------------


def test_parse_idx_decodes_big_endian_types(fmt):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 4, 5), dtype=np.uint8)
    assert np.array_equal(parse_idx(fmt.idx_bytes(images), "u8"), images)
    ints = rng.integers(-3000, 3000, (7, 2)).astype(np.int16)
    decoded = parse_idx(fmt.idx_bytes(ints, ">i2"), "i16")
    assert decoded.dtype == np.int16 and np.array_equal(decoded, ints)
    floats = rng.standard_normal(6).astype(np.float32)
    assert np.array_equal(parse_idx(fmt.idx_bytes(floats, ">f4"), "f32"), floats)
    assert np.array_equal(parse_idx_gz(fmt.gz(fmt.idx_bytes(images)), "gz"), images)


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b"\x00\x01\x08\x01" + struct.pack(">I", 2) + b"ab", "magic"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 2) + b"ab", "type code 0x07"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 2), "truncated IDX header"),
        (b"\x00\x00\x08\x02" + struct.pack(">II", 3, 4) + bytes(11), "truncated: 11 data bytes"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 2) + bytes(3), "trailing bytes"),
        (b"\x00\x00", "shorter than the 4-byte magic"),
    ],
)
def test_parse_idx_rejects_malformed_payload_naming_the_file(payload, needle):
    with pytest.raises(IdxFormatError) as info:
        parse_idx(payload, "/some/file-idx3-ubyte")
    message = str(info.value)
    assert message.startswith("/some/file-idx3-ubyte: ") and needle in message
    assert "\n" not in message


def test_parse_idx_gz_rejects_broken_gzip(fmt):
    data = fmt.gz(fmt.idx_bytes(np.zeros((4, 4), np.uint8)))
    with pytest.raises(IdxFormatError, match="^broken.gz: cannot decompress"):
        parse_idx_gz(data[: len(data) // 2], "broken.gz")


# --- MNIST from the cache ------------------------------------------------------------------------


def test_mnist_prepare_from_verified_cache(monkeypatch, data_root, tmp_path, idx_set, offline):
    arrays, _, files = idx_set
    table = archive_table(monkeypatch, "MNIST_FILES", files)
    install(data_root / "mnist", table, files)
    manifest = prepare("mnist", {"val_size": 6, "seed": 3}, tmp_path / "out")
    bundle = load(tmp_path / "out")
    assert offline == []  # the cache sufficed
    assert (len(bundle.x_train), len(bundle.x_val), len(bundle.x_test)) == (24, 6, N_TEST)
    assert bundle.x_train.dtype == np.uint8 and bundle.dim == 784
    assert bundle.image_shape == (1, 28, 28) and bundle.levels == 256 and bundle.n_classes == 10
    assert np.array_equal(bundle.x_test, arrays["t10k-images"].reshape(N_TEST, 784))
    assert np.array_equal(bundle.y_test, arrays["t10k-labels"])
    # train and val partition the official training set, rows keep their labels
    flat = arrays["train-images"].reshape(N_TRAIN, 784)
    picked = {}
    for split, x, y in (("train", bundle.x_train, bundle.y_train),
                        ("val", bundle.x_val, bundle.y_val)):
        picked[split] = [int(np.flatnonzero((flat == row).all(axis=1))[0]) for row in x]
        assert np.array_equal(y, arrays["train-labels"][picked[split]])
    # val = the last val_size entries of the seeded permutation, kept in file order
    permutation = np.random.default_rng(3).permutation(N_TRAIN)
    assert picked["val"] == sorted(permutation[-6:].tolist())
    both = np.concatenate([bundle.x_train, bundle.x_val])
    assert np.array_equal(np.unique(both, axis=0), np.unique(flat, axis=0))
    record = manifest["source"]["files"]["train-images"]
    assert record["path"] == str(data_root / "mnist" / "train-images-idx3-ubyte.gz")
    assert record["sha256"] == table["train-images"].sha256


def test_mnist_n_train_subsample_and_seed(monkeypatch, data_root, tmp_path, idx_set):
    _, _, files = idx_set
    install(data_root / "mnist", archive_table(monkeypatch, "MNIST_FILES", files), files)
    a = prepare("mnist", {"val_size": 5, "n_train": 7, "seed": 1}, tmp_path / "a")
    b = prepare("mnist", {"val_size": 5, "n_train": 7, "seed": 1}, tmp_path / "b")
    c = prepare("mnist", {"val_size": 5, "n_train": 7, "seed": 2}, tmp_path / "c")
    assert a["splits"] == {"train": 7, "val": 5, "test": N_TEST}
    assert a["arrays"]["sha256"] == b["arrays"]["sha256"] != c["arrays"]["sha256"]
    with pytest.raises(ValueError, match=r"n_train=26 must be in \[1, 25\]"):
        prepare("mnist", {"val_size": 5, "n_train": 26}, tmp_path / "d")


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_mnist_damaged_cache_file_names_file_and_hashes(
    monkeypatch, data_root, tmp_path, idx_set, damage
):
    _, _, files = idx_set
    table = archive_table(monkeypatch, "MNIST_FILES", files)
    install(data_root / "mnist", table, files)
    path = data_root / "mnist" / "train-labels-idx1-ubyte.gz"
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        del data[-9:]
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError) as info:
        prepare("mnist", {"val_size": 5}, tmp_path / "out")
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert sha(bytes(data)) in message and table["train-labels"].sha256 in message
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_idx_truncated_payload_with_matching_checksum_names_file(
    monkeypatch, data_root, tmp_path, idx_set, fmt
):
    _, payloads, files = idx_set
    files = dict(files, **{"t10k-images": fmt.gz(payloads["t10k-images"][:-100])})
    install(data_root / "mnist", archive_table(monkeypatch, "MNIST_FILES", files), files)
    with pytest.raises(IdxFormatError) as info:
        prepare("mnist", {"val_size": 5}, tmp_path / "out")
    assert str(info.value).startswith(str(data_root / "mnist" / "t10k-images-idx3-ubyte.gz"))
    assert "truncated" in str(info.value)


# --- Fashion-MNIST: re-compressed files, search order, failure message -------------------------


def test_fashion_accepts_recompressed_file_by_payload_hash(
    monkeypatch, data_root, tmp_path, idx_set, fmt
):
    arrays, payloads, files = idx_set
    # Official archive hashes that the local files cannot match, payload hashes that they do.
    table = {
        part: Expected(e.filename, "0" * 64, sha(payloads[part]))
        for part, e in mnist_mod.FASHION_FILES.items()
    }
    monkeypatch.setattr(mnist_mod, "FASHION_FILES", table)
    monkeypatch.setattr(mnist_mod, "FASHION_SYSTEM_DIR", tmp_path / "system")
    recompressed = {part: fmt.gz(p, mtime=1234567, level=1) for part, p in payloads.items()}
    install(tmp_path / "system", table, recompressed)
    manifest = prepare("fashion-mnist", {"val_size": 4}, tmp_path / "out")
    record = manifest["source"]["files"]["t10k-images"]
    assert record["path"] == str(tmp_path / "system" / "t10k-images-idx3-ubyte.gz")
    assert record["payload_sha256"] == sha(payloads["t10k-images"])
    assert record["verified_by"].startswith("payload")
    assert np.array_equal(load(tmp_path / "out").y_test, arrays["t10k-labels"])


def test_fashion_cache_takes_precedence_over_system_folder(
    monkeypatch, data_root, tmp_path, idx_set
):
    _, _, files = idx_set
    table = archive_table(monkeypatch, "FASHION_FILES", files)
    monkeypatch.setattr(mnist_mod, "FASHION_SYSTEM_DIR", tmp_path / "system")
    install(tmp_path / "system", table, files)
    install(data_root / "fashion-mnist", table, files)
    manifest = prepare("fashion-mnist", {"val_size": 4}, tmp_path / "out")
    assert manifest["source"]["files"]["train-images"]["path"].startswith(str(data_root))


def test_fashion_wrong_payload_names_file_and_both_hashes(
    monkeypatch, tmp_path, idx_set, fmt
):
    _, payloads, _ = idx_set
    table = {
        part: Expected(e.filename, "a" * 64, sha(payloads[part]))
        for part, e in mnist_mod.FASHION_FILES.items()
    }
    monkeypatch.setattr(mnist_mod, "FASHION_FILES", table)
    monkeypatch.setattr(mnist_mod, "FASHION_SYSTEM_DIR", tmp_path / "system")
    wrong = payloads["train-images"][:-1] + b"\x01"
    install(tmp_path / "system", table, {"train-images": fmt.gz(wrong)})
    with pytest.raises(ChecksumError) as info:
        prepare("fashion-mnist", {}, tmp_path / "out")
    message = str(info.value)
    path = tmp_path / "system" / "train-images-idx3-ubyte.gz"
    assert message.startswith(f"{path}: checksum mismatch")
    assert sha(wrong) in message and sha(payloads["train-images"]) in message
    assert "a" * 64 in message


def test_fashion_all_sources_fail_names_all_three(monkeypatch, data_root, tmp_path, offline):
    monkeypatch.setattr(mnist_mod, "FASHION_SYSTEM_DIR", tmp_path / "no-system")
    with pytest.raises(DataUnavailableError) as info:
        prepare("fashion-mnist", {}, tmp_path / "out")
    message = str(info.value)
    base = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
    names = [mnist_mod.FASHION_FILES[part].filename for part in mnist_mod.PARTS]
    assert message.startswith(f"fashion-mnist: cannot obtain 4 of 4 files ({', '.join(names)})")
    for name in names:
        assert f"{data_root / 'fashion-mnist' / name} (not found)" in message
        assert f"{tmp_path / 'no-system' / name} (not found)" in message
        assert f"{base + name} (URLError: network disabled in tests)" in message
    assert "\n" not in message
    assert offline == [(base + name, DOWNLOAD_TIMEOUT_S) for name in names]
    assert not (tmp_path / "out").exists() and not (data_root / "fashion-mnist").exists()


# --- MNIST downloads -----------------------------------------------------------------------------


def test_mnist_offline_error_names_every_file_urls_and_cache_folder(data_root, tmp_path,
                                                                      offline):
    with pytest.raises(DataUnavailableError) as info:
        prepare("mnist", {}, tmp_path / "out")
    message = str(info.value)
    assert "\n" not in message
    names = [mnist_mod.MNIST_FILES[part].filename for part in mnist_mod.PARTS]
    assert len(names) == 4
    assert message.startswith(f"mnist: cannot obtain 4 of 4 files ({', '.join(names)})")
    urls = [base + name for name in names for base in mnist_mod.MNIST_URLS]
    assert urls[0].startswith("https://ossci-datasets.s3.amazonaws.com/mnist/")
    assert urls[1].startswith("https://storage.googleapis.com/cvdf-datasets/mnist/")
    for url in urls:
        assert f"{url} (URLError: network disabled in tests)" in message
    assert f"Place the official files in {data_root / 'mnist'}" in message
    assert "let the download run" in message
    assert [url for url, _ in offline] == urls
    assert all(0 < timeout <= 30 for _, timeout in offline)
    # nothing written: no output folder, no empty cache folder
    assert not (tmp_path / "out").exists()
    assert not (data_root / "mnist").exists()


def test_mnist_download_verifies_then_falls_back_and_caches(
    monkeypatch, data_root, tmp_path, idx_set
):
    _, _, files = idx_set
    table = archive_table(monkeypatch, "MNIST_FILES", files)
    by_name = {table[part].filename: data for part, data in files.items()}
    first, second = mnist_mod.MNIST_URLS
    served: list[str] = []

    def fake_urlopen(url, timeout=None):
        served.append(url)
        name = url.rsplit("/", 1)[1]
        if url.startswith(first):  # the first mirror serves damaged files
            return io.BytesIO(by_name[name][:-5])
        return io.BytesIO(by_name[name])

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    manifest = prepare("mnist", {"val_size": 5}, tmp_path / "out")
    record = manifest["source"]["files"]["t10k-labels"]
    assert record["url"] == second + "t10k-labels-idx1-ubyte.gz"
    assert len(served) == 8
    cache = data_root / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(by_name)  # no temporary files left
    for name, data in by_name.items():
        assert (cache / name).read_bytes() == data
    served.clear()
    prepare("mnist", {"val_size": 5}, tmp_path / "again")
    assert served == []  # second run reads the cache

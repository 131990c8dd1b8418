"""prepare/load: round trip, manifest, atomic writes, checksums, names and configs."""

from __future__ import annotations

import hashlib
import json
import math
import os

import numpy as np
import pytest
from sklearn.datasets import load_digits

import vaebench.data as data
from vaebench.data import DATASETS, ChecksumError, config_class, load, prepare
from vaebench.data import bundle as bundle_mod


@pytest.fixture
def digits_dir(tmp_path):
    out = tmp_path / "digits"
    manifest = prepare("digits", {}, out)
    return out, manifest


def test_digits_round_trip_and_stratification(digits_dir):
    out, manifest = digits_dir
    b = load(out)
    assert b.name == "digits" and b.kind == "image" and b.levels == 17 and b.n_classes == 10
    assert b.image_shape == (1, 8, 8) and b.dim == 64 and b.x_train.dtype == np.uint8
    assert (len(b.x_train), len(b.x_val), len(b.x_test)) == (1257, 270, 270)
    assert b.factors_train is None and b.extra == {} and b.manifest == manifest
    # the three splits partition sklearn's data set, rows keeping their labels
    ref = load_digits()
    ref_rows = np.concatenate([ref.data.astype(np.uint8), ref.target[:, None]], axis=1)
    got_rows = np.concatenate([
        np.concatenate([x, y[:, None]], axis=1)
        for x, y in ((b.x_train, b.y_train), (b.x_val, b.y_val), (b.x_test, b.y_test))
    ])
    assert np.array_equal(np.unique(got_rows, axis=0, return_counts=True)[1].sum(), 1797)
    assert np.array_equal(np.unique(got_rows, axis=0), np.unique(ref_rows, axis=0))
    assert sorted(map(bytes, got_rows)) == sorted(map(bytes, ref_rows))
    # stratified: each class's share of val/test is within one image of proportional
    counts = np.bincount(ref.target)
    for y, size in ((b.y_val, 270), (b.y_test, 270)):
        assert np.all(np.abs(np.bincount(y, minlength=10) - size * counts / 1797) < 1)


def test_manifest_fields(digits_dir):
    out, manifest = digits_dir
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["format"] == "vaebench-data/1" and manifest["name"] == "digits"
    assert manifest["config"] == {"seed": 0, "val_size": 270, "test_size": 270}
    assert manifest["splits"] == {"train": 1257, "val": 270, "test": 270}
    digest = hashlib.sha256((out / "arrays.npz").read_bytes()).hexdigest()
    assert manifest["arrays"]["sha256"] == digest
    assert manifest["arrays"]["members"]["x_train"] == {"shape": [1257, 64], "dtype": "uint8"}
    gaussian = manifest["preprocessing"]["by_decoder"]["gaussian"]
    assert gaussian["log_correction_nats"] == pytest.approx(64 * math.log(17))
    assert manifest["preprocessing"]["by_decoder"]["bernoulli"]["train"] == "dynamic_binarize"
    assert manifest["source"]["loader"] == "sklearn.datasets.load_digits"


def test_prepare_is_deterministic_and_seeded(tmp_path, digits_dir):
    _, first = digits_dir
    again = prepare("digits", {"seed": 0}, tmp_path / "again")
    other = prepare("digits", {"seed": 1}, tmp_path / "other")
    assert again["arrays"]["sha256"] == first["arrays"]["sha256"]
    assert other["arrays"]["sha256"] != first["arrays"]["sha256"]


def test_writes_leave_no_temporary_files(digits_dir):
    out, _ = digits_dir
    assert sorted(p.name for p in out.iterdir()) == ["arrays.npz", "manifest.json"]


def test_tampered_arrays_fail_naming_the_file(digits_dir):
    out, manifest = digits_dir
    path = out / "arrays.npz"
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(ChecksumError) as info:
        load(out)
    message = str(info.value)
    assert message.startswith(f"{path}: SHA-256 ")
    assert manifest["arrays"]["sha256"] in message and "\n" not in message


def test_missing_manifest_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json: manifest not found"):
        load(tmp_path)


@pytest.mark.parametrize("call", [
    lambda d: prepare("mnist2", {}, d),
    lambda d: config_class("mnist2"),
])
def test_unknown_dataset_names_value_and_choices(tmp_path, call):
    with pytest.raises(ValueError) as info:
        call(tmp_path)
    message = str(info.value)
    assert "'mnist2'" in message and "\n" not in message
    for name in DATASETS:
        assert name in message


def test_unknown_dataset_in_manifest(digits_dir):
    out, manifest = digits_dir
    (out / "manifest.json").write_text(json.dumps(dict(manifest, name="svhn")))
    with pytest.raises(ValueError, match="unknown dataset 'svhn'; valid choices: digits, "):
        load(out)


def test_configs_are_typed_with_study_defaults(tmp_path):
    assert DATASETS == ("digits", "fashion-mnist", "dsprites", "linear-gaussian", "mnist",
                        "cifar10")
    assert config_class("fashion-mnist")().model_dump() == {
        "seed": 0, "val_size": 5000, "n_train": None, "val_split": "random"}
    assert config_class("dsprites")().n_samples == 20000
    assert config_class("linear-gaussian")().model_dump() == {
        "seed": 0, "d": 20, "k": 4, "sigma2": 0.1, "signal_var_max": 4.0,
        "signal_var_min": 1.0, "n_train": 10000, "n_val": 2000, "n_test": 2000}
    assert len({config_class(name) for name in DATASETS}) == len(DATASETS)
    with pytest.raises(ValueError) as info:
        prepare("digits", {"val_sise": 10}, tmp_path)
    message = str(info.value)
    assert "val_sise=10" in message and "Extra inputs are not permitted" in message
    assert "valid fields: seed, val_size, test_size" in message and "\n" not in message
    with pytest.raises(TypeError, match="must be a DigitsConfig or a dict, got DSpritesConfig"):
        prepare("digits", config_class("dsprites")(), tmp_path)
    cfg = config_class("digits")(val_size=100)
    assert prepare("digits", cfg, tmp_path / "typed")["splits"]["val"] == 100
    with pytest.raises(ValueError, match="seed=-1"):
        prepare("digits", {"seed": -1}, tmp_path)


def test_bundle_rejects_inconsistent_arrays():
    x = np.zeros((4, 6), np.uint8)
    kwargs = dict(name="digits", x_train=x, y_train=None, x_val=x, y_val=None, x_test=x,
                  y_test=None, image_shape=(1, 2, 3), kind="image", levels=2, n_classes=None)
    assert data.Bundle(**kwargs).dim == 6
    with pytest.raises(ValueError, match="kind='grey' is invalid"):
        data.Bundle(**dict(kwargs, kind="grey"))
    with pytest.raises(ValueError, match="y_val has 3 rows but x_val has 4"):
        data.Bundle(**dict(kwargs, y_val=np.zeros(3)))
    with pytest.raises(ValueError, match=r"image_shape \(1, 2, 2\) does not match dim 6"):
        data.Bundle(**dict(kwargs, image_shape=(1, 2, 2)))


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_unreadable_data_says_how_to_rebuild_it(tmp_path, monkeypatch, damage):
    import pipelines.common as common

    out = tmp_path / "digits"
    prepare("digits", {}, out)
    blob = (out / "arrays.npz").read_bytes()
    if damage == "truncate":
        (out / "arrays.npz").write_bytes(blob[: len(blob) // 3])
    else:
        (out / "arrays.npz").write_bytes(blob[:-10] + bytes(b ^ 1 for b in blob[-10:]))
    monkeypatch.setattr(common, "DATA", tmp_path)
    with pytest.raises(ValueError) as info:
        common.load_bundle("digits")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{out}: dataset 'digits' cannot be read (")
    assert message.endswith("rebuild it with `dvc repro -f data@digits`")

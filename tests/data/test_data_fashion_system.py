"""The real Fashion-MNIST files from Debian's dataset-fashion-mnist, when installed."""

from __future__ import annotations

import numpy as np
import pytest

from vaebench.data import mnist as mnist_mod

pytestmark = pytest.mark.skipif(
    not all((mnist_mod.FASHION_SYSTEM_DIR / e.filename).is_file()
            for e in mnist_mod.FASHION_FILES.values()),
    reason=f"Fashion-MNIST not installed in {mnist_mod.FASHION_SYSTEM_DIR} "
    "(apt-get install dataset-fashion-mnist)",
)


def test_fashion_mnist_system_files_verify_and_decode(offline):
    arrays, sources = mnist_mod.load_raw("fashion-mnist")
    assert offline == []
    assert arrays["x_train"].shape == (60000, 784) and arrays["x_test"].shape == (10000, 784)
    assert arrays["x_train"].dtype == np.uint8
    # Xiao et al. 2017: 7000 images per class, 6000 train / 1000 test.
    assert np.bincount(arrays["y_train"], minlength=10).tolist() == [6000] * 10
    assert np.bincount(arrays["y_test"], minlength=10).tolist() == [1000] * 10
    assert arrays["x_train"].max() == 255 and arrays["x_train"].min() == 0
    for part, record in sources.items():
        assert record["path"].startswith(str(mnist_mod.FASHION_SYSTEM_DIR))
        expected = mnist_mod.FASHION_FILES[part]
        assert expected.sha256 == record["sha256"] or (
            expected.payload_sha256 == record["payload_sha256"]
        )

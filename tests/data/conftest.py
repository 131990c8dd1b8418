"""Shared fixtures for the data-layer tests: no network, a private data root, format writers."""

from __future__ import annotations

import gzip
import struct
import urllib.error
import urllib.request
from types import SimpleNamespace

import numpy as np
import pytest

IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(">i2"): 0x0B, np.dtype(">f4"): 0x0D}


def idx_bytes(array: np.ndarray, dtype: str | np.dtype = np.uint8) -> bytes:
    """Encode an array in the IDX format with struct, independently of the reader under test."""
    dtype = np.dtype(dtype)
    header = struct.pack(">BBBB", 0, 0, IDX_CODES[dtype], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=dtype).tobytes()


def gz(data: bytes, mtime: int = 0, level: int = 9) -> bytes:
    return gzip.compress(data, compresslevel=level, mtime=mtime)


@pytest.fixture(autouse=True)
def data_root(tmp_path, monkeypatch):
    """Point $VAEBENCH_DATA at an empty private folder."""
    root = tmp_path / "vaebench-data"
    root.mkdir()
    monkeypatch.setenv("VAEBENCH_DATA", str(root))
    return root


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Make every urlopen fail (and record the URLs) so no test touches the network."""
    calls: list[tuple[str, float | None]] = []

    def refuse(url, *args, timeout=None, **kwargs):
        calls.append((url, timeout))
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return calls


@pytest.fixture
def fmt():
    """Writers for the raw formats: IDX (``idx_bytes``) and gzip (``gz``)."""
    return SimpleNamespace(idx_bytes=idx_bytes, gz=gz)

"""Locating, downloading and checksumming raw dataset files.

Every raw file is identified by its official SHA-256. A file is accepted when the SHA-256 of the
file itself matches, or (for gzip files re-compressed by a redistributor, such as Debian's
``dataset-fashion-mnist``) when the SHA-256 of its decompressed payload matches the known payload
hash. The hash is checked on every use, before the contents are parsed.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

DATA_ENV_VAR = "VAEBENCH_DATA"
DEFAULT_DATA_ROOT = "~/.cache/vaebench"
DOWNLOAD_TIMEOUT_S = 15.0
_CHUNK = 1 << 20


class ChecksumError(ValueError):
    """A raw file or a prepared array file does not match its recorded SHA-256."""


class DataUnavailableError(FileNotFoundError):
    """No source (local folder or URL) could provide a verified raw file."""


@dataclass(frozen=True)
class Expected:
    """A raw file and its known SHA-256 digests.

    ``sha256`` is the digest of the file as published; ``payload_sha256`` (gzip files only) is the
    digest of the decompressed payload, which stays the same when the file is re-compressed.
    """

    filename: str
    sha256: str
    payload_sha256: str | None = None


@dataclass(frozen=True)
class Verified:
    """The verified contents of a raw file and where they came from."""

    data: bytes
    payload: bytes | None
    source: dict


def data_root() -> Path:
    """Root folder for raw files: ``$VAEBENCH_DATA`` or ``~/.cache/vaebench``."""
    return Path(os.environ.get(DATA_ENV_VAR) or DEFAULT_DATA_ROOT).expanduser()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify(data: bytes, expected: Expected, origin: str) -> tuple[bytes | None, dict]:
    """Check ``data`` against ``expected``; return (decompressed payload or None, checksum record).

    Raises :class:`ChecksumError` naming ``origin`` and both the actual and expected digests.
    """
    actual = sha256_bytes(data)
    if actual == expected.sha256:
        return None, {"sha256": actual, "verified_by": "archive sha256"}
    if expected.payload_sha256 is None:
        raise ChecksumError(
            f"{origin}: SHA-256 {actual} does not match the expected SHA-256 {expected.sha256}"
        )
    try:
        payload = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as err:
        raise ChecksumError(
            f"{origin}: SHA-256 {actual} does not match the expected archive SHA-256 "
            f"{expected.sha256}, and its gzip payload cannot be read ({type(err).__name__}: {err})"
        ) from None
    payload_actual = sha256_bytes(payload)
    if payload_actual != expected.payload_sha256:
        raise ChecksumError(
            f"{origin}: checksum mismatch: archive SHA-256 {actual} (expected {expected.sha256}), "
            f"gzip payload SHA-256 {payload_actual} (expected {expected.payload_sha256})"
        )
    return payload, {
        "sha256": actual,
        "payload_sha256": payload_actual,
        "verified_by": "payload sha256 (re-compressed archive)",
    }


def _download(url: str, dest: Path, expected: Expected, timeout: float) -> Verified:
    """Download ``url`` to a temporary file beside ``dest``, verify it, rename it into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=timeout) as response:
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as fh:
                while chunk := response.read(_CHUNK):
                    fh.write(chunk)
            data = tmp.read_bytes()
            payload, record = verify(data, expected, url)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
    return Verified(data, payload, {"url": url, "path": str(dest), **record})


def _reason(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return f"{type(err).__name__}: {err.reason}"
    return f"{type(err).__name__}: {err}"


def obtain(
    expected: Expected,
    *,
    dataset: str,
    local_dirs: list[Path],
    urls: list[str],
    cache_dir: Path,
    timeout: float = DOWNLOAD_TIMEOUT_S,
) -> Verified:
    """Return the verified contents of ``expected.filename``.

    Looks in ``local_dirs`` in order (the first existing file is used and must pass the checksum),
    then downloads from ``urls`` in order into ``cache_dir``. When every source fails, raises
    :class:`DataUnavailableError` with one line naming each path/URL tried and why it failed.
    """
    attempts: list[str] = []
    for folder in local_dirs:
        path = Path(folder) / expected.filename
        if path.is_file():
            data = path.read_bytes()
            payload, record = verify(data, expected, str(path))
            return Verified(data, payload, {"path": str(path), **record})
        attempts.append(f"{path} (not found)")
    for url in urls:
        try:
            return _download(url, Path(cache_dir) / expected.filename, expected, timeout)
        except ChecksumError as err:
            attempts.append(f"{url} ({err})")
        except (OSError, ValueError, http.client.HTTPException) as err:
            attempts.append(f"{url} ({_reason(err)})")
    raise DataUnavailableError(
        f"{dataset}: cannot obtain {expected.filename}: tried " + "; ".join(attempts)
        + f". Place the official file in {cache_dir} and run again"
    )

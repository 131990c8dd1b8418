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
    """Download ``url`` to a temporary file beside ``dest``, verify it, rename it into place.

    The cache folder is created only for a download that succeeds: a failed one leaves no
    empty folder behind.
    """
    with urllib.request.urlopen(url, timeout=timeout) as response:
        created = not dest.parent.exists()
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as fh:
                while chunk := response.read(_CHUNK):
                    fh.write(chunk)
            data = tmp.read_bytes()
            payload, record = verify(data, expected, url)
            os.replace(tmp, dest)
        except BaseException:
            if created and dest.parent.is_dir() and not any(dest.parent.iterdir()):
                dest.parent.rmdir()
            raise
        finally:
            tmp.unlink(missing_ok=True)
    return Verified(data, payload, {"url": url, "path": str(dest), **record})


def _reason(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return f"{type(err).__name__}: {err.reason}"
    return f"{type(err).__name__}: {err}"


def _try(expected: Expected, local_dirs: list[Path], urls: list[str], cache_dir: Path,
         timeout: float) -> Verified | list[tuple[str, str]]:
    """The verified file, or the (source, reason) of every failed attempt."""
    attempts: list[tuple[str, str]] = []
    for folder in local_dirs:
        path = Path(folder) / expected.filename
        if path.is_file():
            data = path.read_bytes()
            payload, record = verify(data, expected, str(path))
            return Verified(data, payload, {"path": str(path), **record})
        attempts.append((str(path), "not found"))
    for url in urls:
        try:
            return _download(url, Path(cache_dir) / expected.filename, expected, timeout)
        except ChecksumError as err:
            attempts.append((url, str(err)))
        except (OSError, ValueError, http.client.HTTPException) as err:
            attempts.append((url, _reason(err)))
    return attempts


def obtain_all(
    expected: list[Expected],
    *,
    dataset: str,
    local_dirs: list[Path],
    url_bases: list[str],
    cache_dir: Path,
    timeout: float = DOWNLOAD_TIMEOUT_S,
) -> list[Verified]:
    """The verified contents of every file in ``expected``, in order.

    Each file is looked for in ``local_dirs`` in order (the first existing copy is used and must
    pass the checksum), then downloaded from each of ``url_bases`` into ``cache_dir``. When some
    files cannot be had, raises one :class:`DataUnavailableError` naming every missing file,
    each folder and URL tried with why it failed, and where to put the files.
    """
    found: list[Verified] = []
    missing: dict[str, list[tuple[str, str]]] = {}
    for item in expected:
        got = _try(item, local_dirs, [base + item.filename for base in url_bases], cache_dir,
                   timeout)
        if isinstance(got, Verified):
            found.append(got)
        else:
            missing[item.filename] = got
    if not missing:
        return found
    tried = "; ".join(f"{source} ({reason})" for attempts in missing.values()
                      for source, reason in attempts)
    raise DataUnavailableError(
        f"{dataset}: cannot obtain {len(missing)} of {len(expected)} files "
        f"({', '.join(missing)}): tried {tried}. Place the official files in {cache_dir} (or "
        f"point ${DATA_ENV_VAR} at a folder holding them), or let the download run, and run again"
    )

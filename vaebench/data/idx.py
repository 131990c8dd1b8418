"""Reader for the IDX format used by MNIST and Fashion-MNIST.

Format (LeCun et al., http://yann.lecun.com/exdb/mnist/, section "FILE FORMATS"): a 4-byte magic
number ``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian uint32 sizes, then the data in C order,
big-endian. Type codes: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64.
"""

from __future__ import annotations

import gzip
import struct
import zlib

import numpy as np

IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IdxFormatError(ValueError):
    """An IDX file is malformed: bad magic number, unknown type, truncated or oversized payload."""


def parse_idx(payload: bytes, name: str) -> np.ndarray:
    """Decode an (uncompressed) IDX payload into a native-endian array; ``name`` labels errors."""
    if len(payload) < 4:
        raise IdxFormatError(
            f"{name}: not an IDX file: {len(payload)} bytes, shorter than the 4-byte magic number"
        )
    if payload[0] != 0 or payload[1] != 0:
        raise IdxFormatError(
            f"{name}: bad IDX magic number 0x{payload[:4].hex()}: the first two bytes must be zero"
        )
    type_code, ndim = payload[2], payload[3]
    if type_code not in IDX_DTYPES:
        valid = ", ".join(f"0x{code:02x}" for code in IDX_DTYPES)
        raise IdxFormatError(f"{name}: unknown IDX type code 0x{type_code:02x}; valid: {valid}")
    if ndim == 0:
        raise IdxFormatError(f"{name}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(payload) < header:
        raise IdxFormatError(
            f"{name}: truncated IDX header: {len(payload)} bytes, need {header} for {ndim} sizes"
        )
    shape = struct.unpack(f">{ndim}I", payload[4:header])
    dtype = IDX_DTYPES[type_code]
    count = int(np.prod(shape, dtype=np.int64))
    have, need = len(payload) - header, count * dtype.itemsize
    if have != need:
        what = "truncated" if have < need else "has trailing bytes"
        raise IdxFormatError(
            f"{name}: IDX payload {what}: {have} data bytes, expected {need} for shape "
            f"{tuple(shape)} of {dtype.name}"
        )
    data = np.frombuffer(payload, dtype=dtype, count=count, offset=header)
    return data.reshape(shape).astype(dtype.newbyteorder("="), copy=True)


def parse_idx_gz(data: bytes, name: str) -> np.ndarray:
    """Decompress a gzip'd IDX file and decode it; ``name`` labels errors."""
    try:
        payload = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as err:
        raise IdxFormatError(
            f"{name}: cannot decompress gzip data ({type(err).__name__}: {err})"
        ) from None
    return parse_idx(payload, name)

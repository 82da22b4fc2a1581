"""Where each record of a TFRecord file is, so that records can be read by index.

A TFRecord file is a sequence of records, each framed as
`uint64 length | uint32 masked CRC of length | length bytes | uint32 masked CRC of data`
(little-endian). Reading the frames finds every record's offset and length without
parsing it; `spec.EncodedExamples.read` then reads any record in O(1). The CRCs are
not checked here: TensorFlow checks them when it parses the records. Compressed
(GZIP/ZLIB) files cannot be indexed, and are refused as not TFRecord files.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

import numpy as np

from bigmodel_cli.errors import DataError

FRAME = 12  # length (8) and its CRC (4) before the data
TRAILER = 4  # the data's CRC after it
_LENGTH = struct.Struct("<Q")


def record_spans(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, lengths) of every record's data in `path`, as int64 arrays. A frame that
    runs past the end of the file is refused: not a TFRecord file, or truncated."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, 2)
            if size == 0:
                return np.empty(0, np.int64), np.empty(0, np.int64)
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
                return _spans(view, size, path)
    except OSError as err:
        raise DataError(f"data.paths: {path}: cannot read ({err.strerror})") from None


def _spans(view, size: int, path: Path) -> tuple[np.ndarray, np.ndarray]:
    offsets, lengths = [], []
    position = 0
    while position < size:
        if position + FRAME > size:
            raise _truncated(path, len(offsets))
        (length,) = _LENGTH.unpack_from(view, position)
        end = position + FRAME + length + TRAILER
        if end > size:
            raise _truncated(path, len(offsets))
        offsets.append(position + FRAME)
        lengths.append(length)
        position = end
    return np.asarray(offsets, np.int64), np.asarray(lengths, np.int64)


def _truncated(path: Path, records: int) -> DataError:
    return DataError(
        f"data.paths: {path}: not a TFRecord file, or truncated (after {records:,} "
        "record(s)); compressed files are not read: write them uncompressed"
    )

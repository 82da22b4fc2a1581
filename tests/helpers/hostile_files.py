"""Writers of hostile data files for tests/data/test_hostile_data.py: small files that declare
huge decoded sizes, headers that lie, values a float32 model cannot hold. Each is written
compactly from a few lines here: no large file is ever committed."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np


def write_csv(path: Path, header: list[str], rows) -> Path:
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def table(path: Path, target=None, cell=None, at: int = 7, n: int = 60) -> Path:
    """A csv of features a, b and a 0/1 target y, row `at` (0-based) changed: its `a`
    set to `cell`, or its target to `target`."""
    rows = []
    for i in range(n):
        a, y = (cell if i == at and cell is not None else i), i % 2
        rows.append((a, i * 0.5, target if i == at and target is not None else y))
    return write_csv(path, ["a", "b", "y"], rows)


def regression_table(path: Path, target: str, at: int = 7, n: int = 60) -> Path:
    """Features a, b and 60 distinct fractional targets (regression), row `at`'s target
    replaced by `target`."""
    rows = [(i, i * 0.5, target if i == at else f"{i * 0.37 + 0.01:.2f}") for i in range(n)]
    return write_csv(path, ["a", "b", "y"], rows)


def png_one_bit(path: Path, width: int, height: int) -> Path:
    """A valid 1-bit grayscale PNG of a fine stripe pattern: 12000 x 12000 pixels (144
    megapixels, 2.4 GB once decoded to RGB float32) is a 36 KB file."""
    row = b"\0" + b"\x55" * ((width + 7) // 8)  # filter byte, then 8 pixels a byte
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )
    return path


def gif_frames(path: Path, width: int, height: int, frames: int) -> Path:
    """A GIF whose logical screen is width x height, with `frames` frames of one pixel:
    TensorFlow decodes every frame at the screen's size."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(screen + frame * frames + b"\x3b")
    return path


# Two 16 x 16 frames of one colour each, as Pillow writes them (lossless): 140 bytes that
# make TensorFlow 2.21's decode_image abort the process ("free(): corrupted unsorted
# chunks"), with expand_animations=False too.
ANIMATED_WEBP = bytes.fromhex(
    "524946468400000057454250565038580a000000020000000f00000f0000414e494d060000000000"
    "00000000414e4d46280000000000000000000f00000f0000000000025650384c0f0000002f0fc003"
    "000710fd8ffe0722a2ff0100414e4d46280000000000000000000f00000f0000000000005650384c"
    "0f0000002f0fc003000710d1fffe0722a2ff0100"
)


def animated_webp(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(ANIMATED_WEBP)
    return path


def npy_bytes(array: np.ndarray, shape: tuple[int, ...] | None = None) -> bytes:
    """`array` as .npy bytes, its header declaring `shape` (default: its own)."""
    out = io.BytesIO()
    header = np.lib.format.header_data_from_array_1_0(array)
    if shape is not None:
        header["shape"] = shape
    np.lib.format.write_array_header_1_0(out, header)
    out.write(np.ascontiguousarray(array).tobytes())
    return out.getvalue()


def npz(path: Path, **members: bytes | np.ndarray) -> Path:
    """An .npz of `members`: arrays, or raw .npy bytes (e.g. from npy_bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, member in members.items():
            data = member if isinstance(member, bytes) else npy_bytes(member)
            archive.writestr(f"{name}.npy", data)
    return path


def lying_npz(path: Path, declared: tuple[int, ...], rows: int = 20) -> Path:
    """x of `rows` x 3 float32 values whose header declares shape `declared`, and y."""
    x = np.zeros((rows, 3), np.float32)
    return npz(path, x=npy_bytes(x, declared), y=np.arange(rows) % 2)

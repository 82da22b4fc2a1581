"""The decoded size of a PNG, JPEG, GIF, BMP or WebP file, read from its header alone.

A 500 KB PNG of one colour can declare 23000 x 23000 pixels, 1.6 GB once decoded and
several times that in the float32 copies resizing makes, so image readers ask here
before decoding. Pure Python, a few hundred bytes read per file (JPEG: the segments up
to the first frame header; GIF: the block structure, to count the frames TensorFlow
decodes). A file this module cannot parse gives None and is left to the decoder, which
names what is wrong with it.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}  # colour type -> decoded channels (palette: RGB)
# JPEG frame headers: SOF0-3, 5-7, 9-11, 13-15 (C4 is DHT, C8 JPG, CC DAC).
JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RSTn: markers without a length
MAX_JPEG_SEGMENTS = 10_000  # a file of empty segments must not keep us reading forever
# JPEG XL (a bare codestream, or the ISO container) decodes in TensorFlow too, but its
# size header is bit-packed: refused rather than decoded blind.
JXL_SIGNATURES = (b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")


class UnsupportedImage(Exception):
    """An image format TensorFlow would decode but whose size cannot be read first."""


@dataclass(frozen=True)
class ImageSize:
    """What a decoder will allocate: `frames` images of height x width x channels."""

    width: int
    height: int
    channels: int
    frames: int = 1

    @property
    def pixels(self) -> int:
        return self.width * self.height * self.frames

    def describe(self) -> str:
        frames = f" x {self.frames:,} frames" if self.frames > 1 else ""
        size = f"{self.width:,}x{self.height:,} pixels{frames}"
        return f"{size} ({self.pixels / 1e6:,.1f} megapixels)"


def image_size_of_file(path: Path) -> ImageSize | None:
    """The decoded size `path` declares, or None (unreadable, or not an image we parse);
    UnsupportedImage for JPEG XL and animated WebP."""
    try:
        with open(path, "rb") as stream:
            return image_size(stream)
    except OSError:
        return None  # the decoder reports the file by its error


def image_size_of_bytes(data: bytes) -> ImageSize | None:
    return image_size(io.BytesIO(data))


def image_size(stream: BinaryIO) -> ImageSize | None:
    """The decoded size the image in `stream` declares (format sniffed from its bytes)."""
    head = stream.read(30)
    try:
        if head.startswith(PNG_SIGNATURE):
            return _png(head)
        if head.startswith(b"\xff\xd8"):
            stream.seek(2)
            return _jpeg(stream)
        if head[:6] in (b"GIF87a", b"GIF89a"):
            stream.seek(0)
            return _gif(stream)
        if head.startswith(b"BM"):
            return _bmp(head)
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":  # TensorFlow decodes it too
            stream.seek(12)
            return _webp(stream)
    except (struct.error, ValueError, EOFError, IndexError):
        return None  # a truncated header: the decoder will say so
    if head.startswith(JXL_SIGNATURES):
        raise UnsupportedImage(
            "a JPEG XL file; bigmodel reads PNG, JPEG, GIF and BMP images (convert it)"
        )
    return None


def _png(head: bytes) -> ImageSize | None:
    if head[12:16] != b"IHDR":
        return None
    width, height, _depth, color = struct.unpack(">IIBB", head[16:26])
    return ImageSize(width, height, PNG_CHANNELS.get(color, 4))


def _jpeg(stream: BinaryIO) -> ImageSize | None:
    for _ in range(MAX_JPEG_SEGMENTS):
        marker = _read(stream, 2)
        while marker[0] == 0xFF and marker[1] == 0xFF:  # fill bytes before a marker
            marker = marker[1:] + _read(stream, 1)
        if marker[0] != 0xFF or marker[1] in (0xD9, 0xDA):  # garbage, EOI or scan data
            return None
        if marker[1] in JPEG_STANDALONE:
            continue
        (length,) = struct.unpack(">H", _read(stream, 2))
        if length < 2:
            return None
        if marker[1] in JPEG_SOF:
            _precision, height, width, components = struct.unpack(">BHHB", _read(stream, 6))
            return ImageSize(width, height, components)
        stream.seek(length - 2, io.SEEK_CUR)
    return None


def _gif(stream: BinaryIO) -> ImageSize | None:
    """The logical screen, and the number of frames: TensorFlow decodes every frame of
    an animation (then keeps the first), each the size of the screen, in RGB."""
    header = _read(stream, 13)
    width, height, flags = struct.unpack("<HHB", header[6:11])
    if flags & 0x80:  # a global colour table follows
        stream.seek(3 * 2 ** ((flags & 7) + 1), io.SEEK_CUR)
    frames = 0
    while True:
        block = stream.read(1)
        if block in (b"", b"\x3b"):  # end of file, or the trailer
            break
        if block == b"\x21":  # an extension: its label, then sub-blocks
            _read(stream, 1)
            _skip_sub_blocks(stream)
        elif block == b"\x2c":  # an image descriptor
            frames += 1
            descriptor = _read(stream, 9)
            if descriptor[8] & 0x80:  # a local colour table
                stream.seek(3 * 2 ** ((descriptor[8] & 7) + 1), io.SEEK_CUR)
            _read(stream, 1)  # LZW minimum code size
            _skip_sub_blocks(stream)
        else:
            break  # damaged: count what was seen, the decoder reports the rest
    return ImageSize(width, height, 3, max(frames, 1))


def _skip_sub_blocks(stream: BinaryIO) -> None:
    while True:
        size = _read(stream, 1)[0]
        if size == 0:
            return
        stream.seek(size, io.SEEK_CUR)


def _webp(stream: BinaryIO) -> ImageSize | None:
    """The canvas of a lossy (VP8), lossless (VP8L) or extended (VP8X) WebP file; an
    animation (ANMF chunks) is refused: TensorFlow 2.21 aborts decoding one."""
    kind, size = struct.unpack("<4sI", _read(stream, 8))
    body = _read(stream, min(size, 30))
    if kind == b"VP8 ":
        width, height = struct.unpack("<HH", body[6:10])
        return ImageSize(width & 0x3FFF, height & 0x3FFF, 3)
    if kind == b"VP8L":
        (bits,) = struct.unpack("<I", body[1:5])
        return ImageSize((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, 4)
    if kind != b"VP8X":
        return None
    width = int.from_bytes(body[4:7], "little") + 1
    height = int.from_bytes(body[7:10], "little") + 1
    stream.seek(12 + 8 + size + (size & 1))
    frames = 0
    while chunk := stream.read(8):
        if len(chunk) < 8:
            break
        kind, size = struct.unpack("<4sI", chunk)
        frames += kind == b"ANMF"
        stream.seek(size + (size & 1), io.SEEK_CUR)
    if frames > 1:
        raise UnsupportedImage(
            f"an animated WebP file ({frames} frames): TensorFlow's decoder corrupts memory on "
            "these and aborts the process; save its first frame as a PNG"
        )
    return ImageSize(width, height, 4)


def _bmp(head: bytes) -> ImageSize | None:
    (info_size,) = struct.unpack("<I", head[14:18])
    if info_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        width, height, _planes, bits = struct.unpack("<HHHH", head[18:26])
    else:
        width, height, _planes, bits = struct.unpack("<iiHH", head[18:30])
    channels = 4 if bits == 32 else 3
    return ImageSize(abs(width), abs(height), channels)  # a negative height is top-down


def _read(stream: BinaryIO, count: int) -> bytes:
    data = stream.read(count)
    if len(data) != count:
        raise EOFError
    return data

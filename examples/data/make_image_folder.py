"""Write scikit-learn's bundled digits as an `image_dir` folder of grayscale PNGs.

    python examples/data/make_image_folder.py [OUTPUT_FOLDER]

Writes the 1797 8x8 images (values 0..16, scaled to 0..255) to
`OUTPUT_FOLDER/<digit>/<index>.png`, by default `examples/data/digits_png/` next to this
script, for `configs/digits_folder_cnn.yaml`. The PNGs are encoded with the standard
library (zlib), so this needs nothing beyond scikit-learn and NumPy. The output is the
same byte for byte on every run.
"""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

import numpy as np

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "digits_png"


def png_bytes(image: np.ndarray) -> bytes:
    """An 8-bit grayscale PNG of a (height, width) uint8 array."""
    height, width = image.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit gray, no interlace
    rows = b"".join(b"\x00" + row.tobytes() for row in image)  # filter type 0 on every row
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def main(output: Path) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)
    for index, (image, label) in enumerate(zip(images, digits.target, strict=True)):
        folder = output / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{index:04d}.png").write_bytes(png_bytes(image))
    print(f"wrote {len(images)} images to {output}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUTPUT)

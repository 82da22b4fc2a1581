"""Split scikit-learn's bundled digits into two tasks for transfer learning.

    python examples/data/make_digit_subsets.py [OUTPUT_FOLDER]

Writes `digits_0to6.npz` (the images of digits 0-6, labels 0-6) and `digits_7to9.npz`
(the images of 7, 8 and 9, labelled 0, 1, 2) next to this script by default, for
`configs/digits_0to6_cnn.yaml` (the parent) and `configs/digits_finetune.yaml` (a model
started from it). No image is in both files, so the fine-tuned model is scored on
images its parent never saw. Each file holds `x` (N, 8, 8, 1) uint8 values 0..16 and
`y` int64, the same arrays on every run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

DEFAULT_OUTPUT = Path(__file__).resolve().parent


def write_subsets(folder: Path) -> tuple[Path, Path]:
    digits = load_digits()
    x = digits.images.astype(np.uint8)[..., None]
    y = digits.target.astype(np.int64)
    first = y < 7
    folder.mkdir(parents=True, exist_ok=True)
    parent, child = folder / "digits_0to6.npz", folder / "digits_7to9.npz"
    np.savez_compressed(parent, x=x[first], y=y[first])
    np.savez_compressed(child, x=x[~first], y=y[~first] - 7)
    return parent, child


if __name__ == "__main__":
    for path in write_subsets(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUTPUT):
        print(path)

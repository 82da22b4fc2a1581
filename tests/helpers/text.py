"""Text written for the tests: documents of a tiny, regular language."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_documents(folder: Path, count: int = 20, seed: int = 0) -> list[Path]:
    """Documents of a tiny, very regular language (each ends in its own marker byte)."""
    rng = np.random.default_rng(seed)
    words = ["the cat", "a dog", "sat on", "the mat", "and ran", "to the", "red hat"]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        sentences = [" ".join(rng.choice(words, 4)) + "." for _ in range(30)]
        path = folder / f"doc{i:02d}.txt"
        path.write_text(" ".join(sentences) + "\n", encoding="utf-8")
        paths.append(path)
    return paths

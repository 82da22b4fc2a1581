"""Build `stdlib_docstrings/`, a text-classification folder, from this machine's Python.

Each class is a standard-library package (asyncio, email, unittest, xml); each example is
the docstring of one function, method or class in that package's modules (tests
excluded), as one `.txt` file. No download: the text comes from the `.py` files of the
running Python. The result is deterministic for a given Python version: files are read in
sorted order, docstrings that occur in more than one package are dropped, and at most
`PER_CLASS` docstrings per package are kept, a seeded sample.

    python examples/data/make_text_folder.py            # writes examples/data/stdlib_docstrings
    python examples/data/make_text_folder.py OUT_DIR

The output folder is replaced (only if it holds nothing but class folders of .txt files).
"""

from __future__ import annotations

import ast
import random
import shutil
import sys
import sysconfig
from collections import Counter
from pathlib import Path

PACKAGES = ("asyncio", "email", "unittest", "xml")
PER_CLASS = 200
MIN_WORDS = 5
MAX_CHARS = 1500  # a few long docstrings would dominate the folder's size otherwise
SEED = 0
OUT = Path(__file__).resolve().parent / "stdlib_docstrings"


def docstrings(package: str) -> list[str]:
    """Docstrings (cleaned by `inspect.cleandoc`) of the package's functions and classes."""
    root = Path(sysconfig.get_paths()["stdlib"]) / package
    found = []
    for path in sorted(root.rglob("*.py")):
        if {"test", "tests"} & set(path.relative_to(root).parts):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                text = ast.get_docstring(node)
                if text and len(text.split()) >= MIN_WORDS:
                    found.append(text[:MAX_CHARS].strip() + "\n")
    return list(dict.fromkeys(found))  # drop repeats, keep the first


def clear(out: Path) -> None:
    if not out.exists():
        return
    strays = [p for p in out.rglob("*") if p.is_file() and p.suffix != ".txt"]
    if strays:
        sys.exit(f"{out}: holds {strays[0]}, not made by this script; not replacing it")
    shutil.rmtree(out)


def main(out: Path = OUT) -> None:
    texts = {package: docstrings(package) for package in PACKAGES}
    shared = Counter(t for found in texts.values() for t in set(found))
    clear(out)
    for package, found in texts.items():
        unique = [t for t in found if shared[t] == 1]
        chosen = random.Random(SEED).sample(unique, min(PER_CLASS, len(unique)))
        folder = out / package
        folder.mkdir(parents=True)
        for n, text in enumerate(chosen):
            (folder / f"{n:04d}.txt").write_text(text, encoding="utf-8")
        print(f"{package}: {len(chosen)} of {len(unique)} docstrings -> {folder}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)

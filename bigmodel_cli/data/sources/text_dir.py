"""`data.source: text_dir`: text classification from a folder of `.txt` files.

**Layout**: `data.path` holds one sub-folder per class; the class names are the
sub-folder names in sorted order (labels 0..K-1). Every `*.txt` file under a class
folder (its sub-folders too, suffix in any case) is one example. Hidden files and
folders (a leading `.`) are skipped. Files are read as UTF-8 (a leading BOM dropped);
bytes that are not UTF-8 are replaced by U+FFFD and a note names how many files had
them, rather than refusing a whole folder for one stray byte.

**Tokens** (`data.tokenize`): after the seeded stratified split, a `word` or
`character` vocabulary of at most `max_tokens` ids is learned from the training split
only, or taken from a trained run's `vocabulary.json`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bigmodel_cli.config import Config
from bigmodel_cli.data.raw import RawData

# Read here by inference.predict and its tests: how a text_dir run encodes new text.
from bigmodel_cli.data.tokenize import encode_texts as encode_texts
from bigmodel_cli.data.tokenize import learn_vocabulary as learn_vocabulary
from bigmodel_cli.errors import DataError

MIN_CLASSES = 2


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def _class_files(folder: Path) -> list[Path]:
    files = (p for p in folder.rglob("*") if p.suffix.lower() == ".txt" and p.is_file())
    return sorted(p for p in files if _visible(p, folder))


def read_text_dir(cfg: Config, base_dir: Path) -> RawData:
    """Every class folder's texts, class by class, files in sorted order."""
    root = Path(cfg.data.path).expanduser()
    root = root if root.is_absolute() else base_dir / root
    if not root.exists():
        raise DataError(f"data.path: {root}: no such folder")
    if not root.is_dir():
        raise DataError(
            f"data.path: {root}: not a folder; text_dir expects a folder with one sub-folder "
            "of .txt files per class"
        )
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < MIN_CLASSES:
        found = ", ".join(repr(p.name) for p in classes) or "none"
        raise DataError(
            f"data.path: {root}: text_dir needs one sub-folder per class, at least "
            f"{MIN_CLASSES}; found {len(classes)} ({found})"
        )
    texts, labels, counts, replaced = _read_classes(classes)
    notes = []
    if replaced:
        notes.append(
            f"data.path: {len(replaced)} file(s) are not valid UTF-8 (first: {replaced[0]}); "
            "their undecodable bytes were read as U+FFFD"
        )
    names = tuple(p.name for p in classes)
    per_class = ", ".join(f"{name}: {n}" for name, n in zip(names, counts, strict=True))
    description = f"text folder {root}: {len(texts)} texts in {len(names)} classes ({per_class})"
    x = np.empty(len(texts), dtype=object)
    x[:] = texts
    return RawData(
        x=x,
        y=np.asarray(labels, np.int64),
        task="classification",
        kind="text",
        description=description,
        num_classes=len(names),
        class_names=names,
        notes=notes,
    )


def _read_classes(classes: list[Path]) -> tuple[list[str], list[int], list[int], list[Path]]:
    """(texts, their labels, files per class, files whose bytes were not all UTF-8)."""
    texts: list[str] = []
    labels: list[int] = []
    counts: list[int] = []
    problems: list[str] = []
    replaced: list[Path] = []
    for label, folder in enumerate(classes):
        files = _class_files(folder)
        if not files:
            problems.append(
                f"data.path: {folder}: class folder {folder.name!r} has no .txt files; add "
                f"some or remove the folder"
            )
        for path in files:
            try:
                data = path.read_bytes()
            except OSError as err:
                problems.append(f"data.path: {path}: cannot read ({err.strerror})")
                continue
            try:
                text = data.decode("utf-8-sig")
            except UnicodeDecodeError:
                text = data.decode("utf-8-sig", errors="replace")
                replaced.append(path)
            texts.append(text)
            labels.append(label)
        counts.append(len(files))
    if problems:
        raise DataError(problems)
    return texts, labels, counts, replaced

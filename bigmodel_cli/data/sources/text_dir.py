"""`data.source: text_dir`: text classification from a folder of `.txt` files.

**Layout**: `data.path` holds one sub-folder per class; the class names are the
sub-folder names in sorted order (labels 0..K-1). Every `*.txt` file under a class
folder (its sub-folders too, suffix in any case) is one example. Hidden files and
folders (a leading `.`) are skipped. Files are read as UTF-8 (a leading BOM dropped);
bytes that are not UTF-8 are replaced by U+FFFD and a note names how many files had
them, rather than refusing a whole folder for one stray byte.

**Tokens**: after the seeded stratified split (`data.py`), a `word` or `character`
vocabulary (`text_tokens.WordVocabulary`) of at most `max_tokens` ids is learned from the
training split only, or taken from a trained run's `vocabulary.json`. Each text becomes
`sequence_length` ids: its first `sequence_length` tokens, padded with 0 in front.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bigmodel_cli.config import Config
from bigmodel_cli.data.sources import RawData
from bigmodel_cli.errors import DataError
from bigmodel_cli.spec import Arrays

DEFAULT_SEQUENCE_LENGTH = 200
DEFAULT_MAX_TOKENS = 20_000
MIN_CLASSES = 2


def sequence_length(cfg: Config) -> int:
    return cfg.data.sequence_length or DEFAULT_SEQUENCE_LENGTH


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
    y = np.asarray(labels, np.int64)
    return RawData(x, y, "classification", "text", description, len(names), names, notes=notes)


def learn_vocabulary(texts, cfg: Config):
    """The `word`/`character` vocabulary of `texts` (the training split's)."""
    from bigmodel_cli.data.text import WordVocabulary

    max_tokens = cfg.data.max_tokens or DEFAULT_MAX_TOKENS
    if max_tokens < 3:
        raise DataError(
            f"data.max_tokens: {max_tokens} leaves no id for a token (0 is padding, 1 out of "
            "vocabulary); use at least 3"
        )
    return WordVocabulary.learn(texts, cfg.data.tokenizer or "word", max_tokens)


def encode_texts(texts: list[str], vocabulary, cfg: Config) -> np.ndarray:
    """(len(texts), sequence_length) token ids, as training encoded its texts."""
    return vocabulary.encode_padded(texts, sequence_length(cfg))


def vectorize_splits(
    splits: dict[str, Arrays | None], cfg: Config, vocabulary: dict | None
) -> tuple[dict[str, Arrays | None], object]:
    """Splits of strings -> splits of token ids, with the vocabulary learned from the
    training split (or restored from `vocabulary`, a trained run's JSON)."""
    from bigmodel_cli.data.text import WordVocabulary, vocabulary_from_json

    if vocabulary is not None:
        words = vocabulary_from_json(vocabulary)
        if not isinstance(words, WordVocabulary):
            raise DataError(
                f"vocabulary.json: a {words.kind!r} vocabulary (text_corpus) cannot encode "
                "text_dir data, which needs a 'word' or 'character' one"
            )
    else:
        words = learn_vocabulary(splits["train"].x, cfg)
    encoded = {
        name: Arrays(encode_texts(part.x, words, cfg), part.y) if part is not None else None
        for name, part in splits.items()
    }
    return encoded, words

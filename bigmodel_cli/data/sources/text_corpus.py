"""`data.source: text_corpus`: text files for causal language modelling.

**Documents** are the files matched by `data.paths` (globs; `{stdlib}` is this Python's
standard-library folder), in sorted order, at most `max_bytes` in all. They are shuffled
with `seed` and dealt, whole, to the test, validation and training portions by
`test_split` and `validation_split` of the bytes, so no document is in two portions and
held-out text is text the model never saw.

Nothing here holds the text: the documents are dealt by their sizes and stay byte
ranges of their files (`Segment`s), read in chunks when they are hashed and tokenized
(data/token_cache.py), so a corpus of any size costs memory for its file list only.

**Tokens** (`data.tokenize`): the vocabulary (`byte` or `bpe`) is learned from the
training portion only, and each portion becomes packed next-token sequences.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bigmodel_cli.config import Config
from bigmodel_cli.data.defaults import TEXT_CORPUS_SEQUENCE_LENGTH
from bigmodel_cli.data.files import expand_paths
from bigmodel_cli.data.raw import DealtDocuments
from bigmodel_cli.errors import DataError

DEFAULT_SEQUENCE_LENGTH = TEXT_CORPUS_SEQUENCE_LENGTH  # the name inference.generate reads
READ_CHUNK = 4 << 20  # bytes read at a time: hashing and tokenizing stream in pieces


@dataclass(frozen=True)
class Segment:
    """Bytes [start, stop) of one file."""

    path: Path
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


Document = tuple[Segment, ...]  # what one end-of-document token follows


def document_size(document: Document) -> int:
    return sum(len(segment) for segment in document)


def read_chunks(document: Document) -> Iterator[bytes]:
    """The document's bytes, at most READ_CHUNK at a time."""
    chunk = READ_CHUNK
    for segment in document:
        try:
            with segment.path.open("rb") as handle:
                handle.seek(segment.start)
                left = len(segment)
                while left > 0:
                    data = handle.read(min(chunk, left))
                    if not data:
                        raise DataError(
                            f"data.paths: {segment.path} became shorter while it was read; "
                            "do not change the corpus while a run reads it"
                        )
                    left -= len(data)
                    yield data
        except OSError as err:
            raise DataError(f"data.paths: {segment.path}: cannot read ({err.strerror})") from None


def read_document(document: Document) -> bytes:
    return b"".join(read_chunks(document))


def list_documents(files: list[Path], max_bytes: int | None) -> list[Document]:
    """One document per non-empty file, in order, the last cut so that the corpus is at
    most `max_bytes`."""
    documents, total = [], 0
    for path in files:
        try:
            size = path.stat().st_size
        except OSError as err:
            raise DataError(f"data.paths: {path}: cannot read ({err.strerror})") from None
        if max_bytes is not None:
            size = min(size, max_bytes - total)
        if size > 0:
            documents.append((Segment(path, 0, size),))
            total += size
        if max_bytes is not None and total >= max_bytes:
            break
    return documents


def deal_documents(
    documents: list[Document], validation_split: float, test_split: float, seed: int
) -> dict[str, list[Document]]:
    """Shuffle whole documents and deal them to test, validation, then train by bytes.

    A held-out portion takes a document only while it stays within 1.5x its share, so
    one large document cannot swallow most of the corpus; when a requested portion gets
    nothing (or training does), the single stream is cut by bytes instead.
    """
    sizes = [document_size(d) for d in documents]
    order = np.random.default_rng(seed).permutation(len(documents))
    total = sum(sizes)
    want = {"test": test_split * total, "validation": validation_split * total}
    portions: dict[str, list[Document]] = {"test": [], "validation": [], "train": []}
    filled = {"test": 0, "validation": 0}
    for i in order:
        size = sizes[i]
        target = next(
            (
                k
                for k in ("test", "validation")
                if filled[k] < want[k] and filled[k] + size <= 1.5 * want[k]
            ),
            "train",
        )
        if target != "train":
            filled[target] += size
        portions[target].append(documents[i])
    starved = [k for k in ("test", "validation") if want[k] > 0 and not portions[k]]
    # Documents too large to share out: cut the single stream instead.
    if len(documents) == 1 or not portions["train"] or starved:
        n_test, n_val = int(test_split * total), int(validation_split * total)
        cuts = {"test": (0, n_test), "validation": (n_test, n_test + n_val),
                "train": (n_test + n_val, total)}  # fmt: skip
        portions = {
            name: [_stream_range(documents, start, stop)] if stop > start else []
            for name, (start, stop) in cuts.items()
        }
    return portions


def _stream_range(documents: list[Document], start: int, stop: int) -> Document:
    """Bytes [start, stop) of the documents joined, in order, as one document."""
    pieces, offset = [], 0
    for document in documents:
        for segment in document:
            lo, hi = max(start, offset), min(stop, offset + len(segment))
            if lo < hi:
                base = segment.start - offset
                pieces.append(Segment(segment.path, base + lo, base + hi))
            offset += len(segment)
    return tuple(pieces)


def read_text_corpus(cfg: Config, base_dir: Path) -> DealtDocuments:
    """The documents `data.paths` matches, dealt whole to the splits."""
    data = cfg.data
    files = expand_paths(data.paths or [], base_dir)
    documents = list_documents(files, data.max_bytes)
    total = sum(map(document_size, documents))
    if total == 0:
        raise DataError(f"data.paths: the {len(files)} matched file(s) are empty")
    return DealtDocuments(
        portions=deal_documents(documents, data.validation_split, data.test_split, cfg.seed),
        files=len(files),
        digest=corpus_digest(documents),
        description=f"text corpus: {len(files)} file(s), {total:,} bytes",
    )


def corpus_digest(documents: list[Document]) -> str:
    """SHA-256 of the documents read, in order: the same digest means the same splits."""
    digest = hashlib.sha256()
    for document in documents:
        digest.update(document_size(document).to_bytes(8, "little"))
        for chunk in read_chunks(document):
            digest.update(chunk)
    return digest.hexdigest()

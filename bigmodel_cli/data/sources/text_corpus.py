"""`data.source: text_corpus`: text files for causal language modelling.

**Documents** are the files matched by `data.paths` (globs; `{stdlib}` is this Python's
standard-library folder), read as bytes, in sorted order, at most `max_bytes` in all.
They are shuffled with `seed` and dealt, whole, to the test, validation and training
portions by `test_split` and `validation_split` of the bytes, so no document is in two
portions and held-out text is text the model never saw.

**Tokens** (`data.tokenize`): the vocabulary (`byte` or `bpe`) is learned from the
training portion only, and each portion becomes packed next-token sequences.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from bigmodel_cli.config import Config
from bigmodel_cli.data.defaults import TEXT_CORPUS_SEQUENCE_LENGTH
from bigmodel_cli.data.files import expand_paths
from bigmodel_cli.data.raw import DealtDocuments
from bigmodel_cli.errors import DataError

DEFAULT_SEQUENCE_LENGTH = TEXT_CORPUS_SEQUENCE_LENGTH  # the name inference.generate reads


def read_documents(files: list[Path], max_bytes: int | None) -> list[bytes]:
    documents, total = [], 0
    for path in files:
        try:
            with path.open("rb") as handle:  # never more than max_bytes in memory
                data = handle.read() if max_bytes is None else handle.read(max_bytes - total)
        except OSError as err:
            raise DataError(f"data.paths: {path}: cannot read ({err.strerror})") from None
        if data:
            documents.append(data)
            total += len(data)
        if max_bytes is not None and total >= max_bytes:
            break
    return documents


def deal_documents(
    documents: list[bytes], validation_split: float, test_split: float, seed: int
) -> dict[str, list[bytes]]:
    """Shuffle whole documents and deal them to test, validation, then train by bytes.

    A held-out portion takes a document only while it stays within 1.5x its share, so
    one large document cannot swallow most of the corpus; when a requested portion gets
    nothing (or training does), the single stream is cut by bytes instead.
    """
    order = np.random.default_rng(seed).permutation(len(documents))
    total = sum(len(d) for d in documents)
    want = {"test": test_split * total, "validation": validation_split * total}
    portions: dict[str, list[bytes]] = {"test": [], "validation": [], "train": []}
    filled = {"test": 0, "validation": 0}
    for i in order:
        doc = documents[i]
        target = next(
            (
                k
                for k in ("test", "validation")
                if filled[k] < want[k] and filled[k] + len(doc) <= 1.5 * want[k]
            ),
            "train",
        )
        if target != "train":
            filled[target] += len(doc)
        portions[target].append(doc)
    starved = [k for k in ("test", "validation") if want[k] > 0 and not portions[k]]
    # Documents too large to share out: cut the single stream instead.
    if len(documents) == 1 or not portions["train"] or starved:
        stream = b"".join(documents)
        n_test, n_val = int(test_split * len(stream)), int(validation_split * len(stream))
        portions = {
            "test": [stream[:n_test]] if n_test else [],
            "validation": [stream[n_test : n_test + n_val]] if n_val else [],
            "train": [stream[n_test + n_val :]],
        }
    return portions


def read_text_corpus(cfg: Config, base_dir: Path) -> DealtDocuments:
    """The documents `data.paths` matches, dealt whole to the splits."""
    data = cfg.data
    files = expand_paths(data.paths or [], base_dir)
    documents = read_documents(files, data.max_bytes)
    total = sum(len(d) for d in documents)
    if total == 0:
        raise DataError(f"data.paths: the {len(files)} matched file(s) are empty")
    return DealtDocuments(
        portions=deal_documents(documents, data.validation_split, data.test_split, cfg.seed),
        files=len(files),
        digest=corpus_digest(documents),
        description=f"text corpus: {len(files)} file(s), {total:,} bytes",
    )


def corpus_digest(documents: list[bytes]) -> str:
    """SHA-256 of the documents read, in order: the same digest means the same splits."""
    digest = hashlib.sha256()
    for doc in documents:
        digest.update(len(doc).to_bytes(8, "little"))
        digest.update(doc)
    return digest.hexdigest()

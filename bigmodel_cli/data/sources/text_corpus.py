"""`data.source: text_corpus`: text files for causal language modelling.

**Documents** are the files matched by `data.paths` (globs; `{stdlib}` is this Python's
standard-library folder), read as bytes, in sorted order, at most `max_bytes` in all.
They are shuffled with `seed` and dealt, whole, to the test, validation and training
portions by `test_split` and `validation_split` of the bytes, so no document is in two
portions and held-out text is text the model never saw.

**Tokens**: the vocabulary (`byte` or `bpe`) is learned from the training portion only.
Each portion is one stream, documents joined by an end-of-document token, cut into
sequences of `sequence_length + 1` tokens: the inputs are the first `sequence_length`,
the labels the same shifted by one. Sequences are packed across document boundaries (no
padding); a trailing piece shorter than one sequence is dropped.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from bigmodel_cli.config import Config
from bigmodel_cli.data.files import expand_paths
from bigmodel_cli.errors import DataError

DEFAULT_SEQUENCE_LENGTH = 256


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


def pack(ids: np.ndarray, sequence_length: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, next-token labels), each (n, sequence_length), from one token stream."""
    n = (len(ids) - 1) // sequence_length
    if n < 1:
        return np.zeros((0, sequence_length), np.int64), np.zeros((0, sequence_length), np.int64)
    x = ids[: n * sequence_length].reshape(n, sequence_length)
    y = ids[1 : n * sequence_length + 1].reshape(n, sequence_length)
    return x, y


def learn_vocabulary(cfg: Config, train_documents: list[bytes]):
    from bigmodel_cli.data import text as text_tokens

    if cfg.data.tokenizer == "bpe":
        return text_tokens.learn_bpe(train_documents, cfg.data.vocab_size or 1024)
    return text_tokens.ByteVocabulary.learn(b"".join(train_documents))


def encode_stream(vocabulary, documents: list[bytes]) -> np.ndarray:
    """One stream of ids: each document followed by the end-of-document token."""
    eod = np.asarray([vocabulary.end_of_document], np.int64)
    parts = []
    for doc in documents:
        parts += [vocabulary.encode_bytes(doc, strict=False), eod]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def read_text_corpus(cfg: Config, base_dir: Path, vocabulary=None):
    """Packed (x, y) token sequences per portion, the vocabulary and bytes per token.

    `vocabulary` (a trained run's) replaces learning one from the training portion.
    """
    data = cfg.data
    length = data.sequence_length or DEFAULT_SEQUENCE_LENGTH
    files = expand_paths(data.paths or [], base_dir)
    documents = read_documents(files, data.max_bytes)
    total = sum(len(d) for d in documents)
    if total == 0:
        raise DataError(f"data.paths: the {len(files)} matched file(s) are empty")
    portions = deal_documents(documents, data.validation_split, data.test_split, cfg.seed)
    vocabulary = vocabulary or learn_vocabulary(cfg, portions["train"])
    splits, problems = {}, []
    for name, docs in portions.items():
        ids = encode_stream(vocabulary, docs)
        x, y = pack(ids, length)
        if docs and len(x) == 0:
            problems.append(
                f"data: the {name} portion of the corpus has {len(ids)} tokens, fewer than "
                f"one sequence of data.sequence_length + 1 = {length + 1}; use more text, a "
                f"larger {name}_split, or a shorter sequence_length"
                if name != "train"
                else f"data: the corpus ({total:,} bytes in {len(files)} file(s)) gives "
                f"{len(ids)} training tokens, fewer than one sequence of "
                f"data.sequence_length + 1 = {length + 1}; use more text or a shorter "
                f"sequence_length"
            )
        splits[name] = (x, y, ids)
    if problems:
        raise DataError(problems)
    measure = splits["validation"][2] if len(splits["validation"][0]) else splits["train"][2]
    bytes_per_token = vocabulary.bytes_per_token(measure)
    description = (
        f"text corpus: {len(files)} file(s), {total:,} bytes, {vocabulary.kind} tokens "
        f"(vocabulary {vocabulary.size}), sequences of {length}"
    )
    parts = {k: v[:2] for k, v in splits.items()}
    return parts, vocabulary, bytes_per_token, description, corpus_digest(documents)


def corpus_digest(documents: list[bytes]) -> str:
    """SHA-256 of the documents read, in order: the same digest means the same splits."""
    digest = hashlib.sha256()
    for doc in documents:
        digest.update(len(doc).to_bytes(8, "little"))
        digest.update(doc)
    return digest.hexdigest()

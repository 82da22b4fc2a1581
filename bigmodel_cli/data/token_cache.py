"""Token files of a text corpus, made once and reused (text_corpus).

Each portion of the dealt corpus (train, validation, test) becomes one file of token
ids, as nanoGPT's `train.bin`: uint16 when the vocabulary fits (uint32 beyond 65,536
tokens), each document's ids followed by the end-of-document id. Training reads
sequence windows from them (`spec.TokenWindows`), so memory does not grow with the
corpus. The files are made streaming: documents are read in chunks, byte ids come from
one table lookup per chunk, and the vocabulary is learned from the training portion
(byte counts over all of it; BPE merges from its first `BPE_LEARN_MAX_BYTES`).

They are kept under `<cache>/tokens/<key>/` (bigmodel_cli/cache.py), the key a digest
of everything the ids depend on: the corpus's SHA-256, the splits and seed that dealt
it, the tokenizer settings, and a vocabulary given by a trained run that is not the one
the files were made with (`evaluate --data` of other text). A second run, `--resume`
and `evaluate` of the same corpus read them instead of tokenizing again. A folder
appears whole (made under a temporary name, then renamed), so a run killed while
tokenizing leaves no half-made files to be read later.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bigmodel_cli.cache import cache_root
from bigmodel_cli.config import Config
from bigmodel_cli.data.raw import DealtDocuments
from bigmodel_cli.data.sources.text_corpus import (
    Document,
    document_size,
    read_chunks,
    read_document,
)
from bigmodel_cli.data.text import ByteVocabulary, learn_bpe, vocabulary_from_json
from bigmodel_cli.data.text.bpe import BPE_LEARN_MAX_BYTES
from bigmodel_cli.errors import DataError

FORMAT = 1  # bump when the files' layout or the tokenization changes
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class TokenFile:
    path: Path
    tokens: int
    text_bytes: int  # bytes of text the tokens stand for (end-of-document: none)


@dataclass(frozen=True)
class CorpusTokens:
    vocabulary: object
    dtype: str
    files: dict[str, TokenFile]
    folder: Path
    reused: bool  # read from the cache rather than made now


def corpus_tokens(dealt: DealtDocuments, cfg: Config, given) -> CorpusTokens:
    """The token files of `dealt`, from the cache or made now (see the module docstring).
    `given`: a trained run's vocabulary to encode with, instead of learning one."""
    if given is not None:
        # A trained run's vocabulary (resume, evaluate): the files its training made
        # hold the same ids when that vocabulary is the one they were made with.
        found = _read(cache_root() / "tokens" / cache_key(dealt, cfg, None))
        if found is not None and found.vocabulary.to_json() == given.to_json():
            return found
    key = cache_key(dealt, cfg, given)
    folder = cache_root() / "tokens" / key
    found = _read(folder)
    if found is not None:
        return found
    root = folder.parent
    try:
        root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    except OSError as err:
        raise DataError(
            f"data: cannot write the corpus's token files under {root} ({err.strerror}); "
            "set BIGMODEL_CACHE_DIR to a writable folder"
        ) from None
    try:
        _make(work, dealt, cfg, given)
        if folder.exists():  # not whole (cut short, edited): set aside, then replaced
            stale = Path(tempfile.mkdtemp(prefix=f".{key}.stale.", dir=root))
            folder.rename(stale / "tokens")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            work.rename(folder)
        except OSError:  # another run made the same files first: theirs are as good
            if _read(folder) is None:
                raise
    except OSError as err:
        raise DataError(
            f"data: cannot write the corpus's token files under {root} ({err.strerror})"
        ) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    made = _read(folder)
    return CorpusTokens(made.vocabulary, made.dtype, made.files, folder, reused=False)


def cache_key(dealt: DealtDocuments, cfg: Config, given) -> str:
    data = cfg.data
    settings = {
        "format": FORMAT,
        "corpus_sha256": dealt.digest,
        "validation_split": data.validation_split,
        "test_split": data.test_split,
        "seed": cfg.seed,
        "tokenizer": data.tokenizer or "byte",
        "vocab_size": data.vocab_size if data.tokenizer == "bpe" else None,
        "vocabulary": given.to_json() if given is not None else None,
    }
    text = json.dumps(settings, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _read(folder: Path) -> CorpusTokens | None:
    """The cached files, or None when they are not there (or not whole)."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        itemsize = np.dtype(meta["dtype"]).itemsize
        files = {}
        for name in SPLITS:
            entry = meta["splits"][name]
            path = folder / f"{name}.bin"
            if path.stat().st_size != entry["tokens"] * itemsize:
                return None
            files[name] = TokenFile(path, entry["tokens"], entry["text_bytes"])
        vocabulary = vocabulary_from_json(meta["vocabulary"])
    except (OSError, ValueError, KeyError, TypeError, DataError):
        return None
    return CorpusTokens(vocabulary, meta["dtype"], files, folder, reused=True)


def _make(work: Path, dealt: DealtDocuments, cfg: Config, given) -> None:
    vocabulary = given or learn_corpus_vocabulary(cfg, dealt.portions["train"])
    dtype = np.uint16 if vocabulary.size <= 1 << 16 else np.uint32
    splits = {}
    for name in SPLITS:
        tokens = text_bytes = 0
        with open(work / f"{name}.bin", "wb") as out:
            for ids, stands_for in _encode(vocabulary, dealt.portions[name], dtype):
                out.write(ids.tobytes())
                tokens += len(ids)
                text_bytes += stands_for
            out.flush()
            os.fsync(out.fileno())
        splits[name] = {"tokens": tokens, "text_bytes": text_bytes}
    meta = {"dtype": np.dtype(dtype).name, "vocabulary": vocabulary.to_json(), "splits": splits}
    (work / "meta.json").write_text(json.dumps(meta))


def _encode(vocabulary, documents: list[Document], dtype):
    """(ids, bytes of text they stand for), in order: each document's ids, then the
    end-of-document id (which stands for no text)."""
    end = np.asarray([vocabulary.end_of_document], dtype), 0
    if isinstance(vocabulary, ByteVocabulary):
        # One lookup per chunk; bytes training never saw become the unknown id.
        table = np.full(256, vocabulary.unknown, dtype)
        table[list(vocabulary.byte_values)] = np.arange(len(vocabulary.byte_values))
        for document in documents:
            for chunk in read_chunks(document):
                yield table[np.frombuffer(chunk, np.uint8)], len(chunk)
            yield end
        return
    token_bytes = np.asarray(vocabulary.token_bytes(), np.int64)
    for document in documents:  # BPE merges across chunk boundaries: a document at once
        ids = vocabulary.encode_bytes(read_document(document), strict=False)
        yield ids.astype(dtype), int(token_bytes[ids].sum())
        yield end


def learn_corpus_vocabulary(cfg: Config, train: list[Document]):
    """The training portion's vocabulary: every byte value it holds, and for BPE the
    merges of its first BPE_LEARN_MAX_BYTES."""
    seen = np.zeros(256, np.int64)
    for document in train:
        for chunk in read_chunks(document):
            seen += np.bincount(np.frombuffer(chunk, np.uint8), minlength=256)
    byte_values = tuple(int(v) for v in np.flatnonzero(seen))
    if cfg.data.tokenizer != "bpe":
        return ByteVocabulary(byte_values)
    sample, taken = [], 0
    for document in train:
        if taken >= BPE_LEARN_MAX_BYTES:
            break
        text = b"".join(_prefix(document, BPE_LEARN_MAX_BYTES - taken))
        sample.append(text)
        taken += len(text)
    return learn_bpe(sample, cfg.data.vocab_size or 1024, byte_values=byte_values)


def _prefix(document: Document, limit: int):
    for chunk in read_chunks(document):
        if limit <= 0:
            return
        yield chunk[:limit]
        limit -= len(chunk)


def portion_bytes(documents: list[Document]) -> int:
    return sum(map(document_size, documents))

"""Vocabularies that turn text into token ids and back. NumPy and the standard library
only: no TensorFlow, so a vocabulary loads as fast as a config.

A vocabulary is learned from the *training* split only and saved in the run directory
(`vocabulary.json`), so `evaluate`, `predict` and `generate` encode raw text exactly as
training did.

- `byte` (text_corpus): one token per byte value seen in the training text, an
  end-of-document token and an unknown-byte token. Held-out text may contain bytes
  training never saw (they become the unknown token, and count against the model); a
  prompt may not: encoding it strictly is an error that names the bytes.
- `bpe` (text_corpus): byte-level byte-pair encoding. The byte tokens, end-of-document and
  unknown as for `byte`, then one token per learned merge of two tokens into one. The
  text is first cut into chunks by `CHUNK_PATTERN` (GPT-2's pre-tokenizer, on bytes), so
  no token spans a word and the space or punctuation beside it. Merges are learned
  greedily from the first `BPE_LEARN_MAX_BYTES` of the training documents: each step
  merges the most frequent adjacent pair (ties: the pair of smaller ids) until the
  vocabulary has `vocab_size` tokens or no pair occurs twice.
- `word` and `character` (text_dir): the text is lowercased and split into words
  (`WORD_PATTERN`: runs of letters/digits/underscore, or one punctuation mark each) or
  into characters (whitespace runs become one space). Id 0 is padding, 1 a token not in
  the vocabulary, then the most frequent training tokens (ties in alphabetical order), up
  to `max_tokens` ids in all.
"""

from __future__ import annotations

import heapq
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise

import numpy as np

from bigmodel_cli.errors import DataError

WORD_PATTERN = r"\w+|[^\w\s]"
# GPT-2's split, on bytes: English contractions, letters (ASCII, `_`, and every byte
# >= 0x80, i.e. the UTF-8 of non-ASCII letters), digits, other symbols, each with at most
# one leading space; a whitespace run leaves its last space to the word after it.
CHUNK_PATTERN = (
    rb"'(?:s|t|re|ve|m|ll|d)| ?[A-Za-z_\x80-\xff]+| ?[0-9]+| ?[^\sA-Za-z0-9_\x80-\xff]+"
    rb"|\s+(?!\S)|\s+"
)
BPE_LEARN_MAX_BYTES = 8_000_000  # ~0.6 s a MB for 1024 tokens; pair counts settle before
_CHUNKS = re.compile(CHUNK_PATTERN)
_CHUNK_CACHE_MAX = 1 << 20  # distinct chunks remembered by one BPE vocabulary


def _unseen_bytes_error(what: str, unseen: np.ndarray) -> DataError:
    shown = ", ".join(f"0x{b:02x} ({bytes([b])!r})" for b in unseen[:8])
    more = f" and {len(unseen) - 8} more" if len(unseen) > 8 else ""
    return DataError(
        f"{what}: bytes {shown}{more} never occur in the training text, so the "
        f"model has no token for them"
    )


def _byte_table(byte_values: tuple[int, ...]) -> np.ndarray:
    table = np.full(256, -1, np.int64)
    table[list(byte_values)] = np.arange(len(byte_values))
    return table


def _check_strict(table: np.ndarray, data: bytes, what: str) -> None:
    raw = np.frombuffer(data, np.uint8)
    unseen = np.unique(raw[table[raw] < 0])
    if len(unseen):
        raise _unseen_bytes_error(what, unseen)


def _byte_values(documents) -> tuple[int, ...]:
    seen = np.zeros(256, np.int64)
    for doc in documents:
        seen += np.bincount(np.frombuffer(bytes(doc), np.uint8), minlength=256)
    return tuple(int(v) for v in np.flatnonzero(seen))


# === byte ====================================================================


class _ByteAlphabet:
    """The ids byte-level vocabularies share: 0..k-1 for the `byte_values` seen in
    training, k for end-of-document, k+1 for a byte training never saw."""

    byte_values: tuple[int, ...]

    @property
    def size(self) -> int:
        return len(self.byte_values) + 2

    @property
    def end_of_document(self) -> int:
        return len(self.byte_values)

    @property
    def unknown(self) -> int:
        return len(self.byte_values) + 1

    @cached_property
    def _table(self) -> np.ndarray:
        """Byte value -> id, -1 for bytes outside the vocabulary."""
        return _byte_table(self.byte_values)


@dataclass(frozen=True)
class ByteVocabulary(_ByteAlphabet):
    """Ids 0..k-1 stand for the sorted byte values seen in training; id k ends a document
    and id k+1 is a byte training never saw."""

    byte_values: tuple[int, ...]
    kind: str = "byte"

    @classmethod
    def learn(cls, data: bytes | np.ndarray) -> ByteVocabulary:
        values = np.unique(np.frombuffer(bytes(data), np.uint8) if isinstance(data, bytes)
                           else np.asarray(data, np.uint8))  # fmt: skip
        return cls(tuple(int(v) for v in values))

    def encode_bytes(self, data: bytes, what: str = "text", strict: bool = True) -> np.ndarray:
        """Token ids of `data`. Bytes outside the vocabulary are an error naming them, or
        with `strict=False` the unknown token."""
        raw = np.frombuffer(data, np.uint8)
        ids = self._table[raw]
        if not strict:
            return np.where(ids < 0, self.unknown, ids)
        if np.any(ids < 0):
            raise _unseen_bytes_error(what, np.unique(raw[ids < 0]))
        return ids

    def encode(self, text: str, what: str = "text") -> np.ndarray:
        return self.encode_bytes(text.encode("utf-8"), what)

    def decode_bytes(self, ids) -> bytes:
        """Bytes of `ids`; end-of-document becomes a newline, an unknown byte `?`."""
        values = np.asarray([*self.byte_values, ord("\n"), ord("?")], np.uint8)
        ids = np.asarray(ids, np.int64)
        out = values[ids]
        return out.tobytes()

    def token_bytes(self) -> list[int]:
        """Bytes of text each id stands for: 1, but 0 for end-of-document."""
        return [1] * len(self.byte_values) + [0, 1]

    def bytes_per_token(self, ids: np.ndarray) -> float:
        """Bytes of text per token in `ids` (end-of-document is 0 bytes, unknown 1)."""
        ids = np.asarray(ids)
        return float(np.count_nonzero(ids != self.end_of_document)) / max(ids.size, 1)

    def to_json(self) -> dict:
        return {"kind": self.kind, "byte_values": list(self.byte_values)}


# === bpe =====================================================================


@dataclass(frozen=True)
class BPEVocabulary(_ByteAlphabet):
    """Ids 0..k-1 are the sorted byte values seen in training, k ends a document, k+1 is
    a byte training never saw, and k+2+i is the token made by `merges[i]` (a pair of
    earlier ids). Same interface as `ByteVocabulary`."""

    byte_values: tuple[int, ...]
    merges: tuple[tuple[int, int], ...]
    kind: str = "bpe"

    @property
    def size(self) -> int:
        return super().size + len(self.merges)

    @cached_property
    def _ranks(self) -> dict[tuple[int, int], int]:
        first = len(self.byte_values) + 2
        return {pair: first + i for i, pair in enumerate(self.merges)}

    @cached_property
    def _cache(self) -> dict[bytes, tuple[int, ...]]:
        return {}

    @cached_property
    def _pieces(self) -> list[bytes]:
        pieces = [bytes([v]) for v in self.byte_values] + [b"", b"?"]
        for a, b in self.merges:
            pieces.append(pieces[a] + pieces[b])
        return pieces

    def _encode_chunk(self, chunk: bytes) -> tuple[int, ...]:
        """Apply the merges in the order they were learned (lowest id first), as in
        training: each round merges every occurrence, left to right, of the pair of
        adjacent tokens that was learned first."""
        table, unknown, ranks = self._table, self.unknown, self._ranks
        ids = [int(table[b]) if table[b] >= 0 else unknown for b in chunk]
        while len(ids) > 1:
            new = min(ranks.get(pair, 1 << 62) for pair in pairwise(ids))
            if new == 1 << 62:
                break
            ids = _merge_pair(ids, self.merges[new - len(self.byte_values) - 2], new)
        return tuple(ids)

    def encode_bytes(self, data: bytes, what: str = "text", strict: bool = True) -> np.ndarray:
        """Token ids of `data`. Bytes outside the vocabulary are an error naming them, or
        with `strict=False` the unknown token (which no merge contains)."""
        if strict:
            _check_strict(self._table, data, what)
        cache, out = self._cache, []
        if len(cache) > _CHUNK_CACHE_MAX:
            cache.clear()
        for chunk in _CHUNKS.findall(data):
            ids = cache.get(chunk)
            if ids is None:
                ids = cache[chunk] = self._encode_chunk(chunk)
            out += ids
        return np.asarray(out, np.int64)

    def encode(self, text: str, what: str = "text") -> np.ndarray:
        return self.encode_bytes(text.encode("utf-8"), what)

    def decode_bytes(self, ids) -> bytes:
        """Bytes of `ids`; end-of-document becomes a newline, an unknown byte `?`."""
        pieces = self._pieces
        return b"".join(b"\n" if i == self.end_of_document else pieces[i] for i in map(int, ids))

    def token_bytes(self) -> list[int]:
        """Bytes of text each id stands for (end-of-document 0, unknown 1)."""
        return [len(piece) for piece in self._pieces]

    def bytes_per_token(self, ids: np.ndarray) -> float:
        """Bytes of text per token in `ids` (end-of-document is 0 bytes, unknown 1)."""
        lengths = np.asarray(self.token_bytes(), np.int64)
        ids = np.asarray(ids, np.int64)
        return float(lengths[ids].sum()) / max(ids.size, 1)

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "byte_values": list(self.byte_values),
            "merges": [list(pair) for pair in self.merges],
            "chunk_pattern": CHUNK_PATTERN.decode("latin-1"),
        }


def _merge_pair(ids, pair: tuple[int, int], new: int) -> list[int]:
    """`ids` with every non-overlapping occurrence of `pair`, left to right, made `new`."""
    a, b = pair
    out, i, n = [], 0, len(ids)
    while i < n:
        if i + 1 < n and ids[i] == a and ids[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def learn_bpe(
    documents: list[bytes], vocab_size: int, max_bytes: int = BPE_LEARN_MAX_BYTES
) -> BPEVocabulary:
    """A BPE vocabulary of at most `vocab_size` tokens learned from `documents` (their
    first `max_bytes`; the byte alphabet comes from all of them). See the module docstring.

    Each distinct chunk is counted once with its frequency; a merge then revisits only the
    chunks that hold the merged pair, and a heap with lazy deletion finds the next pair.
    """
    byte_values = _byte_values(documents)
    first = len(byte_values) + 2
    if vocab_size < first:
        raise DataError(
            f"data.vocab_size: {vocab_size} is smaller than the training text's "
            f"{len(byte_values)} distinct bytes plus end-of-document and unknown ({first}); "
            f"use vocab_size >= {first}"
        )
    counts: Counter[bytes] = Counter()
    taken = 0
    for doc in documents:
        part = doc[: max_bytes - taken]
        counts.update(_CHUNKS.findall(part))
        taken += len(part)
        if taken >= max_bytes:
            break
    table = _byte_table(byte_values)
    words = [[int(table[b]) for b in chunk] for chunk in counts]
    freq = list(counts.values())
    pair_counts: defaultdict[tuple[int, int], int] = defaultdict(int)
    where: defaultdict[tuple[int, int], set[int]] = defaultdict(set)
    for w, word in enumerate(words):
        for pair in pairwise(word):
            pair_counts[pair] += freq[w]
            where[pair].add(w)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)
    merges: list[tuple[int, int]] = []
    while heap and first + len(merges) < vocab_size:
        negative, pair = heapq.heappop(heap)
        if pair_counts.get(pair) != -negative:
            continue  # a stale entry: the pair's count changed since it was pushed
        if -negative < 2:
            break  # nothing left that a merge would shorten more than once
        new = first + len(merges)
        merges.append(pair)
        changed = set()
        for w in where.pop(pair):
            old = words[w]
            merged = _merge_pair(old, pair, new)
            if len(merged) == len(old):
                continue
            for p in pairwise(old):
                pair_counts[p] -= freq[w]
                changed.add(p)
            for p in pairwise(merged):
                pair_counts[p] += freq[w]
                where[p].add(w)
                changed.add(p)
            words[w] = merged
        for p in changed:
            count = pair_counts[p]
            if count > 0:
                heapq.heappush(heap, (-count, p))
            else:
                del pair_counts[p]
                where.pop(p, None)
    return BPEVocabulary(byte_values, tuple(merges))


# === word and character ======================================================


def split_text(text: str, kind: str) -> list[str]:
    """The tokens of `text` for a `word` or `character` vocabulary (lowercased)."""
    text = text.lower()
    if kind == "word":
        return re.findall(WORD_PATTERN, text)
    return list(" ".join(text.split()))


@dataclass(frozen=True)
class WordVocabulary:
    """Id 0 pads, id 1 stands for any token not in the vocabulary, id 2+i is `tokens[i]`
    (most frequent in training first). `kind` is `word` or `character`."""

    tokens: tuple[str, ...]
    kind: str = "word"
    padding = 0
    out_of_vocabulary = 1

    @classmethod
    def learn(cls, texts, kind: str, max_tokens: int) -> WordVocabulary:
        """The `max_tokens - 2` most frequent tokens of `texts`."""
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(split_text(text, kind))
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return cls(tuple(token for token, _ in ranked[: max(max_tokens - 2, 0)]), kind)

    @property
    def size(self) -> int:
        return len(self.tokens) + 2

    @cached_property
    def _index(self) -> dict[str, int]:
        return {token: i for i, token in enumerate(self.tokens, start=2)}

    def encode(self, text: str) -> np.ndarray:
        """Ids of every token of `text` (no padding, no truncation)."""
        index, oov = self._index, self.out_of_vocabulary
        return np.asarray([index.get(t, oov) for t in split_text(text, self.kind)], np.int64)

    def encode_padded(self, texts, length: int) -> np.ndarray:
        """(len(texts), length) ids: each text's first `length` tokens, padded with 0 in
        front, so a recurrent layer's last step is the text's last token (the models do
        not mask padding)."""
        out = np.zeros((len(texts), length), np.int64)
        for row, text in enumerate(texts):
            ids = self.encode(text)[:length]
            if len(ids):
                out[row, length - len(ids) :] = ids
        return out

    def to_json(self) -> dict:
        data = {"kind": self.kind, "tokens": list(self.tokens)}
        if self.kind == "word":
            data["word_pattern"] = WORD_PATTERN
        return data


# === JSON ====================================================================


def vocabulary_from_json(data: dict):
    """The vocabulary saved by `to_json`."""
    kind = data.get("kind")
    if kind == "byte":
        return ByteVocabulary(tuple(int(v) for v in data["byte_values"]))
    if kind == "bpe":
        pattern = CHUNK_PATTERN.decode("latin-1")
        if data.get("chunk_pattern", pattern) != pattern:
            raise DataError(
                "vocabulary.json: this bpe vocabulary was learned with another "
                "pre-tokenizer than this version's; retrain to use it"
            )
        merges = tuple((int(a), int(b)) for a, b in data["merges"])
        return BPEVocabulary(tuple(int(v) for v in data["byte_values"]), merges)
    if kind in ("word", "character"):
        if kind == "word" and data.get("word_pattern", WORD_PATTERN) != WORD_PATTERN:
            raise DataError(
                f"vocabulary.json: words were split with {data['word_pattern']!r}, this "
                f"version splits with {WORD_PATTERN!r}; retrain to use it"
            )
        return WordVocabulary(tuple(str(t) for t in data["tokens"]), kind)
    raise DataError(f"vocabulary.json: unknown vocabulary kind {kind!r}")

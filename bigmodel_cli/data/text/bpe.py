"""The `bpe` vocabulary (text_corpus): byte-level byte-pair encoding.

The byte tokens, end-of-document and unknown as for `byte`, then one token per learned
merge of two tokens into one. The text is first cut into chunks by `CHUNK_PATTERN`
(GPT-2's pre-tokenizer, on bytes), so no token spans a word and the space or punctuation
beside it. Merges are learned greedily from the first `BPE_LEARN_MAX_BYTES` of the
training documents: each step merges the most frequent adjacent pair (ties: the pair of
smaller ids) until the vocabulary has `vocab_size` tokens or no pair occurs twice.
"""

from __future__ import annotations

import heapq
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise

import numpy as np

from bigmodel_cli.data.text.base import ByteAlphabet, byte_table, byte_values_of, check_strict
from bigmodel_cli.errors import DataError

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


@dataclass(frozen=True)
class BPEVocabulary(ByteAlphabet):
    """Ids 0..k-1 are the sorted byte values seen in training, k ends a document, k+1 is
    a byte training never saw, and k+2+i is the token made by `merges[i]` (a pair of
    earlier ids). Same interface as `ByteVocabulary`."""

    kinds = ("bpe",)

    byte_values: tuple[int, ...]
    merges: tuple[tuple[int, int], ...]
    kind: str = "bpe"

    @classmethod
    def from_json(cls, data: dict) -> BPEVocabulary:
        pattern = CHUNK_PATTERN.decode("latin-1")
        if data.get("chunk_pattern", pattern) != pattern:
            raise DataError(
                "vocabulary.json: this bpe vocabulary was learned with another "
                "pre-tokenizer than this version's; retrain to use it"
            )
        merges = tuple((int(a), int(b)) for a, b in data["merges"])
        return cls(tuple(int(v) for v in data["byte_values"]), merges)

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
            check_strict(self._table, data, what)
        cache, out = self._cache, []
        if len(cache) > _CHUNK_CACHE_MAX:
            cache.clear()
        for chunk in _CHUNKS.findall(data):
            ids = cache.get(chunk)
            if ids is None:
                ids = cache[chunk] = self._encode_chunk(chunk)
            out += ids
        return np.asarray(out, np.int64)

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
    documents: list[bytes],
    vocab_size: int,
    max_bytes: int = BPE_LEARN_MAX_BYTES,
    byte_values: tuple[int, ...] | None = None,
) -> BPEVocabulary:
    """A BPE vocabulary of at most `vocab_size` tokens learned from `documents` (their
    first `max_bytes`; the byte alphabet comes from all of them, or is `byte_values`
    when the caller counted it over more text than it passes). See the module docstring.

    Each distinct chunk is counted once with its frequency; a merge then revisits only the
    chunks that hold the merged pair, and a heap with lazy deletion finds the next pair.
    """
    if byte_values is None:
        byte_values = byte_values_of(documents)
    first = len(byte_values) + 2
    if vocab_size < first:
        raise DataError(
            f"data.vocab_size: {vocab_size} is smaller than the training text's "
            f"{len(byte_values)} distinct bytes plus end-of-document and unknown ({first}); "
            f"use vocab_size >= {first}"
        )
    counts = _chunk_counts(documents, max_bytes)
    table = byte_table(byte_values)
    pairs = _PairCounts([[int(table[b]) for b in chunk] for chunk in counts], list(counts.values()))
    merges: list[tuple[int, int]] = []
    while first + len(merges) < vocab_size:
        pair = pairs.most_frequent()
        if pair is None:
            break  # nothing left that a merge would shorten more than once
        merges.append(pair)
        pairs.merge(pair, first + len(merges) - 1)
    return BPEVocabulary(byte_values, tuple(merges))


def _chunk_counts(documents: list[bytes], max_bytes: int) -> Counter[bytes]:
    """How often each chunk occurs in the first `max_bytes` of `documents`."""
    counts: Counter[bytes] = Counter()
    taken = 0
    for doc in documents:
        part = doc[: max_bytes - taken]
        counts.update(_CHUNKS.findall(part))
        taken += len(part)
        if taken >= max_bytes:
            break
    return counts


class _PairCounts:
    """How often each pair of adjacent ids occurs in the distinct chunks (`words`, each
    counted `freq` times), which chunks hold it, and a heap of the counts with lazy
    deletion: a merge revisits only the chunks that hold the merged pair."""

    def __init__(self, words: list[list[int]], freq: list[int]) -> None:
        self.words, self.freq = words, freq
        self.counts: defaultdict[tuple[int, int], int] = defaultdict(int)
        self.where: defaultdict[tuple[int, int], set[int]] = defaultdict(set)
        for w, word in enumerate(words):
            for pair in pairwise(word):
                self.counts[pair] += freq[w]
                self.where[pair].add(w)
        self.heap = [(-count, pair) for pair, count in self.counts.items()]
        heapq.heapify(self.heap)

    def most_frequent(self) -> tuple[int, int] | None:
        """The most frequent pair (ties: smaller ids), or None when none occurs twice."""
        while self.heap:
            negative, pair = heapq.heappop(self.heap)
            if self.counts.get(pair) != -negative:
                continue  # a stale entry: the pair's count changed since it was pushed
            return pair if -negative >= 2 else None
        return None

    def merge(self, pair: tuple[int, int], new: int) -> None:
        """Make every occurrence of `pair` the token `new`, updating the counts."""
        counts, where, freq = self.counts, self.where, self.freq
        changed = set()
        for w in where.pop(pair):
            old = self.words[w]
            merged = _merge_pair(old, pair, new)
            if len(merged) == len(old):
                continue
            for p in pairwise(old):
                counts[p] -= freq[w]
                changed.add(p)
            for p in pairwise(merged):
                counts[p] += freq[w]
                where[p].add(w)
                changed.add(p)
            self.words[w] = merged
        for p in changed:
            count = counts[p]
            if count > 0:
                heapq.heappush(self.heap, (-count, p))
            else:
                del counts[p]
                where.pop(p, None)

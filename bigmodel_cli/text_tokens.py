"""Vocabularies that turn text into token ids and back. NumPy and the standard library
only: no TensorFlow, so a vocabulary loads as fast as a config.

A vocabulary is learned from the *training* split only and saved in the run directory
(`vocabulary.json`), so `evaluate`, `predict` and `generate` encode raw text exactly as
training did.

- `byte`: one token per byte value seen in the training text, an end-of-document token
  and an unknown-byte token. Held-out text may contain bytes training never saw (they
  become the unknown token, and count against the model); a prompt may not: encoding it
  strictly is an error that names the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bigmodel_cli.errors import DataError


@dataclass(frozen=True)
class ByteVocabulary:
    """Ids 0..k-1 stand for the sorted byte values seen in training; id k ends a document
    and id k+1 is a byte training never saw."""

    byte_values: tuple[int, ...]
    kind: str = "byte"

    @classmethod
    def learn(cls, data: bytes | np.ndarray) -> ByteVocabulary:
        values = np.unique(np.frombuffer(bytes(data), np.uint8) if isinstance(data, bytes)
                           else np.asarray(data, np.uint8))  # fmt: skip
        return cls(tuple(int(v) for v in values))

    @property
    def size(self) -> int:
        return len(self.byte_values) + 2

    @property
    def end_of_document(self) -> int:
        return len(self.byte_values)

    @property
    def unknown(self) -> int:
        return len(self.byte_values) + 1

    def _table(self) -> np.ndarray:
        table = np.full(256, -1, np.int64)
        table[list(self.byte_values)] = np.arange(len(self.byte_values))
        return table

    def encode_bytes(self, data: bytes, what: str = "text", strict: bool = True) -> np.ndarray:
        """Token ids of `data`. Bytes outside the vocabulary are an error naming them, or
        with `strict=False` the unknown token."""
        raw = np.frombuffer(data, np.uint8)
        ids = self._table()[raw]
        if not strict:
            return np.where(ids < 0, self.unknown, ids)
        unknown = np.unique(raw[ids < 0])
        if len(unknown):
            shown = ", ".join(f"0x{b:02x} ({bytes([b])!r})" for b in unknown[:8])
            more = f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""
            raise DataError(
                f"{what}: bytes {shown}{more} never occur in the training text, so the "
                f"model has no token for them"
            )
        return ids

    def encode(self, text: str, what: str = "text") -> np.ndarray:
        return self.encode_bytes(text.encode("utf-8"), what)

    def decode_bytes(self, ids) -> bytes:
        """Bytes of `ids`; end-of-document becomes a newline, an unknown byte `?`."""
        values = np.asarray([*self.byte_values, ord("\n"), ord("?")], np.uint8)
        ids = np.asarray(ids, np.int64)
        out = values[ids]
        return out.tobytes()

    def bytes_per_token(self, ids: np.ndarray) -> float:
        """Bytes of text per token in `ids` (end-of-document is 0 bytes, unknown 1)."""
        ids = np.asarray(ids)
        return float(np.count_nonzero(ids != self.end_of_document)) / max(ids.size, 1)

    def to_json(self) -> dict:
        return {"kind": self.kind, "byte_values": list(self.byte_values)}


def vocabulary_from_json(data: dict):
    """The vocabulary saved by `to_json`."""
    kind = data.get("kind")
    if kind == "byte":
        return ByteVocabulary(tuple(int(v) for v in data["byte_values"]))
    raise DataError(f"vocabulary.json: unknown vocabulary kind {kind!r}")

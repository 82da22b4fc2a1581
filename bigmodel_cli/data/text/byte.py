"""The `byte` vocabulary (text_corpus): one token per byte value seen in training."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bigmodel_cli.data.text.base import ByteAlphabet, unseen_bytes_error


@dataclass(frozen=True)
class ByteVocabulary(ByteAlphabet):
    """Ids 0..k-1 stand for the sorted byte values seen in training; id k ends a document
    and id k+1 is a byte training never saw."""

    kinds = ("byte",)

    byte_values: tuple[int, ...]
    kind: str = "byte"

    @classmethod
    def learn(cls, data: bytes | np.ndarray) -> ByteVocabulary:
        values = np.unique(np.frombuffer(bytes(data), np.uint8) if isinstance(data, bytes)
                           else np.asarray(data, np.uint8))  # fmt: skip
        return cls(tuple(int(v) for v in values))

    @classmethod
    def from_json(cls, data: dict) -> ByteVocabulary:
        return cls(tuple(int(v) for v in data["byte_values"]))

    def encode_bytes(self, data: bytes, what: str = "text", strict: bool = True) -> np.ndarray:
        """Token ids of `data`. Bytes outside the vocabulary are an error naming them, or
        with `strict=False` the unknown token."""
        raw = np.frombuffer(data, np.uint8)
        ids = self._table[raw]
        if not strict:
            return np.where(ids < 0, self.unknown, ids)
        if np.any(ids < 0):
            raise unseen_bytes_error(what, np.unique(raw[ids < 0]))
        return ids

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

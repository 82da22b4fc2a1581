"""What every vocabulary shares: its JSON form in `vocabulary.json`, and the byte alphabet
of the byte-level ones (byte, bpe).

Each vocabulary class names the `kinds` it reads back; `vocabulary_from_json` finds the
class by the saved `kind`, so a run's `vocabulary.json` always loads into the class that
wrote it.
"""

from __future__ import annotations

from functools import cached_property
from typing import ClassVar

import numpy as np

from bigmodel_cli.errors import DataError


class Vocabulary:
    """Turns text into token ids and back; saved as `to_json()`, read by `from_json`."""

    kinds: ClassVar[tuple[str, ...]] = ()
    _by_kind: ClassVar[dict[str, type[Vocabulary]]] = {}

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        Vocabulary._by_kind.update(dict.fromkeys(cls.kinds, cls))

    @property
    def size(self) -> int:
        raise NotImplementedError

    def to_json(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_json(cls, data: dict) -> Vocabulary:
        raise NotImplementedError


def vocabulary_from_json(data: dict):
    """The vocabulary saved by `to_json`."""
    kind = data.get("kind")
    vocabulary = Vocabulary._by_kind.get(kind)
    if vocabulary is None:
        raise DataError(f"vocabulary.json: unknown vocabulary kind {kind!r}")
    return vocabulary.from_json(data)


# === The byte alphabet of byte-level vocabularies =============================


def unseen_bytes_error(what: str, unseen: np.ndarray) -> DataError:
    shown = ", ".join(f"0x{b:02x} ({bytes([b])!r})" for b in unseen[:8])
    more = f" and {len(unseen) - 8} more" if len(unseen) > 8 else ""
    return DataError(
        f"{what}: bytes {shown}{more} never occur in the training text, so the "
        f"model has no token for them"
    )


def byte_table(byte_values: tuple[int, ...]) -> np.ndarray:
    table = np.full(256, -1, np.int64)
    table[list(byte_values)] = np.arange(len(byte_values))
    return table


def check_strict(table: np.ndarray, data: bytes, what: str) -> None:
    raw = np.frombuffer(data, np.uint8)
    unseen = np.unique(raw[table[raw] < 0])
    if len(unseen):
        raise unseen_bytes_error(what, unseen)


def byte_values_of(documents) -> tuple[int, ...]:
    seen = np.zeros(256, np.int64)
    for doc in documents:
        seen += np.bincount(np.frombuffer(bytes(doc), np.uint8), minlength=256)
    return tuple(int(v) for v in np.flatnonzero(seen))


class ByteAlphabet(Vocabulary):
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
        return byte_table(self.byte_values)

    def encode(self, text: str, what: str = "text") -> np.ndarray:
        return self.encode_bytes(text.encode("utf-8"), what)

    def encode_bytes(self, data: bytes, what: str = "text", strict: bool = True) -> np.ndarray:
        raise NotImplementedError

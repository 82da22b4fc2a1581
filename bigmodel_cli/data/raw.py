"""What every reader returns: the examples of a source in their native shape.

A leaf module (NumPy and spec only), so the readers under `sources/` and the steps of `load_data`
share the type without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bigmodel_cli.spec import Arrays, EncodedExamples

SPLITS = ("train", "validation", "test")


@dataclass(kw_only=True)
class RawData:
    """Examples in their native shape: x is (n, F) tabular, (n, H, W, C) image,
    (n, T, F) float sequence, (n, T) tokens, (n, D, H, W, C) volume, or (n,) strings of
    text (kind `text`, token ids once split).

    `dealt`: every split, when the reader dealt the examples to them itself (text_corpus
    deals whole documents, so that no document is in two splits); `load_data` keeps them
    instead of splitting, and `x`, `y` are then the training split's.

    `encoded`: the inputs stay encoded on disk, decoded per batch as training reads them
    (image_dir, tfrecord images); `x` is then a read-only stand-in of the decoded shape
    that holds no memory (`encoded_stand_in`): its shape and dtype only are meaningful.
    """

    x: np.ndarray
    y: np.ndarray  # classification (n,) int64; regression (n, k) float32; LM (n, T) int64
    task: str
    kind: str  # tabular | image | sequence | tokens | volume | text
    description: str
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None
    vocab_size: int | None = None
    test: tuple[np.ndarray, np.ndarray] | None = None  # the file's own test split
    dealt: dict[str, Arrays] | None = None
    notes: list[str] = field(default_factory=list)
    feature_names: tuple[str, ...] | None = None  # csv: the input columns, in order
    # Text language models (text_corpus): the vocabulary the ids are from, bytes of text
    # per token, and the SHA-256 of the text read (the same digest, the same splits).
    vocabulary: object | None = None
    bytes_per_token: float | None = None
    token_bytes: tuple[int, ...] | None = None
    digest: str | None = None
    encoded: EncodedExamples | None = None


@dataclass(kw_only=True)
class DealtDocuments:
    """Text a reader dealt, whole documents, to the splits itself (text_corpus). Its
    tokens are made from the training portion's vocabulary before `load_data` checks the
    model against them (the vocabulary sizes the model's embedding)."""

    portions: dict[str, list]  # split name -> documents (text_corpus.Document)
    files: int  # files matched
    digest: str  # SHA-256 of the documents read, in order
    description: str


def encoded_stand_in(count: int, shape: tuple[int, ...]) -> np.ndarray:
    """A (count, *shape) uint8 array that occupies no memory (every element is the same
    zero): what `RawData.x` is for encoded examples, whose shape the layout reads."""
    return np.broadcast_to(np.zeros((), np.uint8), (count, *shape))

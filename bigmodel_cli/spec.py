"""What the data tells the model builders, and the split arrays. No TensorFlow import."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

Task = Literal["classification", "regression", "language_model"]


@dataclass(frozen=True)
class DataSpec:
    """Shape and meaning of the examples, as the model builders need them.

    - classification: `num_classes` classes, labels are integers in [0, num_classes).
    - regression: `target_size` float targets per example.
    - language_model: inputs and labels are token ids of shape (sequence_length,);
      `num_classes == vocab_size` (the next token is the class).
    Integer token inputs have `input_dtype == "int32"` and a `vocab_size`.
    """

    task: Task
    input_shape: tuple[int, ...]
    input_dtype: Literal["float32", "int32"] = "float32"
    num_classes: int | None = None
    target_size: int = 1
    vocab_size: int | None = None
    sequence_length: int | None = None
    class_names: tuple[str, ...] | None = None
    # Text language models: bytes of text per token of the validation split (about 1.0
    # for a byte tokenizer), for people reading summary.json; the metric counts bytes.
    bytes_per_token: float | None = None
    # Bytes of text each token id stands for (text_corpus), so bits per byte divides by
    # the bytes actually scored in each split rather than an average.
    token_bytes: tuple[int, ...] | None = None
    # csv: the input columns in training order, so predict reads new files by name.
    feature_names: tuple[str, ...] | None = None

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Arrays:
    """One split: inputs `x` (n, *input_shape) and labels `y` (n,) or (n, target_size)."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.x)


@dataclass
class DataBundle:
    """Everything `load_data` returns: the spec and the three seeded splits."""

    spec: DataSpec
    train: Arrays
    validation: Arrays | None
    test: Arrays | None
    description: str = ""
    notes: list[str] = field(default_factory=list)
    # Input statistics from the training split (JSON form of data.Normalization), so that
    # evaluate and predict on other data apply exactly what the model was trained with.
    normalization: dict | None = None
    # The vocabulary of text data (JSON form of text_tokens.Vocabulary), learned from the
    # training split; saved in the run directory so evaluate, predict and generate
    # turn raw text into the same ids.
    vocabulary: dict | None = None

    def split(self, name: str) -> Arrays | None:
        return {"train": self.train, "validation": self.validation, "test": self.test}[name]

"""What the data tells the model builders, and the split arrays. No TensorFlow import."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
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


def read_rows(path: str, starts: np.ndarray, out: np.ndarray, holding: str) -> None:
    """Fill each row of `out` (2-D, C-contiguous) with the bytes of `path` from
    `starts[i]` on: one unbuffered read per row, nothing mapped, so memory holds `out`
    alone. (A memory map made per batch cost 3-6x as long, in page faults, holding the
    GIL.)"""
    size = out.shape[1] * out.itemsize
    with open(path, "rb", buffering=0) as handle:
        for row, start in zip(out, starts, strict=True):
            handle.seek(int(start))
            if handle.readinto(row) != size:
                raise OSError(f"{path}: shorter than {holding}")


@dataclass(frozen=True)
class TokenWindows:
    """Next-token sequences read from a token file (data/token_cache.py) as they are
    needed: sequence i is the file's tokens [i * length, (i + 1) * length) as inputs and
    the same shifted by one as labels. A batch reads its sequences from the file into
    itself: nothing stays mapped, so memory holds the batches in flight alone."""

    path: str
    dtype: str  # uint16, or uint32 for a vocabulary over 65,536 tokens
    count: int  # sequences
    length: int  # tokens per sequence

    def head(self, count: int) -> TokenWindows:
        return TokenWindows(self.path, self.dtype, min(count, self.count), self.length)

    def views(self) -> tuple[np.ndarray, np.ndarray]:
        """(inputs, labels) as read-only arrays over the file: for their shape and a few
        rows, never to read whole (that would bring the file into memory)."""
        ids = np.memmap(self.path, dtype=self.dtype, mode="r")
        n, length = self.count, self.length
        return ids[: n * length].reshape(n, length), ids[1 : n * length + 1].reshape(n, length)

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(inputs, labels) of the sequences `indices`, as int32: each sequence's tokens
        and the next one read into the batch, so memory holds the batch alone."""
        rows = np.empty((len(indices), self.length + 1), self.dtype)
        starts = np.asarray(indices, np.int64) * self.length * rows.itemsize
        read_rows(self.path, starts, rows, f"its {self.count:,} sequences")
        rows = rows.astype(np.int32)
        return rows[:, :-1], rows[:, 1:]


@dataclass(frozen=True)
class EncodedExamples:
    """Examples kept encoded on disk and decoded a batch at a time as training reads
    them (image_dir, tfrecord images): example i is the bytes [offsets[i], offsets[i] +
    lengths[i]) of files[file_ids[i]]: a whole image file, or one serialized
    tf.train.Example whose feature `feature` holds the encoded image (data/decode.py).

    `shape` is the decoded image (height, width, channels); `layout` the shape the model
    reads; `mean` and `std` (per channel, from a sample of the training split) standardize
    the decoded values when set.
    """

    files: tuple[str, ...]
    file_ids: np.ndarray  # int32, one per example
    offsets: np.ndarray  # int64
    lengths: np.ndarray  # int64
    shape: tuple[int, int, int]
    feature: str | None = None  # None: the bytes are the image file itself
    layout: tuple[int, ...] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    # `data.cache: disk`: a file of the examples decoded (uint8, `shape` each, in this
    # order), read instead of the encoded bytes (data/decoded_cache.py).
    decoded: str | None = None

    def __len__(self) -> int:
        return len(self.offsets)

    def read_decoded(self, indices: np.ndarray) -> np.ndarray:
        """The decoded examples `indices` (uint8) from the `decoded` file, each row read
        into the batch (`read_rows`)."""
        row = int(np.prod(self.shape))
        out = np.empty((len(indices), row), np.uint8)
        starts = np.asarray(indices, np.int64) * row
        read_rows(self.decoded, starts, out, f"its {len(self):,} examples")
        return out.reshape(len(indices), *self.shape)

    def take(self, indices: np.ndarray) -> EncodedExamples:
        return replace(
            self,
            file_ids=self.file_ids[indices],
            offsets=self.offsets[indices],
            lengths=self.lengths[indices],
        )

    def read(self, indices: np.ndarray) -> np.ndarray:
        """The encoded bytes of examples `indices`, as an object array (a tf.string batch).
        Files are opened per call: a batch holds no more than its own bytes."""
        out = np.empty(len(indices), dtype=object)
        by_file: dict[int, list[int]] = {}
        for position, index in enumerate(np.asarray(indices, np.int64)):
            by_file.setdefault(int(self.file_ids[index]), []).append(position)
        for file_id, positions in by_file.items():
            with open(self.files[file_id], "rb", buffering=0) as handle:
                for position in positions:
                    index = int(indices[position])
                    handle.seek(int(self.offsets[index]))
                    out[position] = handle.read(int(self.lengths[index]))
        return out


@dataclass
class Arrays:
    """One split: inputs `x` (n, *input_shape) and labels `y` (n,) or (n, target_size).

    `windows`: the split is read from a token file as it trains (text_corpus); `x` and
    `y` are then views of that file. `encoded`: the inputs stay encoded on disk and are
    decoded per batch (image_dir, tfrecord images); `x` is then None and `y` the labels."""

    x: np.ndarray | None
    y: np.ndarray
    windows: TokenWindows | None = None
    encoded: EncodedExamples | None = None

    def __len__(self) -> int:
        return len(self.y)

    @classmethod
    def from_windows(cls, windows: TokenWindows) -> Arrays:
        return cls(*windows.views(), windows=windows)

    def bounded(self, steps: int | None, batch_size: int) -> Arrays:
        """The first `steps` batches (all of it for None): what a capped pass reads."""
        if steps is None or steps * batch_size >= len(self):
            return self
        return self.head(steps * batch_size)

    def head(self, count: int) -> Arrays:
        """The first `count` examples."""
        if self.windows is not None:
            return Arrays.from_windows(self.windows.head(count))
        if self.encoded is not None:
            keep = np.arange(min(count, len(self)))
            return Arrays(None, self.y[:count], encoded=self.encoded.take(keep))
        return Arrays(self.x[:count], self.y[:count])


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

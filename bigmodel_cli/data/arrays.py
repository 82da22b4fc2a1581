"""Numeric arrays (an npz file's, tfrecord records') as `RawData`: the kind from the
inputs' rank, integer inputs as token ids, labels as classes or regression targets.

An integer `x` of shape (n, T) is read as token ids (vocab_size = largest id + 1, below
`model.vocab_size` when set, else at most MAX_INFERRED_VOCAB) when `model.type` is rnn or
transformer, or when training a language model; otherwise integers are plain numeric
features. Labels of one value per example become classes or regression targets as
`targets.encode_target` says (the loss decides, else the values do); labels of shape
(n, k) that are one-hot rows become class ids unless the loss is a regression loss.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bigmodel_cli.config import Config, is_language_model
from bigmodel_cli.data.limits import MAX_INFERRED_VOCAB, MAX_PROBLEMS, array_value_problems
from bigmodel_cli.data.raw import RawData, encoded_stand_in
from bigmodel_cli.data.targets import encode_target
from bigmodel_cli.errors import DataError
from bigmodel_cli.spec import EncodedExamples


def from_arrays(
    x: np.ndarray, y: np.ndarray, n_train: int, cfg: Config, what: str, path, notes: list[str]
) -> RawData:
    """RawData from numeric inputs and labels (npz and tfrecord): the kind from x's rank,
    token ids from integer x, labels as classes or regression targets (module docstring).
    Examples past `n_train` are the file's own test split."""
    x = x.reshape(len(x), -1) if x.ndim == 1 else x
    kind = {2: "tabular", 3: "sequence", 4: "image", 5: "volume"}.get(x.ndim)
    if kind is None:
        raise DataError(f"{path}: x has shape {x.shape}; expected 2 to 5 dimensions")
    tokens = x.dtype.kind in "iu" and x.ndim == 2
    tokens = tokens and (cfg.model.type in ("rnn", "transformer") or is_language_model(cfg))
    vocab = None
    if tokens:
        kind, vocab = "tokens", token_vocabulary(x, cfg, f"{path}: x")
        notes.append(f"x holds integers: read as token ids (vocab_size {vocab})")
    x = x.astype(np.int32 if tokens else np.float32)

    if is_language_model(cfg):
        task, names, y = "language_model", None, _lm_labels(x, y, path, tokens)
        vocab = max(vocab, token_vocabulary(y, cfg, f"{path}: y"))
        num_classes = vocab
    else:
        task, y, names = _labels(y, cfg, path, notes)
        num_classes = len(names) if names else None
    if x.ndim == 3 and cfg.model.type == "cnn" and cfg.model.input_shape is None:
        notes.append(
            f"x examples are {x.shape[1:]}: read as sequences (Conv1D); for 2-D convolutions "
            f"set model.input_shape: [{x.shape[1]}, {x.shape[2]}, 1]"
        )
    test = (x[n_train:], y[n_train:]) if n_train < len(x) else None
    description = f"{what}: {len(x)} examples of shape {tuple(x.shape[1:])}"
    return RawData(
        x=x[:n_train],
        y=y[:n_train],
        task=task,
        kind=kind,
        description=description,
        num_classes=num_classes,
        class_names=names,
        vocab_size=vocab,
        test=test,
        notes=notes,
    )


def token_vocabulary(ids: np.ndarray, cfg: Config, where: str) -> int:
    """The vocabulary integer token ids need (largest id + 1). An id below 0, at or past
    `model.vocab_size` when given, or past MAX_INFERRED_VOCAB otherwise is refused with
    its index: ids index the embedding's rows, so one stray id would size the table."""
    given = getattr(cfg.model, "vocab_size", None)
    limit = given or MAX_INFERRED_VOCAB
    bad = np.argwhere((ids < 0) | (ids >= limit))
    if not len(bad):
        return int(ids.max()) + 1 if ids.size else 1
    index = tuple(int(i) for i in bad[0])
    value = int(ids[index])
    more = f" (and {len(bad) - 1:,} more)" if len(bad) > 1 else ""
    at = f"{where}[{', '.join(map(str, index))}]: token id {value:,}{more}"
    if value < 0:
        raise DataError(f"{at} is negative; token ids are 0 or more")
    if given:
        raise DataError(
            f"{at} is out of range: model.vocab_size is {given:,} (ids 0 to {given - 1:,}); "
            "raise model.vocab_size, or fix the data"
        )
    raise DataError(
        f"{at} would need an embedding of {value + 1:,} rows, more than the "
        f"{MAX_INFERRED_VOCAB:,} bigmodel infers from data: number the distinct tokens "
        "0..K-1, or (transformer) set model.vocab_size to size the vocabulary explicitly"
    )


def _lm_labels(x, y, path, tokens) -> np.ndarray:
    """Next-token labels: integer ids of the same shape as the token inputs."""
    if not tokens or y.shape != x.shape or y.dtype.kind not in "iu":
        raise DataError(
            f"{path}: a language model needs integer token ids x and y of the same shape "
            f"(n, T), y the next token of x; received x {x.shape} {x.dtype}, y {y.shape} "
            f"{y.dtype}"
        )
    return y.astype(np.int64)


def _labels(y: np.ndarray, cfg: Config, path: Path, notes: list[str]):
    """(task, y, class_names) for npz labels: one per example, or rows of k values."""
    if y.dtype.kind not in "biufUS":
        raise DataError(f"{path}: y has dtype {y.dtype}; expected numbers or strings")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    regression_loss = cfg.loss is not None and not cfg.loss.is_classification
    if y.ndim == 2 and y.dtype.kind in "biuf":
        one_hot = np.isin(y, (0, 1)).all() and np.all(y.sum(axis=1) == 1)
        if one_hot and not regression_loss:
            notes.append(f"y is one-hot ({y.shape[1]} columns): converted to class ids")
            y = np.argmax(y, axis=1)
        elif cfg.loss is None or regression_loss:
            problems = array_value_problems(y, f"{path}: y", MAX_PROBLEMS)
            if problems:
                raise DataError(problems)
            return "regression", y.astype(np.float32), None
    if y.ndim != 1:
        raise DataError(
            f"{path}: y has shape {y.shape}; expected one label per example (n,), one-hot "
            "rows (n, k), or k regression targets per example (n, k)"
        )
    return encode_target(y, cfg, lambda i: f"{path}: y[{i}]", f"{path}: y")


def from_encoded(
    encoded: EncodedExamples, y: np.ndarray, cfg: Config, what: str, path, notes: list[str]
) -> RawData:
    """RawData of encoded images (tfrecord) and their labels, as `from_arrays` would
    make of the decoded images, without decoding them."""
    if is_language_model(cfg):
        raise DataError(f"{path}: a language model reads token ids, not images")
    task, y, names = _labels(y, cfg, path, notes)
    x = encoded_stand_in(len(encoded), encoded.shape)
    return RawData(
        x=x,
        y=y,
        task=task,
        kind="image",
        description=f"{what}: {len(x)} examples of shape {tuple(x.shape[1:])}",
        num_classes=len(names) if names else None,
        class_names=names,
        notes=notes,
        encoded=encoded,
    )

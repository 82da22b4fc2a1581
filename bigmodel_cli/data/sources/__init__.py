"""Read a data source into NumPy arrays in their native shape; no splitting, no TensorFlow.

Sources: scikit-learn's bundled datasets (no download), seeded synthetic data
(`synthetic.py`), and the user's csv and npz files.

Labels of one value per example (csv, npz, tfrecord) become classes or regression
targets as `targets.encode_target` says (the loss decides, else the values do); a
missing target is an error.

**npz** files are read through `npz_files.NpzArchive`: every array's header is checked
(declared against stored size, the memory available, no Python objects) before its data
is read with `allow_pickle=False`. They hold `x`, `y`, or `x_train`, `y_train`, `x_test`,
`y_test` (the file's test set is then the test split), at least one example, and inputs
float32 can hold (`data_limits`). An integer `x` of shape (n, T) is read as token ids
(vocab_size = largest id + 1, below `model.vocab_size` when set, else at most
MAX_INFERRED_VOCAB) when `model.type` is rnn or transformer, or when training a language
model; otherwise integers are plain numeric features. Labels of shape (n, k) that are
one-hot rows become class ids unless the loss is a regression loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bigmodel_cli.config import Config, is_language_model
from bigmodel_cli.data.limits import MAX_INFERRED_VOCAB, MAX_PROBLEMS, array_value_problems
from bigmodel_cli.data.npz_files import NpzArchive
from bigmodel_cli.data.sources.synthetic import generate
from bigmodel_cli.data.targets import encode_target
from bigmodel_cli.errors import DataError

BUILTIN = {
    "digits": ("load_digits", "1797 8x8 grayscale images of handwritten digits, values 0..16"),
    "iris": ("load_iris", "150 iris flowers, 4 measurements, 3 species"),
    "wine": ("load_wine", "178 wines, 13 chemical measurements, 3 cultivars"),
    "breast_cancer": ("load_breast_cancer", "569 tumours, 30 features, malignant or benign"),
    "diabetes": ("load_diabetes", "442 patients, 10 features, disease progression (regression)"),
}


@dataclass
class RawData:
    """Examples in their native shape: x is (n, F) tabular, (n, H, W, C) image,
    (n, T, F) float sequence, (n, T) tokens, or (n, D, H, W, C) volume."""

    x: np.ndarray
    y: np.ndarray  # classification (n,) int64; regression (n, k) float32; LM (n, T) int64
    task: str
    kind: str  # tabular | image | sequence | tokens | volume
    description: str
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None
    vocab_size: int | None = None
    test: tuple[np.ndarray, np.ndarray] | None = None  # the file's own test split
    notes: list[str] = field(default_factory=list)
    feature_names: tuple[str, ...] | None = None  # csv: the input columns, in order


def read_source(cfg: Config, base_dir: Path) -> RawData:
    """Read `cfg.data.source` (relative paths resolve against `base_dir`)."""
    source = cfg.data.source
    if source in BUILTIN:
        return _builtin(source)
    if source == "synthetic":
        s = generate(cfg.data, cfg.seed)
        return RawData(s.x, s.y, s.task, s.kind, s.description, s.num_classes, None, s.vocab_size)
    if source == "image_dir":
        from bigmodel_cli.data.sources.image_dir import read_image_dir

        return read_image_dir(cfg, base_dir)
    if source == "text_dir":
        from bigmodel_cli.data.sources.text_dir import read_text_dir

        return read_text_dir(cfg, base_dir)
    if source == "tfrecord":
        from bigmodel_cli.data.sources.tfrecord import read_tfrecords

        return read_tfrecords(cfg, base_dir)
    path = Path(cfg.data.path).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if not path.exists():
        raise DataError(f"data.path: {path}: no such file")
    if not path.is_file():
        raise DataError(f"data.path: {path}: not a file")
    if source == "csv":
        from bigmodel_cli.data.sources.csv_file import read_csv_source

        return read_csv_source(path, cfg)
    return _npz(path, cfg)


def _builtin(source: str) -> RawData:
    from sklearn import datasets  # ~1 s import; only pay it for built-in sources

    loader, about = BUILTIN[source]
    bunch = getattr(datasets, loader)()
    description = f"{source} (scikit-learn): {about}"
    if source == "diabetes":
        y = bunch.target.astype(np.float32).reshape(-1, 1)
        return RawData(bunch.data.astype(np.float32), y, "regression", "tabular", description)
    names = tuple(str(name) for name in bunch.target_names)
    x = bunch.data.astype(np.float32)
    kind = "tabular"
    if source == "digits":
        x, kind = x.reshape(-1, 8, 8, 1), "image"
    y = bunch.target.astype(np.int64)
    return RawData(x, y, "classification", kind, description, len(names), names)


# === npz =====================================================================


def _npz(path: Path, cfg: Config) -> RawData:
    with NpzArchive(path, f"data.path: {path}") as archive:
        keys = archive.names
        split = {"x_train", "y_train", "x_test", "y_test"}
        if {"x", "y"} <= keys and not keys & split:
            wanted = ["x", "y"]
        elif split <= keys and not keys & {"x", "y"}:
            wanted = ["x_train", "y_train", "x_test", "y_test"]
        else:
            raise DataError(
                f"data.path: {path} holds arrays {', '.join(sorted(keys)) or '(none)'}; "
                "expected exactly x, y or x_train, y_train, x_test, y_test"
            )
        arrays = archive.load(wanted)  # headers checked first: sizes, memory, no objects
    notes = []
    if len(wanted) == 4:
        notes.append(f"{path} brings its own test set (x_test): data.test_split is not applied")
    xs, ys = [arrays[k] for k in wanted[::2]], [arrays[k] for k in wanted[1::2]]
    problems = []
    for xa, ya, xn, yn in zip(xs, ys, wanted[::2], wanted[1::2], strict=True):
        if xa.ndim == 0 or ya.ndim == 0 or len(xa) != len(ya):
            problems.append(f"{path}: {xn} has shape {xa.shape} but {yn} has {ya.shape}")
        elif xn != "x_test" and len(xa) == 0:
            problems.append(f"{path}: {xn} and {yn} hold no examples (shape {xa.shape})")
        if xa.dtype.kind not in "biuf":
            problems.append(f"{path}: {xn} has dtype {xa.dtype}; expected numbers")
        else:
            problems += array_value_problems(xa, f"{path}: {xn}", MAX_PROBLEMS)
    if len(xs) == 2 and xs[0].shape[1:] != xs[1].shape[1:]:
        problems.append(f"{path}: x_train examples are {xs[0].shape[1:]}, x_test {xs[1].shape[1:]}")
    if problems:
        raise DataError(problems)
    x = np.concatenate(xs) if len(xs) > 1 else xs[0]
    y = np.concatenate(ys) if len(ys) > 1 else ys[0]
    return from_arrays(x, y, len(xs[0]), cfg, f"npz {path}", path, notes)


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
        task, names, y = "language_model", None, _npz_lm_labels(x, y, path, tokens)
        vocab = max(vocab, token_vocabulary(y, cfg, f"{path}: y"))
        num_classes = vocab
    else:
        task, y, names = _npz_labels(y, cfg, path, notes)
        num_classes = len(names) if names else None
    if x.ndim == 3 and cfg.model.type == "cnn" and cfg.model.input_shape is None:
        notes.append(
            f"x examples are {x.shape[1:]}: read as sequences (Conv1D); for 2-D convolutions "
            f"set model.input_shape: [{x.shape[1]}, {x.shape[2]}, 1]"
        )
    test = (x[n_train:], y[n_train:]) if n_train < len(x) else None
    description = f"{what}: {len(x)} examples of shape {tuple(x.shape[1:])}"
    return RawData(
        x[:n_train], y[:n_train], task, kind, description, num_classes, names, vocab, test, notes
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


def _npz_lm_labels(x, y, path, tokens) -> np.ndarray:
    """Next-token labels: integer ids of the same shape as the token inputs."""
    if not tokens or y.shape != x.shape or y.dtype.kind not in "iu":
        raise DataError(
            f"{path}: a language model needs integer token ids x and y of the same shape "
            f"(n, T), y the next token of x; received x {x.shape} {x.dtype}, y {y.shape} "
            f"{y.dtype}"
        )
    return y.astype(np.int64)


def _npz_labels(y: np.ndarray, cfg: Config, path: Path, notes: list[str]):
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

"""`bigmodel predict RUN_DIR INPUT...`: a trained run's model on new files, one JSON
object per example, in the order the INPUT files were given (rows of a file in order).

Inputs are read by their extension, and prepared exactly as the run's training data was
(the same decoding and resizing, the training split's normalization statistics and
vocabulary, the same layout):
- images (`.png .jpg .jpeg .gif .bmp`), only for runs trained on image files
  (`data.source: image_dir`, or `tfrecord` whose input has dtype `image`): decoded to the
  training images' size and channels (values 0..255). Runs trained on arrays (the
  builtin digits, npz, synthetic images) take `.npz` or `.csv` in their own value range;
- text files (`.txt`, UTF-8, a leading BOM dropped), one example per file, for
  `text_dir` runs;
- `.csv` (UTF-8) with a header row, one example per non-blank row: a run trained on a
  csv takes its feature columns by name, in the training order (other columns, like the
  target, are ignored), and reads the file with the run's `delimiter`, `skip_rows` and
  `header` (with `header: false`, by position: the columns of the training file, the
  target's may be left off when it was last); any other run takes every column, which
  must then be numbers, as many as one example has values;
- `.npz` holding `x` (or `x_test`): one example per row, in the data's native shape.

A model that reads token ids takes whole numbers in [0, vocabulary size) only; float
inputs must be numbers float32 holds (no NaN, infinity or |v| > 3.4e38). An .npz's header
and an image's are checked before their data is read, as in training. Every input is
checked before the model loads; a bad one exits 2 naming the file (and row).

Each line: `{"input": ..., "class": ..., "probabilities": {...}}` for classifiers, or
`{"input": ..., "value": ...}` (a list when there are several targets) for regression.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bigmodel_cli.data.images import IMAGE_SUFFIXES
from bigmodel_cli.data.limits import MAX_PROBLEMS, array_value_problems, capped
from bigmodel_cli.data.npz_files import NpzArchive
from bigmodel_cli.data.sources.csv_file import cell_problem, listing, read_csv_table
from bigmodel_cli.errors import DataError, UserError
from bigmodel_cli.inference.open_run import TrainedRun, open_run

KINDS = {**dict.fromkeys(IMAGE_SUFFIXES, "image"), ".txt": "text", ".csv": "csv", ".npz": "npz"}
BATCH = 256


# === Which inputs this run takes ==============================================


def _kind(path: Path) -> str | None:
    return KINDS.get(path.suffix.lower())


def image_shape(trained: TrainedRun) -> tuple[int, int, int] | None:
    """(height, width, channels) training decoded its image files to, or None when the
    run was not trained on image files."""
    data = trained.cfg.data
    if data.source == "image_dir":
        from bigmodel_cli.data.sources.image_dir import image_shape as folder_image_shape

        return folder_image_shape(trained.cfg)
    if data.source == "tfrecord":
        for name, feature in (data.feature_spec or {}).items():
            if name != data.target and feature.dtype == "image":
                return tuple(int(d) for d in feature.shape)
    return None


def _path_problems(trained: TrainedRun, paths: list[Path]) -> list[str]:
    """Every input that cannot be read by this run, one line each (a kind the run does
    not take is reported once, by its first file)."""
    problems = []
    source = trained.cfg.data.source
    images = [p for p in paths if _kind(p) == "image"]
    texts = [p for p in paths if _kind(p) == "text"]
    for path in paths:
        if path.is_dir():
            problems.append(
                f"{path}: is a directory; give the files to predict on (images, .txt, .csv "
                "or .npz), e.g. a shell glob such as DIR/*.png"
            )
        elif not path.exists():
            problems.append(f"{path}: no such file")
        elif not path.is_file():
            problems.append(f"{path}: not a regular file")
        elif _kind(path) is None:
            problems.append(f"{path}: unknown input type; expected an image, .txt, .csv or .npz")
    if images and image_shape(trained) is None:
        more = f" (and {len(images) - 1} more image files)" if len(images) > 1 else ""
        problems.append(
            f"{images[0]}{more}: image files are only for runs trained on image files "
            "(data.source: image_dir, or tfrecord with an `image` input); this run was "
            f"trained on data.source {source!r}, whose examples are arrays, not decoded "
            "images. Give them as .npz (x) or .csv rows in the training data's value range"
        )
    if texts and source != "text_dir":
        problems.append(
            f"{texts[0]}: text files need a run trained on text_dir data; this run was "
            f"trained on data.source {source!r}"
        )
    return problems


# === Reading inputs ==========================================================


def _example_shape(trained: TrainedRun) -> tuple[int, ...]:
    """One example's shape as the user gives it (before the model's layout)."""
    if trained.normalization:
        return tuple(trained.normalization["native_shape"])
    return image_shape(trained) or tuple(trained.spec.input_shape)


def _vocabulary_size(trained: TrainedRun) -> int | None:
    """Ids the model's embedding has rows for (a transformer's model.vocab_size may
    exceed the data's)."""
    sizes = [trained.spec.vocab_size, getattr(trained.cfg.model, "vocab_size", None)]
    sizes = [int(s) for s in sizes if s]
    return max(sizes) if sizes else None


def _token_ids(trained: TrainedRun, x: np.ndarray, names: list[str]) -> np.ndarray:
    """`x` as int32 token ids; a non-integer or out-of-vocabulary value is an error."""
    if x.dtype.kind == "f":
        bad = np.argwhere(~np.isfinite(x) | (x != np.round(x)))
        if len(bad):
            r, c = bad[0]
            raise DataError(
                f"{names[r]}: this run's model reads token ids, which are whole numbers; "
                f"value {c + 1} of the example is {x[r, c].item()!r}"
            )
    size = _vocabulary_size(trained)
    high = size if size is not None else np.iinfo(np.int32).max + 1
    bad = np.argwhere((x < 0) | (x >= high))
    if len(bad):
        r, c = bad[0]
        expected = f"in [0, {size}) (the run's vocabulary)" if size else "0 or more"
        value = x[r, c].item()
        value = int(value) if isinstance(value, float) and value.is_integer() else value
        raise DataError(
            f"{names[r]}: token id {value!r} (value {c + 1} of the example) is out of "
            f"range; this run's token ids are whole numbers {expected}"
        )
    return x.astype(np.int32)


def _prepare(trained: TrainedRun, x: np.ndarray, what: str, names: list[str]) -> np.ndarray:
    """`x` (one example per row, `names[i]` naming row i) as the model's inputs: token
    ids checked, floats normalized as in training, then the model's layout."""
    spec = trained.spec
    size = math.prod(spec.input_shape)
    width = math.prod(x.shape[1:])  # from the shape: an empty file is checked too
    if width != size:
        raise DataError(
            f"{what}: an example has {width} value{'s' * (width != 1)}; the model takes "
            f"{size} (shape {list(_example_shape(trained))})"
        )
    x = x.reshape(len(x), size)
    if spec.input_dtype == "int32":
        x = _token_ids(trained, x, names)
    else:
        problems = array_value_problems(x, what, MAX_PROBLEMS)  # before float32 makes inf
        if problems:
            raise DataError(problems)
        x = x.astype(np.float32)
        if trained.normalization:
            from bigmodel_cli.data import Normalization

            x = Normalization.from_json(trained.normalization).apply(x)
    return x.reshape(len(x), *spec.input_shape)


def _csv_columns(trained: TrainedRun, path: Path, header: list[str]) -> list[int]:
    """Indices of the columns one example is read from, in the model's input order."""
    data = trained.cfg.data
    if data.source != "csv":
        return list(range(len(header)))
    wanted = trained.spec.feature_names or data.features
    if not wanted:  # a run from before feature_names was recorded
        raise DataError(
            f"{path}: the run {trained.run.root} does not record the order of its csv "
            "feature columns (it was trained by an older bigmodel and its config sets no "
            "data.features), so the column order the model expects is unknown; retrain "
            "the run to predict from csv files"
        )
    counts = Counter(header)  # not list scans: they were quadratic in the columns
    missing = [c for c in wanted if c not in counts]
    if missing:
        how = " (the run reads csv files without a header row)" if data.header is False else ""
        raise DataError(f"{path}: no column(s) {listing(missing)} (the run's features){how}")
    repeated = [c for c in wanted if counts[c] > 1]
    if repeated:
        raise DataError(f"{path}: header repeats column(s) {listing(repeated)}")
    position = {name: i for i, name in enumerate(header)}
    return [position[c] for c in wanted]


def _read_csv(trained: TrainedRun, path: Path) -> tuple[np.ndarray, list[str]]:
    """As training read its csv (csv_source.read_csv_table, with the run's delimiter,
    skip_rows and header)."""
    table = read_csv_table(path, trained.cfg.data, str(path))
    header, rows, lines = table.columns, table.rows, table.lines
    if not header or not rows:
        what = "a header row and " if table.header_line is not None else ""
        raise DataError(f"{path}: expected {what}at least one row of values")
    columns = _csv_columns(trained, path, header)
    x = np.empty((len(rows), len(columns)), np.float64)  # float64: token ids stay exact
    problems = []
    for r, (row, line) in enumerate(zip(rows, lines, strict=True)):
        for c, col in enumerate(columns):
            cell = row[col].strip() if col < len(row) else ""
            why = cell_problem(cell)  # as training's cells: a finite float32 number
            if why:
                problems.append(f"{path} line {line}, column {header[col]!r}: {why}")
            else:
                x[r, c] = float(cell)
    if problems:
        raise DataError(capped(problems))
    return x, [f"{path}:{line}" for line in lines]


def _read_npz(path: Path) -> tuple[np.ndarray, list[str]]:
    """`x` (or `x_test`) of an .npz, its header checked before its data is read."""
    with NpzArchive(path, str(path)) as archive:
        names = archive.names
        key = "x" if "x" in names else "x_test" if "x_test" in names else None
        if key is None:
            held = ", ".join(sorted(names)) or "none"
            raise DataError(f"{path}: holds no array x (or x_test); it holds {held}")
        x = archive.load([key])[key]
    if x.dtype.kind not in "biuf":
        raise DataError(f"{path}: {key} has dtype {x.dtype}; expected numbers")
    if x.ndim == 0:
        raise DataError(f"{path}: {key} is a single value (shape ()); expected one example per row")
    problems = array_value_problems(x, f"{path}: {key}", MAX_PROBLEMS)
    if problems:
        raise DataError(problems)
    return x, [f"{path}[{i}]" for i in range(len(x))]


def _read_texts(trained: TrainedRun, paths: list[Path]) -> np.ndarray:
    from bigmodel_cli.data.sources.text_dir import encode_texts
    from bigmodel_cli.data.text import vocabulary_from_json

    vocabulary = vocabulary_from_json(trained.text_vocabulary())
    contents = []
    for path in paths:
        try:  # as text_dir reads its files: a leading BOM dropped, bad bytes replaced
            contents.append(path.read_text(encoding="utf-8-sig", errors="replace"))
        except OSError as err:
            raise DataError(f"{path}: cannot read ({err.strerror})") from None
    return encode_texts(contents, vocabulary, trained.cfg)


def read_inputs(trained: TrainedRun, paths: list[Path]) -> list[tuple[np.ndarray, list[str]]]:
    """(prepared model inputs, a name per example) for each of `paths`, in their order
    (an empty .npz gives no rows). Images and texts are decoded together."""
    problems = _path_problems(trained, paths)
    if problems:
        raise DataError(problems)
    kinds = [_kind(p) for p in paths]
    read: dict[int, tuple[np.ndarray, list[str]]] = {}
    for kind in ("image", "text"):
        indices = [i for i, k in enumerate(kinds) if k == kind]
        if not indices:
            continue
        group = [paths[i] for i in indices]
        names = [str(p) for p in group]
        if kind == "image":
            from bigmodel_cli.data.images import load_images

            # Decoded and resized as image_dir and tfrecord decode their images.
            raw = load_images(group, trained.cfg, image_shape(trained))
        else:
            raw = _read_texts(trained, group)
        x = _prepare(trained, raw, f"{kind}s", names)
        for row, i in enumerate(indices):
            read[i] = (x[row : row + 1], names[row : row + 1])
    for i, (path, kind) in enumerate(zip(paths, kinds, strict=True)):
        if kind in ("csv", "npz"):
            x, names = _read_csv(trained, path) if kind == "csv" else _read_npz(path)
            read[i] = (_prepare(trained, x, str(path), names), names)
    return [read[i] for i in range(len(paths))]


# === Predicting ==============================================================


def _probabilities(outputs: np.ndarray, from_logits: bool) -> np.ndarray:
    if outputs.shape[-1] == 1:  # one sigmoid unit (or logit): P(class 1)
        p1 = 1.0 / (1.0 + np.exp(-outputs[:, 0])) if from_logits else outputs[:, 0]
        return np.stack([1.0 - p1, p1], axis=1)
    if from_logits:
        shifted = outputs - outputs.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        return e / e.sum(axis=1, keepdims=True)
    return outputs


def predict_run(path: Path, inputs: list[Path]) -> Iterator[dict[str, Any]]:
    """One result per example of `inputs`, in the order the files were given."""
    from bigmodel_cli.tfenv import import_tensorflow

    import_tensorflow()
    from bigmodel_cli.config import defaults

    trained = open_run(path, recorded_data=True)
    spec = trained.spec
    if spec.task == "language_model":
        raise UserError(f"{path}: a language model; use `bigmodel generate {path} --prompt TEXT`")
    if not inputs:
        raise UserError("give at least one INPUT file")
    chunks = read_inputs(trained, inputs)  # every input checked before the model loads
    x = np.concatenate([chunk for chunk, _ in chunks])  # one predict call, in input order
    labels = [label for _, chunk_labels in chunks for label in chunk_labels]
    if not labels:
        return
    model, _ = trained.load_model()
    loss = defaults.effective_loss(trained.cfg, spec)
    names = list(spec.class_names or [str(c) for c in range(spec.num_classes or 2)])
    outputs = np.asarray(model.predict(x, batch_size=BATCH, verbose=0), np.float64)
    if spec.task == "regression":
        for label, row in zip(labels, outputs, strict=True):
            value = [float(v) for v in row.ravel()]
            yield {"input": label, "value": value[0] if len(value) == 1 else value}
        return
    probabilities = _probabilities(outputs, loss.from_logits)
    for label, p in zip(labels, probabilities, strict=True):
        best = int(np.argmax(p))
        yield {
            "input": label,
            "class": names[best] if best < len(names) else str(best),
            "probabilities": {
                (names[i] if i < len(names) else str(i)): round(float(v), 6)
                for i, v in enumerate(p)
            },
        }

"""`bigmodel predict RUN_DIR INPUT...`: a trained run's model on new files, one JSON
object per example.

Inputs are read by their extension, and prepared exactly as the run's training data was
(the same decoding and resizing, the training split's normalization statistics and
vocabulary, the same layout):
- images (`.png .jpg .jpeg .gif .bmp`), for runs trained on images;
- text files (`.txt`), one example per file, for `text_dir` runs;
- `.csv` with a header row, one example per row: a run trained on a csv takes its
  feature columns by name (other columns, like the target, are ignored); any other run
  takes every column, which must then be numbers, as many as one example has values;
- `.npz` holding `x` (or `x_test`): one example per row, in the data's native shape.

Each line: `{"input": ..., "class": ..., "probabilities": {...}}` for classifiers, or
`{"input": ..., "value": ...}` (a list when there are several targets) for regression.
"""

from __future__ import annotations

import csv
import math
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bigmodel_cli import config_load, run_dir
from bigmodel_cli.config import Config
from bigmodel_cli.errors import DataError, UserError
from bigmodel_cli.spec import DataSpec

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp")
BATCH = 256


@dataclass
class TrainedRun:
    """What predicting needs from a finished run directory."""

    run: run_dir.RunDir
    cfg: Config
    spec: DataSpec
    normalization: dict | None
    vocabulary: dict | None


def open_run(path: Path) -> TrainedRun:
    run = run_dir.RunDir(path)
    if not run_dir.is_run_dir(path):
        raise UserError(f"{path}: not a run directory (no {run_dir.CONFIG})")
    if not run.summary.is_file():
        raise UserError(f"{path}: no {run_dir.SUMMARY}; did training finish?")
    cfg = config_load.config_from_mapping(config_load.read_yaml_mapping(run.config))
    data = run_dir.read_json(run.summary).get("data") or {}
    try:
        raw = dict(data["spec"])
    except (KeyError, TypeError):
        raise UserError(f"{run.summary}: has no data spec; was it written by bigmodel?") from None
    for key in ("input_shape", "class_names"):
        if raw.get(key) is not None:
            raw[key] = tuple(raw[key])
    spec = DataSpec(**raw)
    return TrainedRun(run, cfg, spec, data.get("normalization"), run_dir.read_vocabulary(run))


# === Reading inputs ==========================================================


def _native_shape(trained: TrainedRun) -> tuple[int, ...]:
    if trained.normalization:
        return tuple(trained.normalization["native_shape"])
    return tuple(trained.spec.input_shape)


def _prepare(trained: TrainedRun, x: np.ndarray, what: str) -> np.ndarray:
    """Float inputs: the training normalization, then the model's layout."""
    spec = trained.spec
    if spec.input_dtype == "int32":
        return x.astype(np.int32)
    size = math.prod(spec.input_shape)
    if x[0].size != size:
        raise DataError(
            f"{what}: an example has {x[0].size} values; the model takes {size} "
            f"(shape {list(_native_shape(trained))})"
        )
    x = x.reshape(len(x), size).astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise DataError(f"{what}: holds NaN or infinite values")
    if trained.normalization:
        from bigmodel_cli.data import Normalization

        x = Normalization.from_json(trained.normalization).apply(x)
    return x.reshape(len(x), *spec.input_shape)


def _read_csv(trained: TrainedRun, path: Path) -> tuple[np.ndarray, list[str]]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle, delimiter=trained.cfg.data.delimiter or ","))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path}: cannot read as csv ({err})") from None
    if len(rows) < 2:
        raise DataError(f"{path}: expected a header row and at least one row of values")
    header = [name.strip() for name in rows[0]]
    data = trained.cfg.data
    if data.source == "csv":
        wanted = list(data.features or [c for c in header if c != data.target])
        missing = [c for c in wanted if c not in header]
        if missing:
            raise DataError(f"{path}: no column(s) {', '.join(missing)} (the run's features)")
        columns = [header.index(c) for c in wanted]
    else:
        columns = list(range(len(header)))
    x = np.empty((len(rows) - 1, len(columns)), np.float32)
    for r, row in enumerate(rows[1:]):
        for c, col in enumerate(columns):
            try:
                x[r, c] = float(row[col])
            except (ValueError, IndexError):
                cell = row[col] if col < len(row) else ""
                raise DataError(
                    f"{path} line {r + 2}, column {header[col]!r}: {cell!r} is not a number"
                ) from None
    return x, [f"{path}:{r + 2}" for r in range(len(x))]


def _read_npz(path: Path) -> tuple[np.ndarray, list[str]]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            key = "x" if "x" in archive.files else "x_test" if "x_test" in archive.files else None
            if key is None:
                raise DataError(f"{path}: holds no array x (or x_test)")
            x = archive[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: not a readable .npz archive of numbers ({err})") from None
    if x.dtype.kind not in "biuf":
        raise DataError(f"{path}: x has dtype {x.dtype}; expected numbers")
    return x, [f"{path}[{i}]" for i in range(len(x))]


def read_inputs(trained: TrainedRun, paths: list[Path]) -> Iterator[tuple[np.ndarray, list[str]]]:
    """(prepared model inputs, a name per example), one chunk per file or group of files."""
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DataError([f"{p}: no such file" for p in missing])
    source = trained.cfg.data.source
    images = [p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES]
    texts = [p for p in paths if p.suffix.lower() == ".txt"]
    others = [p for p in paths if p not in images and p not in texts]
    unknown = [p for p in others if p.suffix.lower() not in (".csv", ".npz")]
    if unknown:
        raise DataError(
            [f"{p}: unknown input type; expected an image, .txt, .csv or .npz" for p in unknown]
        )
    if texts and source != "text_dir":
        raise DataError(f"{texts[0]}: text files need a run trained on text_dir data")
    if images:
        from bigmodel_cli.image_folder import load_images

        shape = _native_shape(trained)
        if len(shape) != 3 or shape[2] not in (1, 3, 4):
            raise DataError(f"{images[0]}: this run's model was not trained on images")
        # Decoded and resized as image_dir and tfrecord decode their images.
        x = load_images(images, trained.cfg, shape)
        yield _prepare(trained, x, "images"), [str(p) for p in images]
    if texts:
        from bigmodel_cli.text_folder import encode_texts
        from bigmodel_cli.text_tokens import vocabulary_from_json

        if trained.vocabulary is None:
            raise UserError(f"{trained.run.root}: no {run_dir.VOCABULARY}; cannot encode text")
        contents = []
        for path in texts:
            try:
                contents.append(path.read_text(encoding="utf-8", errors="replace"))
            except OSError as err:
                raise DataError(f"{path}: cannot read ({err.strerror})") from None
        ids = encode_texts(contents, vocabulary_from_json(trained.vocabulary), trained.cfg)
        yield ids.astype(np.int32), [str(p) for p in texts]
    for path in others:
        x, names = _read_csv(trained, path) if path.suffix.lower() == ".csv" else _read_npz(path)
        if len(x):
            yield _prepare(trained, x, str(path)), names


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
    """One result per example of `inputs`, in order."""
    from bigmodel_cli.tfenv import import_tensorflow

    import_tensorflow()
    from bigmodel_cli import defaults
    from bigmodel_cli.evaluation import load_run_model

    trained = open_run(path)
    spec = trained.spec
    if spec.task == "language_model":
        raise UserError(f"{path}: a language model; use `bigmodel generate {path} --prompt TEXT`")
    if not inputs:
        raise UserError("give at least one INPUT file")
    chunks = list(read_inputs(trained, inputs))  # every input checked before the model loads
    model, _ = load_run_model(trained.run, trained.cfg, spec)
    loss = defaults.effective_loss(trained.cfg, spec)
    names = list(spec.class_names or [str(c) for c in range(spec.num_classes or 2)])
    for x, labels in chunks:
        outputs = np.asarray(model.predict(x, batch_size=BATCH, verbose=0), np.float64)
        if spec.task == "regression":
            for label, row in zip(labels, outputs, strict=True):
                value = [float(v) for v in row.ravel()]
                yield {"input": label, "value": value[0] if len(value) == 1 else value}
            continue
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

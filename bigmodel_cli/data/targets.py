"""Targets of one label per example (csv columns, npz and tfrecord labels): classes or
regression values, and the targets that are neither.

**Classification or regression**: when the config names a `loss`, the loss decides (a
cross-entropy loss means classes). Otherwise the target is classification when it is not
numeric, or when every value is an integer and there are at most 50 distinct values;
anything else is regression. Class labels are mapped to 0..K-1 in sorted order (numbers
by value, strings alphabetically), and `class_names` keeps the original labels. Numeric
class labels must be integers from 0 to 2**53 (float64 holds them exactly).

A missing target is an error whatever the task: NaN or infinite values (numbers, or
cells such as 'nan', 'inf', '1e999'), and markers such as 'NA' or 'null' in a column whose
other cells are numbers; so are regression targets beyond float32's range. No TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bigmodel_cli.config import Config
from bigmodel_cli.data.limits import FLOAT32_MAX, MAX_CLASS_LABEL, capped
from bigmodel_cli.errors import DataError

MAX_INFERRED_CLASSES = 50


def encode_target(
    values: np.ndarray, cfg: Config, where: Callable[[int], str], origin: str
) -> tuple[str, np.ndarray, tuple[str, ...] | None]:
    """(task, y, class_names) for one label per example; see the module docstring.

    `values` is numeric, or strings (csv cells, npz string arrays); `where(i)` names
    example i in errors, `origin` names the whole column. A missing or infinite target
    is an error whatever the task: it is neither a class nor a number to fit.
    """
    missing = _missing_targets(values)
    if len(missing):
        raise DataError(
            capped(
                f"{where(i)}: target {str(values[i])!r} is missing or infinite; every example "
                "needs a target: fill or remove these examples"
                for i in missing
            )
        )
    numeric = _as_numbers(values)
    if cfg.loss is not None:
        classify = cfg.loss.is_classification
    else:
        classify = numeric is None or (
            bool(np.all(numeric == np.round(numeric)))
            and len(np.unique(numeric)) <= MAX_INFERRED_CLASSES
        )
    if not classify:
        return "regression", _regression_target(values, numeric, cfg, where), None
    if numeric is not None:
        bad = np.flatnonzero(
            (numeric < 0) | (numeric != np.round(numeric)) | (numeric > MAX_CLASS_LABEL)
        )
        if len(bad):
            problems = capped(
                f"{where(i)}: class labels must be integers >= 0 and <= 2**53; received "
                f"{str(values[i])!r}"
                for i in bad
            )
            hint = f"{origin}: if this is a numeric target, set `loss: mse` (regression)"
            raise DataError([*problems, hint])
        labels, y = np.unique(numeric.astype(np.int64), return_inverse=True)
        names = tuple(str(v) for v in labels)
    else:
        labels, y = np.unique(np.asarray(values).astype(str), return_inverse=True)
        names = tuple(str(v) for v in labels)
    if len(names) < 2:
        found = f"only one class ({names[0]!r})" if names else "no labels"
        raise DataError(f"{origin}: {found}; classification needs two or more classes")
    return "classification", y.astype(np.int64).reshape(-1), names


# Cells meaning "no value" in an otherwise numeric column (pandas' usual markers).
MISSING_MARKERS = {"na", "n/a", "nan", "-nan", "null", "none", "#n/a", "<na>", "?"}


def _missing_targets(values: np.ndarray) -> np.ndarray:
    """Indices of targets that are NaN or infinite (numbers, or cells such as 'nan',
    'inf', '1e999'), and of missing-value markers ('NA', 'null', ...) in a column whose
    other cells are all numbers."""
    if values.dtype.kind in "biu":
        return np.zeros(0, dtype=np.int64)
    if values.dtype.kind == "f":
        return np.flatnonzero(~np.isfinite(values))
    numbers = [_number(v) for v in values]
    bad = [i for i, v in enumerate(numbers) if v is not None and not np.isfinite(v)]
    markers = [i for i, v in enumerate(numbers) if v is None and _is_marker(values[i])]
    if markers and len(markers) == sum(v is None for v in numbers):  # the rest are numbers
        bad = sorted(bad + markers)
    return np.asarray(bad, dtype=np.int64)


def _is_marker(value) -> bool:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return text.strip().lower() in MISSING_MARKERS


def _number(text) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _regression_target(values, numeric, cfg: Config, where) -> np.ndarray:
    """Regression targets as float32 (n, 1): every value a number float32 can hold."""
    if numeric is None:
        bad = [i for i, v in enumerate(values) if finite_number(v) is None]
        loss = cfg.loss.name if cfg.loss else "a regression loss"
        raise DataError(
            capped(
                f"{where(i)}: {str(values[i])!r} is not a number ({loss} needs numbers)"
                for i in bad
            )
        )
    too_large = np.flatnonzero(np.abs(numeric) > FLOAT32_MAX)
    if len(too_large):
        raise DataError(
            capped(
                f"{where(i)}: target {str(values[i])!r} is beyond float32's range (+-3.4e38)"
                for i in too_large
            )
        )
    return numeric.astype(np.float32).reshape(-1, 1)


def finite_number(text) -> float | None:
    value = _number(text)
    return value if value is not None and np.isfinite(value) else None


def _as_numbers(values: np.ndarray) -> np.ndarray | None:
    """Finite float64 values, or None when any value is not a finite number."""
    if values.dtype.kind in "biuf":
        numbers = values.astype(np.float64)
        return numbers if np.all(np.isfinite(numbers)) else None
    numbers = [finite_number(v) for v in values]
    return None if any(v is None for v in numbers) else np.asarray(numbers, dtype=np.float64)

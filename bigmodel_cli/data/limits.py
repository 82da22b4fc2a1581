"""Bounds on what a data file can make bigmodel allocate, and on the values it may hold.

Checked by every reader before it allocates: a small file must not expand past the
memory available (an image header declaring 23000 x 23000 pixels, an npz header
declaring a 4 GB array, token ids that size an embedding), and a value the model cannot
hold (NaN, infinity, beyond float32) is an error naming where it is, not a NaN loss
after the run directory exists. No TensorFlow import.
"""

from __future__ import annotations

import math
import os

import numpy as np

from bigmodel_cli.errors import DataError

FLOAT32_MAX = float(np.finfo(np.float32).max)  # 3.4e38: larger values become inf
# Class labels are read as float64 numbers: past 2**53 two labels can become one.
MAX_CLASS_LABEL = 2**53
# Token ids size the embedding (and a language model's output layer): an inferred
# vocabulary of more ids than this is refused; a transformer's model.vocab_size may set
# a larger one explicitly, for the memory estimate to check.
MAX_INFERRED_VOCAB = 1 << 20
MAX_PROBLEMS = 20  # report this many bad values, then a count: enough to see the pattern
# Of the memory available, what data may take: the rest is the model's, TensorFlow's
# and the system's.
MEMORY_SHARE = 0.8


def available_memory() -> int | None:
    """Bytes the kernel says can be allocated without swapping (MemAvailable), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def size_text(count: float) -> str:
    """Bytes for a message: GiB, or MiB under one GiB (0.0 GiB says nothing)."""
    if count >= 2**30:
        return f"{count / 2**30:,.1f} GiB"
    return f"{count / 2**20:,.1f} MiB"


def check_memory(needed: int, what: str, fix: str, available: int | None = None) -> None:
    """Refuse (exit 2) `what`, needing `needed` bytes, when over the data's share of the
    memory available; `fix` says what to do instead."""
    available = available_memory() if available is None else available
    if available is not None and needed > MEMORY_SHARE * available:
        raise DataError(
            f"{what} needs about {size_text(needed)} in memory; {size_text(available)} "
            f"are available. {fix}"
        )


CHUNK = 1 << 20  # values checked at a time: the temporaries stay a few MB


def _bad_mask(chunk: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        return ~np.isfinite(chunk) | (np.abs(chunk) > FLOAT32_MAX)


def beyond_float32(values: np.ndarray, limit: int) -> tuple[int, np.ndarray]:
    """(how many values a float32 model input cannot hold: NaN, +-inf, |v| > 3.4e38;
    the flat indices of the first `limit` of them). Integers always fit."""
    if values.dtype.kind != "f" or values.size == 0:
        return 0, np.zeros(0, dtype=np.int64)
    flat = values.reshape(-1)
    count, first = 0, []
    for start in range(0, flat.size, CHUNK):
        bad = np.flatnonzero(_bad_mask(flat[start : start + CHUNK]))
        count += len(bad)
        if len(first) < limit:
            first.extend(int(i) + start for i in bad[: limit - len(first)])
    return count, np.asarray(first, dtype=np.int64)


def value_problem(value: float) -> str:
    """Why one number cannot be a model input."""
    if np.isnan(value):
        return "NaN (a missing value?)"
    if np.isinf(value):
        return f"{value} (infinite)"
    return f"{value:g} is beyond float32's range (+-3.4e38)"


def array_value_problems(values: np.ndarray, where: str, limit: int) -> list[str]:
    """One line per value a float32 input cannot hold (the first `limit`, then a
    count), each with its index: `where[i, j]: NaN ...`."""
    count, first = beyond_float32(values, limit)
    problems = []
    for flat_index in first:
        index = np.unravel_index(flat_index, values.shape)
        label = ", ".join(str(int(i)) for i in index)
        problems.append(f"{where}[{label}]: {value_problem(float(values[index]))}")
    if count > limit:
        problems.append(f"... and {count - limit:,} more values like these in {where}")
    return problems


def fits_float32(value: float) -> bool:
    return math.isfinite(value) and abs(value) <= FLOAT32_MAX  # math: 10x numpy on scalars


def capped(problems) -> list[str]:
    problems = list(problems)
    if len(problems) > MAX_PROBLEMS:
        extra = len(problems) - MAX_PROBLEMS
        problems = problems[:MAX_PROBLEMS] + [f"... and {extra} more like these"]
    return problems

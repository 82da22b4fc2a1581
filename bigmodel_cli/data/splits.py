"""Splits: which examples train, which are held out for validation and for the test.

Deterministic given `seed`: the examples are shuffled with `np.random.default_rng(seed)`,
`limit` keeps the first N, then `test_split` and `validation_split` of them (rounded half
up) are held out and the rest trains. Classification splits are stratified: each class
contributes in proportion to its size (largest remainder), so every split keeps the class
balance, and a class too small to appear everywhere simply lands where the remainders
put it.

A reader may bring splits of its own: an npz file's test set (`RawData.test`), or every
split (`RawData.dealt`, text_corpus); `data.limit` then keeps each split's share.
"""

from __future__ import annotations

import math

import numpy as np

from bigmodel_cli.config import Config
from bigmodel_cli.errors import DataError
from bigmodel_cli.spec import Arrays


def round_half_up(value: float) -> int:
    return math.floor(value + 0.5)  # half up: Python's round(2.5) == 2 would surprise


def split_indices(
    n: int,
    labels: np.ndarray | None,
    validation_split: float,
    test_split: float,
    seed: int,
    limit: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded (train, validation, test) indices; stratified when `labels` are given."""
    order = np.random.default_rng(seed).permutation(n)[:limit]
    m = len(order)
    n_test, n_val = round_half_up(m * test_split), round_half_up(m * validation_split)
    problems = [
        f"data.{key}: {frac:g} of {m} examples rounds to 0 examples; raise {key}, use more "
        f"data{' (data.limit)' if limit else ''}, or set it to 0"
        for key, frac, count in (("test_split", test_split, n_test),
                                 ("validation_split", validation_split, n_val))
        if frac > 0 and count == 0
    ]  # fmt: skip
    if not problems and m - n_test - n_val < 1:
        problems.append(
            f"data: {m} examples leave none for training after validation_split="
            f"{validation_split:g} and test_split={test_split:g}; use more data or smaller splits"
        )
    if problems:
        raise DataError(problems)
    if labels is None:
        return order[n_test + n_val :], order[n_test : n_test + n_val], order[:n_test]
    _, cls = np.unique(labels[order], return_inverse=True)
    counts = np.bincount(cls)
    to_test = _allocate(counts, n_test)
    to_val = _allocate(counts - to_test, n_val)
    # rank[i]: how many earlier examples (in shuffled order) share example i's class.
    by_class = np.argsort(cls, kind="stable")
    rank = np.empty(m, dtype=np.int64)
    rank[by_class] = np.arange(m) - np.repeat(np.cumsum(counts) - counts, counts)
    test_end = to_test[cls]
    val_end = test_end + to_val[cls]
    return (
        order[rank >= val_end],
        order[(rank >= test_end) & (rank < val_end)],
        order[rank < test_end],
    )


def _allocate(counts: np.ndarray, total: int) -> np.ndarray:
    """Share `total` among classes in proportion to `counts` (largest remainder)."""
    if total == 0:
        return np.zeros_like(counts)
    share = counts * total / counts.sum()
    base = np.floor(share).astype(np.int64)
    # Biggest remainder first, then the bigger class; sum(remainders) == leftover.
    top = np.lexsort((-counts, -(share - base)))[: total - base.sum()]
    base[top] += 1
    return base


def file_test_split(test: tuple[np.ndarray, np.ndarray], cfg: Config) -> Arrays:
    """A file's own test set, `data.limit` of it kept (a seeded choice)."""
    x, y = test
    if not len(x):
        raise DataError(f"data.path: {cfg.data.path}: x_test has no examples")
    if cfg.data.limit and cfg.data.limit < len(x):
        keep = np.random.default_rng(cfg.seed).permutation(len(x))[: cfg.data.limit]
        x, y = x[keep], y[keep]
    return Arrays(x, y)


def limit_dealt(dealt: dict[str, Arrays], cfg: Config) -> tuple[dict[str, Arrays], list[str]]:
    """Splits a reader dealt itself, with `data.limit` applied, and the note saying so.

    As for other sources, the limit counts every split's examples; the held-out portions
    keep their share (at least one sequence each).
    """
    total = sum(len(part) for part in dealt.values())
    if not cfg.data.limit or cfg.data.limit >= total:
        return dealt, []
    shares = {"test": cfg.data.test_split, "validation": cfg.data.validation_split}
    keep = {k: max(1, round_half_up(cfg.data.limit * f)) for k, f in shares.items()}
    keep["train"] = max(1, cfg.data.limit - keep["test"] - keep["validation"])
    limited = {k: part.head(keep[k]) for k, part in dealt.items()}
    return limited, [f"data.limit: using {cfg.data.limit} of {total} sequences"]

"""Small, pure helpers for the bench: medians, paired ratios, target verdicts."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def paired_ratios(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """a[i] / b[i] for runs made back to back: pairing cancels slow drift of the machine
    (other load, heat) that a ratio of two medians would keep."""
    if len(a) != len(b):
        raise ValueError(f"paired_ratios: {len(a)} values against {len(b)}")
    return [x / y for x, y in zip(a, b, strict=True) if y]


def median_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    return median(paired_ratios(a, b))


def steady_rate(rates: Sequence[float]) -> float:
    """The mean of per-epoch rates past the first epoch, which also traces the graph
    (the one epoch's rate when there is only one)."""
    return float(statistics.mean(rates[1:] or rates))


def meets(value: float, target: float, higher_is_better: bool = True) -> bool:
    return value >= target if higher_is_better else value <= target


def alternating(order: Sequence[str], repetitions: int) -> list[list[str]]:
    """The run order of each repetition: forward, reversed, forward, ... (A B, B A, A B),
    so neither side always runs first on a warming or cooling machine."""
    return [list(order) if rep % 2 == 0 else list(reversed(order)) for rep in range(repetitions)]

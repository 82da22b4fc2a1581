"""Normalization (`data.normalize`, float inputs only): mean and std of the training
split over every axis but the last of the native shape, i.e. per feature (tabular,
sequences) or per channel (images); a std of 0 becomes 1.

The statistics are in `bundle.normalization` (a `Normalization`, JSON via `describe`),
so evaluate/predict can apply the training run's statistics to new data
(`load_data(..., normalization=...)`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bigmodel_cli.errors import DataError
from bigmodel_cli.spec import Arrays, DataBundle

FLOAT_KINDS = ("tabular", "image", "sequence", "volume")


@dataclass(frozen=True)
class Normalization:
    """Training-split mean and std over the last axis of the native example shape.

    `apply` accepts examples in any layout with the same number of values (flat for an
    MLP, (H, W*C) for an RNN, ...): it views them in `native_shape` to normalize.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    native_shape: tuple[int, ...]
    per: str  # "feature" or "channel", for people reading environment.json

    def apply(self, x: np.ndarray) -> np.ndarray:
        native = x.reshape(len(x), *self.native_shape).astype(np.float32)
        mean, std = np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32)
        return ((native - mean) / std).reshape(x.shape)

    def to_json(self) -> dict:
        return {
            "per": self.per,
            "native_shape": list(self.native_shape),
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_json(cls, data: dict) -> Normalization:
        return cls(
            tuple(data["mean"]), tuple(data["std"]), tuple(data["native_shape"]), data["per"]
        )


def bundle_normalization(bundle: DataBundle) -> Normalization | None:
    """The statistics `load_data` normalized with, or None."""
    return Normalization.from_json(bundle.normalization) if bundle.normalization else None


def fit_normalization(x: np.ndarray, kind: str) -> Normalization:
    """Mean/std over all axes but the last (per feature or per channel); std 0 -> 1."""
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axis=axes, dtype=np.float64)
    std = x.std(axis=axes, dtype=np.float64)
    std[std == 0] = 1.0  # a constant feature carries no signal; leave it at 0 after centring
    per = "channel" if kind in ("image", "volume") else "feature"
    return Normalization(
        tuple(float(v) for v in mean), tuple(float(v) for v in std), tuple(x.shape[1:]), per
    )


def normalize_splits(
    splits: dict[str, Arrays | None],
    kind: str,
    native_shape: tuple[int, ...],
    given: Normalization | None,
) -> tuple[Normalization, str]:
    """Standardize every split in place with `given` statistics or the training split's;
    the statistics used and a note saying what was done."""
    stats = given or fit_normalization(splits["train"].x, kind)
    if stats.native_shape != native_shape:
        raise DataError(
            f"data: the given normalization statistics are for examples of shape "
            f"{stats.native_shape}; this data's are {native_shape}"
        )
    for part in splits.values():
        if part is not None:
            part.x = stats.apply(part.x)
    count = len(stats.mean)
    origin = "the given" if given else "the training split's"
    note = (
        f"inputs standardized per {stats.per} ({count} {stats.per}{'s' * (count > 1)}) "
        f"with {origin} mean and std; see normalization"
    )
    return stats, note

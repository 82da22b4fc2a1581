"""The `tune:` section: what `bigmodel tune` searches, how, and for which metric.

Only the section's own shape is checked here (one kind of range per key, ranges in
order, the grid sampler given finite ranges). Whether every searched key and value is
one the rest of the config accepts is checked against the whole schema by
`bigmodel_cli.experiments.space` before the first trial. Self-contained: it imports only
the schema's base, so the section can move with the other config modules.
"""

from __future__ import annotations

import difflib
import json
import math
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from bigmodel_cli.config.base import ConfigKeyError, PositiveInt, Section

RANGE_KINDS = ("uniform", "log_uniform", "integer", "choice")
MAX_CHOICES = 1000
MAX_GRID = 100_000  # combinations of a grid search


class SearchRange(Section):
    """The values one searched key may take: exactly one of the four kinds."""

    uniform: list[float] | None = Field(
        None, min_length=2, max_length=2, description="[low, high]: any number between."
    )
    log_uniform: list[float] | None = Field(
        None,
        min_length=2,
        max_length=2,
        description="[low, high], both above 0: evenly on a log scale (learning rates).",
    )
    integer: list[int] | None = Field(
        None,
        min_length=2,
        max_length=2,
        description="[low, high]: a whole number from low to high, both included.",
    )
    choice: list[Any] | None = Field(
        None,
        min_length=1,
        max_length=MAX_CHOICES,
        description="One of these values (numbers, strings, lists such as [128, 64], ...).",
    )

    @property
    def kind(self) -> str:
        return next(kind for kind in RANGE_KINDS if getattr(self, kind) is not None)

    @property
    def bounds(self) -> list[Any]:
        return list(getattr(self, self.kind))

    @model_validator(mode="after")
    def _one_kind_in_order(self) -> SearchRange:
        given = [kind for kind in RANGE_KINDS if getattr(self, kind) is not None]
        if len(given) != 1:
            raise ValueError(
                f"expected exactly one of {', '.join(RANGE_KINDS)}; received "
                f"{', '.join(given) or 'none'}"
            )
        kind = given[0]
        if kind == "choice":
            texts = [json.dumps(value, sort_keys=True) for value in self.choice]
            repeated = sorted({t for t in texts if texts.count(t) > 1})
            if repeated:
                raise ConfigKeyError("choice", f"repeats {', '.join(repeated)}; list each once")
            return self
        low, high = getattr(self, kind)
        if not low < high:
            raise ConfigKeyError(
                kind, f"low ({low}) must be below high ({high}); for one fixed value use --set"
            )
        if kind == "log_uniform" and low <= 0:
            raise ConfigKeyError(kind, f"low ({low}) must be above 0 on a log scale")
        return self

    def grid_size(self) -> int | None:
        """How many values a grid search tries (None: a continuous range)."""
        if self.choice is not None:
            return len(self.choice)
        if self.integer is not None:
            return self.integer[1] - self.integer[0] + 1
        return None


class TuneConfig(Section):
    """A hyperparameter search (`bigmodel tune`); `bigmodel train` ignores it."""

    trials: PositiveInt = Field(
        20,
        le=100_000,
        description="Trials in all; a resumed search counts those it already ran "
        "(`--trials` replaces it).",
    )
    metric: str = Field(
        "val_loss",
        min_length=1,
        description="What the search optimizes: a column of metrics.csv (val_accuracy, "
        "val_loss, ...). A trial's value is its best epoch's.",
    )
    direction: Literal["auto", "minimize", "maximize"] = Field(
        "auto",
        description="auto: minimize losses and errors (loss, mae, mse, rmse, perplexity), "
        "maximize the others, as early stopping does.",
    )
    sampler: Literal["tpe", "random", "grid"] = Field(
        "tpe",
        description="How values are proposed (seeded by `seed`): tpe (Optuna's "
        "Tree-structured Parzen Estimator), random, or grid (every combination; "
        "`choice` and `integer` ranges only).",
    )
    pruner: Literal["median", "none"] = Field(
        "median",
        description="median: stop a trial whose epoch value is worse than the median of "
        "earlier trials at the same epoch (Optuna's MedianPruner with its defaults: never "
        "in the first 5 trials); none: every trial runs its epochs.",
    )
    space: dict[str, SearchRange] = Field(
        min_length=1,
        description="Dotted config keys and their ranges: {uniform: [low, high]}, "
        "{log_uniform: [low, high]}, {integer: [low, high]} or {choice: [values]}.",
    )

    @field_validator("space", mode="before")
    @classmethod
    def _known_range_kinds(cls, space: Any) -> Any:
        """Name the searched key and the kinds a range may have: pydantic alone would
        locate an unknown kind inside a mapping of free keys without saying what fits."""
        if not isinstance(space, dict):
            return space
        problems = []
        for key, value in space.items():
            if not isinstance(value, dict):
                continue  # pydantic says what it expected
            for kind in value:
                if kind not in RANGE_KINDS:
                    close = difflib.get_close_matches(str(kind), RANGE_KINDS, n=1)
                    hint = f" Did you mean {close[0]!r}?" if close else ""
                    problems.append(
                        (
                            key,
                            f"unknown range {kind!r}.{hint} Expected one of: "
                            f"{', '.join(RANGE_KINDS)}",
                        )
                    )
        if problems:
            raise ConfigKeyError.collect(problems)
        return space

    @model_validator(mode="after")
    def _grid_is_finite(self) -> TuneConfig:
        if self.sampler != "grid":
            return self
        problems = [
            (
                f"space.{key}",
                f"sampler grid takes choice and integer ranges; {bounds.kind} is continuous",
            )
            for key, bounds in self.space.items()
            if bounds.grid_size() is None
        ]
        if problems:
            raise ConfigKeyError.collect(problems)
        size = math.prod(bounds.grid_size() for bounds in self.space.values())
        if size > MAX_GRID:
            raise ConfigKeyError(
                "space", f"{size:,} grid combinations; at most {MAX_GRID:,} (use tpe or random)"
            )
        return self

    def grid_size(self) -> int | None:
        if self.sampler != "grid":
            return None
        return math.prod(bounds.grid_size() for bounds in self.space.values())

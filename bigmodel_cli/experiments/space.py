"""The search space: each `tune.space` key as one dimension Optuna samples.

Every key is checked against the whole config schema before the first trial: each end
of a range and each choice is applied to the config as `--set KEY=VALUE` would apply
it, and the config validated, so an unknown key, a value outside the key's own bounds
or a choice that does not validate is exit 2 naming `tune.space.KEY`, like any config
mistake. Each value is checked with the rest of the config as written; a combination
that only fails once the model is built (a pool larger than its map) is a failed trial.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bigmodel_cli.config import SearchRange, TuneConfig
from bigmodel_cli.config import load as config_load
from bigmodel_cli.errors import ConfigError

# Sections a trial cannot change: the search itself, and where its trials are written.
NOT_SEARCHABLE = {
    "tune": "the search cannot search itself",
    "base": "`base` is resolved when the file is read",
    "output": "every trial is written inside the tune directory",
}
# What Optuna can store as a categorical value; other choices (lists, mappings) are
# stored as their JSON text and decoded back.
PRIMITIVES = (type(None), bool, int, float, str)


@dataclass(frozen=True)
class Dimension:
    """One searched key and the values it may take."""

    key: str
    bounds: SearchRange

    @property
    def kind(self) -> str:
        return self.bounds.kind

    def _encoded(self) -> list[Any]:
        choices = self.bounds.choice or []
        if all(isinstance(value, PRIMITIVES) for value in choices):
            return list(choices)
        return [json.dumps(value) for value in choices]

    def suggest(self, trial: Any) -> Any:
        """The value `trial` (an optuna.Trial) proposes for this key."""
        if self.kind == "choice":
            return self.decode(trial.suggest_categorical(self.key, self._encoded()))
        low, high = self.bounds.bounds
        if self.kind == "integer":
            return trial.suggest_int(self.key, low, high)
        return trial.suggest_float(self.key, low, high, log=self.kind == "log_uniform")

    def decode(self, stored: Any) -> Any:
        """The config value of what Optuna stored (a choice's JSON text, or the value)."""
        if self.kind != "choice":
            return stored
        # By JSON text: 1 == True in Python, and both may be choices.
        texts = [json.dumps(value) for value in self._encoded()]
        return self.bounds.choice[texts.index(json.dumps(stored))]

    def grid_values(self) -> list[Any]:
        if self.kind == "integer":
            low, high = self.bounds.bounds
            return list(range(low, high + 1))
        return self._encoded()

    def probes(self) -> list[tuple[str, Any]]:
        """The values checked before the first trial, each with how to name it."""
        if self.kind == "choice":
            return [(f"choice {i + 1}", value) for i, value in enumerate(self.bounds.choice)]
        low, high = self.bounds.bounds
        return [(f"{self.kind} low end", low), (f"{self.kind} high end", high)]

    def override(self, value: Any) -> str:
        """`KEY=VALUE` as `--set` takes it (JSON is YAML)."""
        return f"{self.key}={json.dumps(value)}"


def dimensions(tune: TuneConfig) -> list[Dimension]:
    return [Dimension(key, bounds) for key, bounds in tune.space.items()]


def shown(value: Any) -> Any:
    """A value as a table cell or a TensorBoard hparam: numbers, strings, booleans as
    they are, anything else as its JSON text."""
    return value if isinstance(value, (bool, int, float, str)) else json.dumps(value)


def overrides(dims: list[Dimension], values: dict[str, Any]) -> list[str]:
    return [dim.override(values[dim.key]) for dim in dims]


def check(document: dict[str, Any], dims: list[Dimension]) -> None:
    """Raise a ConfigError with every searched value the config would refuse.

    `document` is the resolved config without its `tune:` section.
    """
    problems: list[str] = []
    for dim in dims:
        head = dim.key.split(".")[0]
        if head in NOT_SEARCHABLE:
            problems.append(f"tune.space.{dim.key}: cannot be searched; {NOT_SEARCHABLE[head]}")
            continue
        refused: dict[str, list[str]] = {}  # problem -> the probes that hit it
        for role, value in dim.probes():
            for problem in _problems_with(document, dim, value):
                refused.setdefault(problem, []).append(f"{role} {json.dumps(value)}")
        for problem, roles in refused.items():
            where = "" if len(roles) == len(dim.probes()) > 1 else f" ({', '.join(roles)})"
            problems.append(f"tune.space.{dim.key}: {problem}{where}")
    if problems:
        raise ConfigError(problems)


def _problems_with(document: dict[str, Any], dim: Dimension, value: Any) -> list[str]:
    try:
        trial = config_load.apply_overrides(document, [dim.override(value)])
        config_load.config_from_mapping(trial)
    except ConfigError as err:
        return [_without_key(problem, dim.key) for problem in err.problems]
    return []


def _without_key(problem: str, key: str) -> str:
    """`optimizer.learning_rate: input should be ...` -> `input should be ...` when the
    problem is about the searched key itself (the line names it already)."""
    for prefix in (f"{key}: ", f"--set {key}: "):
        if problem.startswith(prefix):
            return problem[len(prefix) :]
    return problem

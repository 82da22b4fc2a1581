"""`bigmodel compare`: the config keys that differ between runs, and their metrics side by
side (status, epochs, the last epoch's train and validation metrics, the test score).

Runs still training, interrupted or failed are compared on what they logged so far.
No TensorFlow import.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bigmodel_cli import run_dir
from bigmodel_cli.errors import UserError
from bigmodel_cli.experiments import runs as runs_lib

MISSING = "-"
EPOCH_COLUMNS = {"epoch", "lr", "seconds", "examples_per_second", "mfu"}


def flatten(document: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys to values; lists (of layers, conv blocks, units) stay whole values."""
    flat: dict[str, Any] = {}
    for key, value in document.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def column_names(paths: list[Path]) -> list[str]:
    """The shortest path endings that tell the runs apart (trial-003, 20260101-120000)."""
    parts = [p.resolve().parts for p in paths]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]


def _read(path: Path) -> dict[str, Any]:
    config = runs_lib.read_yaml(path / run_dir.CONFIG)
    if config is None:
        raise UserError(f"{path}: not a run directory (no readable {run_dir.CONFIG})")
    summary = runs_lib.read_json(path / run_dir.SUMMARY) or {}
    rows = runs_lib.read_rows(path / run_dir.METRICS)
    final = {k: v for k, v in (rows[-1] if rows else {}).items() if k not in EPOCH_COLUMNS}
    completed = summary.get("status") == "completed"
    test = summary.get("test") if completed else None
    return {
        "config": flatten(config),
        "status": runs_lib.status_of(path, summary),
        "epochs": len(rows),
        "final": final,
        "test": {k: float(v) for k, v in (test or {}).items() if isinstance(v, (int, float))},
    }


def compare(paths: list[Path]) -> dict[str, Any]:
    """Configs and metrics of `paths`, each as {name: [one value per run]}."""
    if len(paths) < 2:
        raise UserError("compare: give at least two run directories")
    problems, read = [], []
    for path in paths:
        try:
            read.append(_read(path))
        except UserError as err:
            problems.extend(err.problems)
    if problems:
        raise UserError(problems)
    keys = sorted({key for r in read for key in r["config"]})
    differ = {}
    for key in keys:
        values = [r["config"].get(key, MISSING) for r in read]
        if len({json.dumps(v, sort_keys=True) for v in values}) > 1:
            differ[key] = values
    metrics: dict[str, list[Any]] = {
        "status": [r["status"] for r in read],
        "epochs": [r["epochs"] for r in read],
    }
    for group in ("final", "test"):
        for name in sorted({n for r in read for n in r[group]}):
            metrics[f"{group} {name}"] = [r[group].get(name, MISSING) for r in read]
    return {
        "runs": [str(p) for p in paths],
        "names": column_names(paths),
        "config": differ,
        "metrics": metrics,
    }


def tables(result: dict[str, Any]) -> list[tuple[str, list[str], list[tuple[Any, ...]]]]:
    """(title, columns, rows) of the two tables `bigmodel compare` prints."""
    names = result["names"]
    config = [(key, *map(cell, values)) for key, values in result["config"].items()]
    metrics = [(key, *values) for key, values in result["metrics"].items()]
    return [
        ("config keys that differ", ["key", *names], config or [("(none)",)]),
        ("metrics", ["", *names], metrics),
    ]


def cell(value: Any) -> str:
    """A config value as a table cell, as YAML would show it (6 significant digits)."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value if isinstance(value, str) else json.dumps(value)

"""`bigmodel runs`: every run directory under a folder, and how far each one got.

A run's status comes from its own files, in this order:
- running: its `.lock` names a live process on this host (or any process on another
  host, which cannot be checked); a lock left by a dead process does not count
- completed, failed: what summary.json says (failed: the loss became NaN/Inf)
- pruned, failed: a tune trial the search stopped or gave up on (its tune.json says so)
- interrupted: everything else, stopped before summary.json; `--resume` continues it
Files are read defensively: a half-written, damaged or growing run directory is listed
with what can be read, never a crash. No TensorFlow import.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import math
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bigmodel_cli import run_dir
from bigmodel_cli.errors import UserError
from bigmodel_cli.experiments import tune_dir
from bigmodel_cli.run_dir.lock import process_alive

COLUMNS = ["run", "status", "epochs", "best", "test", "started"]
STATUSES = ("running", "completed", "interrupted", "failed", "pruned")
SKIPPED = {run_dir.TENSORBOARD, run_dir.CHECKPOINTS}  # never hold run directories


@dataclass
class RunInfo:
    """One line of `bigmodel runs`."""

    path: str
    name: str  # relative to the folder listed
    status: str
    epochs: int
    epochs_requested: int | None
    monitor: str | None
    best: float | None  # the monitored metric's best value so far
    test: dict[str, float] = field(default_factory=dict)
    started: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


# === reading files that may be half-written ===================================


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object, or None if the file is missing, damaged or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_yaml(path: Path) -> dict[str, Any] | None:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def _number(text: Any) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def read_rows(path: Path) -> list[dict[str, float]]:
    """metrics.csv's epoch rows as numbers; cells that are not numbers are left out, and
    a file cut short (or still being written) gives the rows before the cut."""
    rows: list[dict[str, float]] = []
    with (
        contextlib.suppress(OSError, UnicodeDecodeError, csv.Error),
        open(path, encoding="utf-8", newline="") as handle,
    ):
        for row in csv.DictReader(handle):
            numbers = {k: _number(v) for k, v in row.items() if isinstance(k, str)}
            numbers = {k: v for k, v in numbers.items() if v is not None}
            if "epoch" in numbers:
                rows.append(numbers)
    return rows


# === status ===================================================================


def _lock_is_live(run: Path) -> bool:
    path = run / run_dir.LOCK
    if not path.exists():
        return False
    owner = read_json(path)
    if owner is None:
        return True  # being written this instant (training refuses such a lock too)
    pid, host = owner.get("pid"), owner.get("host")
    if host != socket.gethostname() or not isinstance(pid, int):
        return True  # another host's process cannot be checked: trust the lock
    return process_alive(pid)


def _trial_status(run: Path) -> str | None:
    """What the search recorded for this run, when it is a trial of one."""
    report = read_json(run.parent / tune_dir.REPORT) or {}
    for trial in report.get("trials") or []:
        if isinstance(trial, dict) and trial.get("run_dir") == run.name:
            return trial.get("status")
    return None


def status_of(run: Path, summary: dict[str, Any] | None) -> str:
    if _lock_is_live(run):
        return "running"
    if summary and summary.get("status") in ("completed", "failed"):
        return summary["status"]
    trial = _trial_status(run)
    return trial if trial in ("pruned", "failed") else "interrupted"


# === listing ==================================================================


def find_runs(root: Path) -> list[Path]:
    """Every run directory (a folder with config.yaml) at or under `root`."""
    found = []
    for folder, dirs, files in os.walk(root):
        if run_dir.CONFIG in files:
            found.append(Path(folder))
            dirs[:] = []  # a run directory holds no other runs
            continue
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED and not d.startswith("."))
    return found


def describe(run: Path, root: Path) -> RunInfo:
    summary = read_json(run / run_dir.SUMMARY)
    config = read_yaml(run / run_dir.CONFIG) or {}
    rows = read_rows(run / run_dir.METRICS)
    completed = bool(summary) and summary.get("status") == "completed"
    monitor, best = _monitored(summary if completed else None, rows)
    requested = (config.get("train") or {}).get("epochs") if isinstance(config, dict) else None
    started = None
    with contextlib.suppress(OSError):
        stamp = (run / run_dir.CONFIG).stat().st_mtime
        started = dt.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M")
    test = (summary or {}).get("test") if completed else None
    return RunInfo(
        path=str(run),
        name=str(run.relative_to(root)) if run != root else run.name,
        status=status_of(run, summary),
        epochs=len(rows),
        epochs_requested=requested if isinstance(requested, int) else None,
        monitor=monitor,
        best=best,
        test={k: float(v) for k, v in (test or {}).items() if _number(v) is not None},
        started=started,
    )


def _monitored(summary: dict[str, Any] | None, rows: list[dict[str, float]]):
    """(metric, best value): the run's checkpoint monitor (val_loss, or loss without a
    validation split), from summary.json once finished, from metrics.csv until then."""
    best = (summary or {}).get("best") or {}
    if best.get("monitor") and _number(best.get("value")) is not None:
        return best["monitor"], float(best["value"])
    monitor = "val_loss" if any("val_loss" in row for row in rows) else "loss"
    values = [row[monitor] for row in rows if math.isfinite(row.get(monitor, math.nan))]
    return (monitor, min(values)) if values else (None, None)


def list_runs(root: Path) -> list[RunInfo]:
    """Every run under `root`, oldest first."""
    if not root.is_dir():
        raise UserError(
            f"{root}: no such folder; give the folder holding run directories "
            "(default: runs, the default output.dir)"
        )
    runs = [describe(run, root) for run in find_runs(root)]
    return sorted(runs, key=lambda r: (r.started or "", r.name))


def test_score(test: dict[str, float]) -> tuple[str, float] | None:
    """The test metric a person looks at first: accuracy, else the first metric that is
    not the loss, else the loss."""
    if not test:
        return None
    for name in ("accuracy", *sorted(k for k in test if k != "loss"), "loss"):
        if name in test:
            return name, test[name]
    return None


def table_rows(runs: list[RunInfo]) -> list[tuple[str, ...]]:
    """Rows of the `bigmodel runs` table: run, status, epochs, the monitored metric's best
    value, the test score, when it started."""
    rows = []
    for run in runs:
        epochs = f"{run.epochs}/{run.epochs_requested}" if run.epochs_requested else str(run.epochs)
        monitored = f"{run.monitor} {run.best:.4f}" if run.monitor and run.best is not None else ""
        score = test_score(run.test)
        test = f"{score[0]} {score[1]:.4f}" if score else ""
        rows.append((run.name, run.status, epochs, monitored, test, run.started or ""))
    return rows

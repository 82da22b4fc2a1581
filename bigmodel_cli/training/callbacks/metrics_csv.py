"""metrics.csv: one whole row per epoch, written and read back.

Keras's CSVLogger writes in place; MetricsCSV appends whole rows only, so a crash or a
full disk leaves none of a row, never half, and a resumed run rewrites the rows of the
epochs it replays so that every epoch appears exactly once.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from bigmodel_cli import run_dir
from bigmodel_cli.tfenv import import_keras
from bigmodel_cli.training.callbacks.throughput import Throughput

keras = import_keras()

# Columns of metrics.csv that describe the epoch rather than the model's metrics.
EPOCH_COLUMNS = ("epoch", "lr", "seconds", "examples_per_second", "mfu")


def current_learning_rate(model: keras.Model) -> float:
    """The optimizer's learning rate now (schedules report their current value)."""
    try:
        return float(keras.backend.get_value(model.optimizer.learning_rate))
    except (AttributeError, TypeError, ValueError):
        return float("nan")


class MetricsCSV(keras.callbacks.Callback):
    """Appends one whole row per epoch to metrics.csv: epoch, metrics, lr, seconds, examples/s."""

    def __init__(self, path: Path, throughput: Throughput):
        super().__init__()
        self.path = path
        self.throughput = throughput
        self.columns: list[str] | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = dict(logs or {})
        row: dict[str, Any] = {"epoch": epoch + 1}
        row.update({k: float(v) for k, v in sorted(logs.items()) if k != "lr"})
        row["lr"] = current_learning_rate(self.model)
        row["seconds"] = round(self.throughput.epoch_seconds.get(epoch, 0.0), 4)
        row["examples_per_second"] = round(self.throughput.examples_per_second(epoch), 1)
        row["mfu"] = round(self.throughput.mfu(epoch), 5)
        if self.columns is None:
            self.columns = self._existing_columns() or list(row)
            self._drop_rows_from(epoch + 1)
        write_header = not self.path.exists() or self.path.stat().st_size == 0
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, extrasaction="ignore")
        if write_header:
            writer.writeheader()
        writer.writerow(row)
        # Whole rows only: a crash or a full disk leaves none of a row, never half.
        run_dir.append_text(self.path, buffer.getvalue())

    def _drop_rows_from(self, epoch: int) -> None:
        """A resumed run replays from its backup: forget rows of epochs it will redo, so
        every epoch appears exactly once."""
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle))
        kept = rows[:1] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) < epoch]
        if len(kept) != len(rows):
            buffer = io.StringIO()
            csv.writer(buffer).writerows(kept)
            run_dir.atomic_write_text(self.path, buffer.getvalue())

    def _existing_columns(self) -> list[str] | None:
        if not self.path.exists():
            return None
        with open(self.path, encoding="utf-8", newline="") as handle:
            header = next(csv.reader(handle), None)
        return header or None


def read_metrics_rows(path: Path) -> list[dict[str, str]]:
    """metrics.csv's rows, one per epoch, in order (empty before the first epoch)."""
    if not path.exists():
        return []
    with open(path, encoding="utf-8", newline="") as handle:
        return [row for row in csv.DictReader(handle) if row.get("epoch", "").isdigit()]


def history_of(rows: list[dict[str, str]]) -> dict[str, float]:
    """The last epoch's training and validation metrics, as fit()'s history ends."""
    if not rows:
        return {}
    return {
        key: float(value)
        for key, value in rows[-1].items()
        if key not in EPOCH_COLUMNS and value not in (None, "")
    }

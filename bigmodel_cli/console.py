"""The only module that imports rich: result output on stdout, logs on stderr.

`--json` commands print exactly one JSON object on stdout; everything else a person
reads while a command runs (progress, notes, warnings) goes to stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def use_consoles(stdout: Console, stderr: Console) -> None:
    """Swap the consoles (tests render into io.StringIO)."""
    global out, err
    out, err = stdout, stderr


def print_json(data: Any) -> None:
    # Plain print, not rich: the object must reach stdout byte for byte.
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    sys.stdout.flush()


def note(message: str) -> None:
    err.print(message, highlight=False)


def problems(lines: Iterable[str], title: str = "error") -> None:
    for line in lines:
        # Problems quote user input (keys, names, paths): `[/]` there is text, not markup.
        err.print(f"[bold red]{title}:[/] {escape(line)}", highlight=False, markup=True)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    grid = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for index, column in enumerate(columns):
        grid.add_column(column, justify="left" if index == 0 else "right")
    for row in rows:
        grid.add_row(*(format_value(v) for v in row))
    out.print(grid)


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def epoch_line(
    epoch: int,
    epochs: int,
    logs: dict[str, float],
    seconds: float,
    rate: float,
    unit: str = "ex",
    mfu: float | None = None,
) -> str:
    """`epoch 3/10  loss 0.1234  accuracy 0.9500  val_loss 0.2  2.1s  5,432 ex/s`."""
    metrics = "  ".join(f"{k} {format_value(float(v))}" for k, v in logs.items() if k != "lr")
    utilization = f"  mfu {mfu:.1%}" if mfu else ""
    return f"epoch {epoch}/{epochs}  {metrics}  {seconds:.1f}s  {rate:,.0f} {unit}/s{utilization}"


class EpochProgress:
    """Epoch and step bars with loss, examples/s and ETA on a terminal; else a line per epoch.

    The console is injected so tests can render into io.StringIO.
    """

    def __init__(
        self,
        console: Console,
        epochs: int,
        steps_per_epoch: int | None,
        live: bool | None = None,
        unit: str = "ex",
        first_step: int = 0,
    ):
        self.console = console
        self.first_step = first_step  # a run resumed mid-epoch starts its bar there
        self.epochs = epochs
        self.steps = steps_per_epoch
        self.unit = unit
        self.live = console.is_terminal if live is None else live
        self._progress: Progress | None = None
        self._epoch_task = self._step_task = None

    def start(self) -> None:
        if not self.live:
            return
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self._progress.start()
        self._epoch_task = self._progress.add_task("epochs", total=self.epochs, stats="")
        self._step_task = self._progress.add_task("steps ", total=self.steps, stats="")

    def begin_epoch(self, epoch: int) -> None:
        if self._progress:
            self._progress.reset(self._step_task, total=self.steps, stats="")
            self._progress.update(self._step_task, completed=self.first_step)
            self._progress.update(self._epoch_task, completed=epoch - 1)
        self.first_step = 0

    def update_step(self, step: int, loss: float | None, rate: float) -> None:
        if self._progress:
            stats = f"loss {loss:.4g}  {rate:,.0f} {self.unit}/s" if loss is not None else ""
            self._progress.update(self._step_task, completed=step, stats=stats)

    def end_epoch(
        self, epoch: int, logs: dict[str, float], seconds: float, rate: float, mfu: float = 0.0
    ) -> None:
        line = epoch_line(epoch, self.epochs, logs, seconds, rate, self.unit, mfu)
        if self._progress:
            self._progress.update(self._epoch_task, completed=epoch)
            self._progress.console.print(line, highlight=False, markup=False)
        else:
            self.console.print(line, highlight=False, markup=False)

    def stop(self) -> None:
        if self._progress:
            self._progress.stop()
            self._progress = None

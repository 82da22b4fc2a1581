"""`bigmodel plot`: learning curves and confusion matrices of runs, as one PNG.

One panel per metric (loss first), each run in its own colour, training solid and
validation dashed, per epoch from metrics.csv; then, for each classifier run that has
an eval.json, its confusion matrix. Drawing uses matplotlib's Agg backend through the
object API (no pyplot, no display, no global state).

plot never evaluates: that loads TensorFlow and the model and writes into the run
directory, which may still be training. A classifier without eval.json gets a note
naming the `bigmodel evaluate` command that adds its matrix. No TensorFlow import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bigmodel_cli import run_dir
from bigmodel_cli.errors import UserError
from bigmodel_cli.experiments import runs as runs_lib
from bigmodel_cli.experiments.compare import EPOCH_COLUMNS, column_names

# matplotlib's "tab10" cycle, by value: tests look for these colours in the image.
COLOURS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
PANEL_INCHES = (4.8, 3.6)
DPI = 100
MAX_COLUMNS = 3
MAX_LABELLED_CLASSES = 20  # tick labels per class up to this many
MAX_ANNOTATED_CLASSES = 12  # counts written in the cells up to this many


@dataclass
class RunCurves:
    name: str
    path: Path
    rows: list[dict[str, float]]
    evaluation: dict[str, Any] | None  # eval.json, when it has a confusion matrix
    classifier: bool


def _load(path: Path, name: str) -> RunCurves:
    if not run_dir.is_run_dir(path):
        raise UserError(f"{path}: not a run directory (no {run_dir.CONFIG})")
    rows = runs_lib.read_rows(path / run_dir.METRICS)
    if not rows:
        raise UserError(
            f"{path}: no metrics yet (metrics.csv has no epoch rows); a run has curves once "
            "it has trained an epoch"
        )
    evaluation = runs_lib.read_json(path / run_dir.EVAL)
    if evaluation is not None and not _is_matrix(evaluation.get("confusion_matrix")):
        evaluation = None  # a regression's eval.json, or one not written by bigmodel
    summary = runs_lib.read_json(path / run_dir.SUMMARY) or {}
    task = (summary.get("data") or {}).get("task")
    classifier = evaluation is not None or task == "classification"
    return RunCurves(name, path, rows, evaluation, classifier)


def _is_matrix(value: Any) -> bool:
    """A square matrix of counts, as `bigmodel evaluate` writes it."""
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(isinstance(row, list) and len(row) == len(value) for row in value)
        and all(isinstance(n, int) and not isinstance(n, bool) for row in value for n in row)
    )


def metric_names(runs: list[RunCurves]) -> list[str]:
    """Every metric logged, as its training name (val_accuracy is drawn with accuracy)."""
    names: list[str] = []
    for run in runs:
        for row in run.rows:
            for key in row:
                base = key.removeprefix("val_")
                if key not in EPOCH_COLUMNS and base not in names:
                    names.append(base)
    return sorted(names, key=lambda n: (n != "loss", names.index(n)))


def plot(paths: list[Path], out: Path, metric: str | None = None) -> dict[str, Any]:
    """Draw `paths` into the PNG `out`; returns what was drawn and notes for the user."""
    if out.suffix.lower() != ".png":
        raise UserError(f"--out {out}: plot writes PNG images; give a file name ending in .png")
    problems, runs = [], []
    for path, name in zip(paths, column_names(paths), strict=True):
        try:
            runs.append(_load(path, name))
        except UserError as err:
            problems.extend(err.problems)
    if problems:
        raise UserError(problems)
    names = metric_names(runs)
    if metric is not None:
        base = metric.removeprefix("val_")
        if base not in names:
            raise UserError(f"--metric {metric}: not logged by these runs; expected one of: "
                            f"{', '.join(names)}")  # fmt: skip
        names = [base]
    matrices = [run for run in runs if run.evaluation is not None]
    size = _draw(out, runs, names, matrices)
    notes = [
        f"{run.path}: no confusion matrix yet; run `bigmodel evaluate {run.path}` first"
        for run in runs
        if run.classifier and run.evaluation is None
    ]
    return {
        "out": str(out),
        "metrics": names,
        "confusion_matrices": [run.name for run in matrices],
        "size": size,
        "notes": notes,
    }


def _draw(out: Path, runs: list[RunCurves], names: list[str], matrices: list[RunCurves]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = len(names) + len(matrices)
    columns = min(MAX_COLUMNS, panels)
    lines = math.ceil(panels / columns)
    figure = Figure(
        figsize=(columns * PANEL_INCHES[0], lines * PANEL_INCHES[1]), dpi=DPI, layout="constrained"
    )
    FigureCanvasAgg(figure)
    axes = figure.subplots(lines, columns, squeeze=False).ravel()
    for ax, name in zip(axes, names, strict=False):
        _curves(ax, name, runs)
    for ax, run in zip(axes[len(names) :], matrices, strict=False):
        _matrix(ax, run)
    for ax in axes[panels:]:
        ax.set_visible(False)
    run_dir.atomic_write(out, lambda tmp: figure.savefig(tmp, format="png", dpi=DPI))
    width, height = figure.get_size_inches() * DPI
    return [round(width), round(height)]


def _curves(ax: Any, name: str, runs: list[RunCurves]) -> None:
    from matplotlib.ticker import MaxNLocator

    for index, run in enumerate(runs):
        colour = COLOURS[index % len(COLOURS)]
        for key, style, split in ((name, "-", "train"), (f"val_{name}", "--", "validation")):
            points = [(row["epoch"], row[key]) for row in run.rows if key in row]
            if not points:
                continue
            epochs, values = zip(*points, strict=True)
            marker = "o" if len(points) <= 20 else None
            ax.plot(epochs, values, style, color=colour, linewidth=2, marker=marker,
                    markersize=4, label=f"{run.name} {split}")  # fmt: skip
    ax.set_title(name)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")


def _matrix(ax: Any, run: RunCurves) -> None:
    evaluation = run.evaluation
    matrix = evaluation["confusion_matrix"]
    classes = len(matrix)
    ax.imshow(matrix, cmap="Blues")
    ax.set_title(f"{run.name}: {evaluation.get('split', 'test')} confusion matrix")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    names = [str(n) for n in evaluation.get("class_names") or range(classes)]
    if classes <= MAX_LABELLED_CLASSES and len(names) == classes:
        ax.set_xticks(range(classes), names, rotation=90 if classes > 10 else 0)
        ax.set_yticks(range(classes), names)
    if classes <= MAX_ANNOTATED_CLASSES:
        peak = max((max(row) for row in matrix if row), default=0) or 1
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                colour = "white" if count > peak / 2 else "black"
                ax.text(j, i, str(count), ha="center", va="center", color=colour, fontsize=8)

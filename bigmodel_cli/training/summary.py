"""Step 7 of the recipe: model.keras, the test score and summary.json, then the backup goes.

A pruned run's summary.json also has `compress.prune`: the sparsity each pruned layer's
kernels reached in model.keras, and the file's size plain and gzipped.

The backup stays until the final files are committed, so a kill in between only makes
`--resume` finish them.
"""

from __future__ import annotations

import math
import time
from typing import Any

from bigmodel_cli import console, faults, run_dir
from bigmodel_cli.models import memory
from bigmodel_cli.tfenv import import_keras
from bigmodel_cli.training import prune
from bigmodel_cli.training.backup_writer import remove as remove_backup
from bigmodel_cli.training.build import Built
from bigmodel_cli.training.build_callbacks import Callbacks
from bigmodel_cli.training.callbacks.checkpoints import save_model_atomically
from bigmodel_cli.training.callbacks.metrics_csv import history_of, read_metrics_rows
from bigmodel_cli.training.options import TrainOptions
from bigmodel_cli.training.prepare import Prepared
from bigmodel_cli.training.run_directory import Claimed
from bigmodel_cli.training.runtime import Runtime
from bigmodel_cli.training.start import Start

STOP_REASONS = {
    "early_stopping": "early stopping",
    "time_limit": "the time limit",
    "epochs_completed": "the last epoch",
}


def summarize(start: Start, claimed: Claimed, runtime: Runtime, data: Prepared, built: Built,
              callbacks: Callbacks, options: TrainOptions, started: float,
              ) -> dict[str, Any]:  # fmt: skip
    """Save model.keras, score the test split, write summary.json, drop the backup."""
    from bigmodel_cli.inference.evaluate import score_saved_model

    run = claimed.run
    faults.point("before_model_save")
    save_model_atomically(built.model, run.model)
    test = None, None
    if data.bundle.test is not None and options.score_test:
        test = score_saved_model(run, data.bundle.test, start.cfg, data.spec)
    rows = read_metrics_rows(run.metrics)
    summary = {
        **_outcome(start, claimed, callbacks, rows, test),
        **_cost(start, runtime, built, callbacks, rows, started),
        **_provenance(start, data),
    }
    if built.init is not None:
        summary["init"] = built.init
    if prune.is_wrapped(built.model):  # what model.keras's kernels reached, and its size
        summary["compress"] = {"prune": prune.summary_entry(built.model, start.cfg, run.model)}
    if data.spec.task == "language_model":
        summary["tokens_per_second"] = summary.pop("examples_per_second")
    if data.teacher is not None:  # the teacher's score beside the student's `test`
        from bigmodel_cli.training import distill

        summary["distill"] = distill.report(built.model, data, start.cfg, options.score_test)
    faults.point("before_summary")
    run_dir.atomic_write_json(run.summary, summary)
    faults.point("after_summary")
    remove_backup(run.backup)
    run.state.unlink(missing_ok=True)  # callback state of bigmodel 0.1's backups
    return summary


def _outcome(start: Start, claimed: Claimed, callbacks: Callbacks, rows: list[dict],
             test: tuple) -> dict[str, Any]:  # fmt: skip
    """How the run ended and what it scored."""
    ending, checkpoints = callbacks.backup.ending(), callbacks.checkpoints
    test_metrics, scored = test
    return {
        "name": start.cfg.name,
        # Only the chief keeps a run directory; other workers' scratch is removed.
        "run_dir": str(claimed.run.root) if claimed.is_chief else None,
        "status": "completed",
        "stop_reason": ending["stop_reason"],
        "epochs_run": len(rows),
        "epochs_requested": start.cfg.train.epochs,
        "best_epoch": checkpoints.best_epoch,
        "best": {"monitor": checkpoints.monitor, "value": checkpoints.best_value},
        "final_weights": ending["final_weights"],
        # The epoch model.keras's weights are from (None: the last one trained).
        "final_weights_epoch": ending.get("final_weights_epoch"),
        "final": history_of(rows),
        "test": test_metrics,
        "test_model": str(scored) if scored else None,
    }


def _cost(start: Start, runtime: Runtime, built: Built, callbacks: Callbacks, rows: list[dict],
          started: float) -> dict[str, Any]:  # fmt: skip
    """What the run cost: size, time, speed, memory, and what it ran on."""
    keras = import_keras()
    # A pruned model's masks are not parameters: count those model.keras holds.
    model, throughput = prune.stripped(built.model), callbacks.throughput
    seconds = sum(float(r.get("seconds") or 0) for r in rows)
    examples = sum(float(r.get("seconds") or 0) * float(r.get("examples_per_second") or 0)
                   for r in rows)  # fmt: skip
    rate = examples / seconds if seconds else 0.0
    peak = throughput.peak_flops
    return {
        "params": int(model.count_params()),
        "trainable_params": int(
            sum(keras.backend.count_params(w) for w in model.trainable_weights)
        ),
        "flops_per_example": int(built.flops),
        "train_seconds": round(seconds, 3),
        "wall_seconds": round(time.perf_counter() - started, 3),
        "examples_per_second": round(rate, 1),
        "mfu": round(throughput.train_flops_per_item * rate / peak, 5) if peak else 0.0,
        "peak_flops": peak,
        "steps_per_execution": built.steps_per_execution,
        "memory_estimate_bytes": built.memory_estimate,
        "peak_rss_bytes": memory.peak_rss_bytes(),
        "jit_compile": start.cfg.train.jit_compile,
        "strategy": runtime.placement.name,
        "replicas": runtime.placement.replicas,
        "precision": built.precision,
    }


def _provenance(start: Start, data: Prepared) -> dict[str, Any]:
    """What the run trained on, and where it picked up if it was resumed."""
    from bigmodel_cli import data as data_lib

    return {
        "data": data_lib.describe(data.bundle),
        "resumed_from": start.resumed_from,
        # Where training picked up: (epoch, step) counted from 0.
        "resumed_at": {"epoch": start.position.epoch, "batch": start.position.step}
        if start.resumed_from
        else None,
    }


def end_note(summary: dict[str, Any]) -> None:
    """One line on how the run finished, its best epoch and what model.keras holds."""
    best = summary["best"]
    value = best["value"]
    best_text = (
        f"best epoch {summary['best_epoch']} ({best['monitor']} {value:.4f})"
        if summary["best_epoch"] is not None and value is not None and math.isfinite(value)
        else "no best epoch"
    )
    console.note(
        f"finished by {STOP_REASONS.get(summary['stop_reason'], summary['stop_reason'])} after "
        f"{summary['epochs_run']} epochs; {best_text}; model.keras holds "
        f"{summary['final_weights']} weights; {summary['train_seconds']:.1f} s of training"
    )
    prune = (summary.get("compress") or {}).get("prune")
    if prune:
        console.note(
            f"pruned {', '.join(prune['layers'])} to {prune['sparsity']:.1%} zeros (target "
            f"{prune['target_sparsity']:.0%}); model.keras {prune['model_bytes']:,} bytes, "
            f"{prune['model_gzip_bytes']:,} gzipped"
        )

"""What the user is told when training cannot go on: a message and an exit code, never
a traceback, saying what is kept and how to go on.

A signal (Interrupted, exit 128+N), a NaN/Inf loss and a write the file system refuses
(TrainingFailed, exit 1). A lost worker's message is distribution.py's.
"""

from __future__ import annotations

import contextlib
import shlex
import signal
from collections.abc import Iterator

from bigmodel_cli import run_dir
from bigmodel_cli.config import Config
from bigmodel_cli.errors import Interrupted, TrainingFailed
from bigmodel_cli.training.build_callbacks import Callbacks
from bigmodel_cli.training.callbacks.nan_guard import LossNotFinite
from bigmodel_cli.training.run_directory import Claimed


def resume_command(run: run_dir.RunDir) -> str:
    return f"bigmodel train --resume {shlex.quote(str(run.root))}"


def stop_progress(callbacks: Callbacks) -> None:
    """End the progress display, so the message that follows is not drawn over."""
    for callback in callbacks.all:
        display = getattr(callback, "display", None)
        if display is not None:
            display.stop()


def stopped_by_signal(callbacks: Callbacks, steps_per_epoch: int, run: run_dir.RunDir,
                      ) -> Interrupted:  # fmt: skip
    """A SIGINT/SIGTERM was honoured after a backup: where it stopped, how to resume."""
    stop = callbacks.stop
    where = callbacks.backup.writer.last.position
    name = signal.Signals(stop.signal).name
    return Interrupted(
        stop.signal,
        f"{name}: stopped at epoch {where.epoch + 1}, step {where.step} of "
        f"{steps_per_epoch}, after saving a backup; resume with: {resume_command(run)}",
    )


def loss_not_finite(err: LossNotFinite, cfg: Config, claimed: Claimed,
                    steps_per_execution: int) -> TrainingFailed:  # fmt: skip
    """The loss became NaN/Inf: the run is marked failed in summary.json (by the chief),
    and the message names the last good checkpoint and what to change."""
    run = claimed.run
    good = run.best if run.best.exists() else None
    message = (
        f"the loss became NaN/Inf at epoch {err.epoch}, step {err.step} (within "
        f"{steps_per_execution} steps per execution). "
        + (f"The last good checkpoint is {good}. " if good else "")
        + "Try a lower optimizer.learning_rate, optimizer.clipnorm: 1.0, or "
        "train.mixed_precision: float32."
    )
    if claimed.is_chief:  # so `bigmodel runs` tells a failed run from an interrupted one
        failed = {"name": cfg.name, "run_dir": str(run.root), "status": "failed"}
        run_dir.atomic_write_json(run.summary, {**failed, "error": message})
    return TrainingFailed(message)


@contextlib.contextmanager
def file_system_failures(run: run_dir.RunDir, callbacks: Callbacks) -> Iterator[None]:
    """The one place where a write the file system refuses while training (a row of
    metrics.csv, a checkpoint, the backup, TensorBoard's events, model.keras,
    summary.json: an OSError, or TensorFlow's writers' tf.errors) becomes
    TrainingFailed (exit 1), saying what failed, what is kept and how to go on."""
    try:
        yield
    except Exception as err:
        reason = run_dir.file_system_reason(err)
        if reason is None:
            raise
        stop_progress(callbacks)
        raise TrainingFailed(_file_system_message(err, reason, run, callbacks)) from None


def _file_system_message(err: Exception, reason: str, run: run_dir.RunDir,
                         callbacks: Callbacks) -> str:  # fmt: skip
    if isinstance(err, run_dir.StorageError):
        what = f"{err.path}: cannot write ({reason})"
    elif isinstance(err, OSError):
        what = f"{err.filename or run.root}: {reason}"
    else:  # a tf.errors from TensorBoard's event writer (the backup's are StorageErrors)
        what = f"{run.tensorboard}: cannot write the TensorBoard events ({reason})"
    last = callbacks.backup.writer.last
    kept = [f"{p.relative_to(run.root)}" for p in (run.best, run.last) if p.is_file()]
    if last.finished:
        kept.insert(0, "the backup of the finished training")
    elif last.checkpoint is not None:
        kept.insert(0, f"the backup after {last.position.description}")
    kept_text = ", ".join(kept) if kept else "nothing trained yet (the resume starts afresh)"
    fix = run_dir.remedy(reason)
    return (
        f"{what}. Kept: {kept_text}. {fix[0].upper()}{fix[1:]} ({run.root}), then resume "
        f"with: {resume_command(run)}"
    )


def undecodable_images(err: Exception, bundle) -> list[str] | None:
    """The images that cannot be decoded, when `err` is a decode failure of data
    decoded as it trains (image_dir, tfrecord images); None for any other error."""
    from bigmodel_cli.data.decode import undecodable
    from bigmodel_cli.tfenv import import_tensorflow

    parts = [part for part in (bundle.train, bundle.validation)
             if part is not None and part.encoded is not None]  # fmt: skip
    if not parts or not isinstance(err, import_tensorflow().errors.InvalidArgumentError):
        return None
    found = [where for part in parts for where in undecodable(part.encoded)]
    return found or None


def undecodable_message(where: list[str], run: run_dir.RunDir) -> str:
    listed = "; ".join(where[:5]) + (f"; and {len(where) - 5} more" if len(where) > 5 else "")
    return (
        f"data: {len(where)} image(s) cannot be decoded, met while training: {listed}. "
        f"The last backup is kept: replace each with a readable image and resume with: "
        f"{resume_command(run)} (removing one changes the splits: start a new run instead)"
    )

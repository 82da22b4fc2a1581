"""Keras callbacks that make a run directory: metrics.csv, checkpoints, NaN guard, progress.

Keras's own ModelCheckpoint and CSVLogger write in place; these write whole files
atomically (checkpoints) or whole rows (metrics.csv), so a crash never leaves half
of either.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bigmodel_cli import faults, run_dir
from bigmodel_cli.console import EpochProgress
from bigmodel_cli.errors import UserError
from bigmodel_cli.layers import LayersModel
from bigmodel_cli.tfenv import import_keras, import_tensorflow
from bigmodel_cli.training.backup import BackupWriter, Commit, Position

tf = import_tensorflow()
keras = import_keras()


def current_learning_rate(model: keras.Model) -> float:
    """The optimizer's learning rate now (schedules report their current value)."""
    try:
        return float(keras.backend.get_value(model.optimizer.learning_rate))
    except (AttributeError, TypeError, ValueError):
        return float("nan")


class Throughput(keras.callbacks.Callback):
    """Times each epoch and counts its steps, for metrics.csv, summary.json and progress.

    An epoch may be shorter than `steps_per_epoch` (stopped by the time limit) or
    continue one a kill interrupted (`carry`: the seconds it had run): examples are
    counted for the steps actually trained.
    """

    def __init__(
        self,
        batch_size: int,
        examples_per_epoch: int,
        steps_per_epoch: int,
        items_per_example: int = 1,
        train_flops_per_item: float = 0.0,
        peak_flops: float = 0.0,
    ):
        super().__init__()
        # Language models count tokens: each example holds `items_per_example` of them.
        self.items_per_step = batch_size * items_per_example
        self.train_flops_per_item = train_flops_per_item
        self.peak_flops = peak_flops
        self.examples_per_epoch = examples_per_epoch
        self.steps_per_epoch = steps_per_epoch
        self.epoch_seconds: dict[int, float] = {}
        self.epoch_examples: dict[int, float] = {}
        self.examples_seen = 0.0
        self.train_seconds = 0.0
        self._start = 0.0
        self._carried: tuple[int | None, float] = (None, 0.0)  # (epoch, seconds before a kill)
        self._epoch = 0
        self._steps_done = 0

    def carry(self, epoch: int, seconds: float) -> None:
        self._carried = (epoch, float(seconds))

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()
        self._epoch = epoch
        self._steps_done = 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._steps_done = batch + 1  # batches count from the epoch's start, also resumed

    def seconds_so_far(self) -> float:
        """Seconds of the current epoch, including those run before a resume."""
        carried_epoch, carried = self._carried
        before = carried if carried_epoch == self._epoch else 0.0
        return time.perf_counter() - self._start + before

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        seconds = time.perf_counter() - self._start
        carried_epoch, carried = self._carried
        if carried_epoch == epoch:
            seconds += carried
        steps = min(self._steps_done, self.steps_per_epoch) or self.steps_per_epoch
        examples = self.examples_per_epoch * steps / self.steps_per_epoch
        self.epoch_seconds[epoch] = seconds
        self.epoch_examples[epoch] = examples
        self.train_seconds += seconds
        self.examples_seen += examples

    def examples_per_second(self, epoch: int) -> float:
        seconds = self.epoch_seconds.get(epoch, 0.0)
        return self.epoch_examples.get(epoch, 0.0) / seconds if seconds else 0.0

    def overall_rate(self) -> float:
        """Examples (tokens for language models) per second over every epoch so far."""
        return self.examples_seen / self.train_seconds if self.train_seconds else 0.0

    def mfu(self, epoch: int | None = None) -> float:
        """Model FLOPs utilization of one epoch (or of the whole run)."""
        rate = self.overall_rate() if epoch is None else self.examples_per_second(epoch)
        return self.train_flops_per_item * rate / self.peak_flops if self.peak_flops else 0.0


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


# Columns of metrics.csv that describe the epoch rather than the model's metrics.
EPOCH_COLUMNS = ("epoch", "lr", "seconds", "examples_per_second", "mfu")


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


class TensorBoardScalars(keras.callbacks.Callback):
    """What metrics.csv has beyond the loss and metrics (the learning rate, examples/s,
    MFU) as TensorBoard scalars, in the same `train/` run as Keras's own."""

    def __init__(self, log_dir: Path, throughput: Throughput):
        super().__init__()
        self.log_dir = log_dir
        self.throughput = throughput
        self._writer = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.log_dir / "train"))
        with self._writer.as_default(step=epoch):
            tf.summary.scalar("epoch_learning_rate", current_learning_rate(self.model))
            tf.summary.scalar(
                "epoch_examples_per_second", self.throughput.examples_per_second(epoch)
            )
            tf.summary.scalar("epoch_mfu", self.throughput.mfu(epoch))
        self._writer.flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def without_optimizer(model: keras.Model) -> keras.Model:
    """The same layers and weights (shared, not copied) without the optimizer's state.

    Checkpoints and model.keras are for evaluating and predicting; resuming uses the
    backup, which does hold the optimizer. For Adam this makes each file 3x smaller.
    """
    # A LayersModel stays one: its file must name bigmodel_cli.layers (see there).
    model_class = LayersModel if isinstance(model, LayersModel) else keras.Model
    return model_class(model.inputs, model.outputs, name=model.name)


def save_model_atomically(model: keras.Model, path: Path) -> None:
    """Write `path` whole or not at all, with its SHA-256 beside it."""
    inference = without_optimizer(model)

    def write(tmp: Path) -> None:
        inference.save(tmp, overwrite=True)
        faults.point(f"saved_{path.stem}")  # written, not yet renamed into place

    run_dir.atomic_write_with_digest(path, write)


def finite_loss(logs: dict | None) -> bool:
    loss = (logs or {}).get("loss")
    return loss is None or bool(np.isfinite(loss))


class Checkpoints(keras.callbacks.Callback):
    """Saves checkpoints/last.keras every epoch and best.keras when `monitor` improves.

    An epoch whose loss is NaN/Inf saves nothing: the files stay the last good ones.
    """

    def __init__(
        self, best: Path, last: Path, monitor: str, mode: str = "min", state: dict | None = None
    ):
        super().__init__()
        self.best_path, self.last_path = best, last
        self.monitor = monitor
        self.mode = mode
        self.best_value = math.inf if mode == "min" else -math.inf
        self.best_epoch: int | None = None
        if state:  # resuming: the best so far is not forgotten
            self.best_value, self.best_epoch = state["value"], state["epoch"]

    def state(self) -> dict:
        return {"value": self.best_value, "epoch": self.best_epoch}

    def _improved(self, value: float) -> bool:
        return value < self.best_value if self.mode == "min" else value > self.best_value

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        if not finite_loss(logs):
            return
        save_model_atomically(self.model, self.last_path)
        value = logs.get(self.monitor)
        if value is not None and np.isfinite(value) and self._improved(float(value)):
            self.best_value, self.best_epoch = float(value), epoch + 1
            save_model_atomically(self.model, self.best_path)


class StopRequest:
    """Set by the SIGINT/SIGTERM handler; read after every call into the training graph."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.honoured = False  # training stopped because of it, after a backup


class StoppedBySignal(Exception):  # noqa: N818 - raised to leave fit() at once
    """Raised from a callback after the backup: fit() ends at once, without the validation
    pass and epoch-end callbacks Keras would run after `stop_training`."""


class LossNotFinite(Exception):  # noqa: N818
    """Raised from a callback at the first NaN/Inf loss: nothing after it may be saved."""

    def __init__(self, epoch: int, step: int):
        super().__init__(f"loss not finite at epoch {epoch}, step {step}")
        self.epoch, self.step = epoch, step


class RandomStates(tf.Module):
    """The tf.random.Generator of every layer that draws random numbers (Dropout, RNN
    cells with dropout, MultiHeadAttention's dropout, ...), as one checkpointable object.

    With `enable_tf_random_generator` (set before training builds its model) each such
    layer owns a generator whose state advances as it draws. tf_keras leaves that state
    out of checkpoints on purpose (and out of `model.weights`, so parameter counts and
    .keras files do not change); attached to the model as an attribute, it is in the
    backup's checkpoint, so a resumed run draws the masks the uninterrupted run would.
    """

    def __init__(self, model) -> None:
        super().__init__(name="random_states")
        generators = {}
        for index, layer in enumerate(model._flatten_layers(include_self=False)):
            wrapper = getattr(layer, "_random_generator", None)
            generator = getattr(wrapper, "_generator", None)
            if generator is not None:
                generators[f"{index}_{layer.name}"] = generator
        self.generators = generators


def training_checkpoint(model: keras.Model) -> tuple[tf.train.Checkpoint, tf.Variable, tf.Variable]:
    """The object graph a backup holds: the model (with its optimizer and random states)
    and two counters, laid out as tf_keras's BackupAndRestore did, so backups written by
    bigmodel 0.1 restore too."""
    model._bigmodel_random_states = RandomStates(model)
    epoch = tf.Variable(tf.constant(-1, tf.int64), name="ckpt_saved_epoch", trainable=False)
    batch = tf.Variable(tf.constant(-1, tf.int64), name="ckpt_saved_batch", trainable=False)
    checkpoint = tf.train.Checkpoint(
        model=model,
        ckpt_saved_epoch=epoch,
        ckpt_saved_batch=batch,
        train_counter=model._train_counter,
    )
    return checkpoint, epoch, batch


def restore_checkpoint(checkpoint: tf.train.Checkpoint, path: Path) -> None:
    """Restore a verified backup; one that does not fit the model is the user's problem
    (the run's config.yaml was edited), never a traceback."""
    try:
        checkpoint.read(str(path)).assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as err:
        text = " ".join(str(err).split())[:300]
        raise UserError(
            f"{path.parent}: the backup does not fit the model the run's config.yaml "
            f"describes ({text}); was config.yaml or the backup edited? Restore them, or "
            "start a new run"
        ) from None


class _StartAt:
    """Stands in for tf_keras's WorkerTrainingState: the one thing fit() asks it is where
    to start (`_maybe_load_initial_counters_from_ckpt`)."""

    def __init__(self, position: Position):
        self.position = position

    def maybe_load_initial_counters_from_ckpt(self, steps_per_epoch, initial_epoch, mode=None):
        return self.position.epoch, self.position.step


def metric_totals(model: keras.Model) -> dict[str, np.ndarray]:
    """The state of every training metric, summed over this process's replicas: all of
    Keras's metric states are sums (totals and counts, confusion counts), so adding
    them to a fresh epoch's continues it exactly."""
    strategy = model.distribute_strategy
    totals = {}
    for metric in model.metrics:
        for index, variable in enumerate(metric.variables):
            parts = strategy.experimental_local_results(variable)
            totals[f"{metric.name}/{index}"] = np.sum([p.numpy() for p in parts], axis=0)
    return totals


def add_metric_totals(model: keras.Model, totals: dict[str, np.ndarray]) -> None:
    strategy = model.distribute_strategy
    for metric in model.metrics:
        for index, variable in enumerate(metric.variables):
            saved = totals.get(f"{metric.name}/{index}")
            first = strategy.experimental_local_results(variable)[0]
            if saved is not None and tuple(saved.shape) == tuple(first.shape):
                first.assign_add(saved.astype(first.dtype.as_numpy_dtype))


@dataclass(frozen=True)
class Resume:
    """A verified commit to resume from, the folder holding its files (the chief's, for
    every worker) and the interrupted epoch's metric totals."""

    commit: Commit
    folder: Path
    carry: dict[str, np.ndarray] = field(default_factory=dict)


class ResumeBackup(keras.callbacks.Callback):
    """Commits the backup for --resume (see backup.py): at each epoch end, every
    `every_steps` steps, at the step where a SIGINT/SIGTERM arrives (then training stops
    at once), and when training ends (then only the final files remain to be written).

    On a resume it restores the last commit before the first step and makes fit() start
    at its position; an interrupted epoch's training metrics continue from their totals.
    """

    def __init__(
        self,
        writer: BackupWriter,
        resume: Resume | None,
        steps_per_epoch: int,
        every_steps: int | None,
        stop: StopRequest,
        state: Callable[[], dict],
        ending: Callable[[], dict],
        throughput: Throughput,
        carry_metrics: bool = True,
        attachments: Callable[[], dict] = dict,
    ):
        super().__init__()
        # Under multi_worker each worker's metric totals are its own share: carrying the
        # chief's alone would be wrong, so a resumed epoch's metrics restart there.
        self.carry_metrics = carry_metrics
        self.writer = writer
        self.resume = resume
        self.steps_per_epoch = steps_per_epoch
        self.every_steps = every_steps
        self.stop = stop
        self.state = state  # the other callbacks' memory, committed with each backup
        self.ending = ending  # how training ended: stop reason, what the weights are
        self.attachments = attachments  # role -> (file name, arrays) kept with the backup
        self.throughput = throughput
        self._carry: dict[str, np.ndarray] = {}
        self._epoch = 0
        self._saved_at = 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        checkpoint, self._epoch_var, self._batch_var = training_checkpoint(self.model)
        self.writer.checkpoint = checkpoint
        resume = self.resume
        if resume is None or resume.commit.checkpoint is None:
            self.writer.start()
            return
        restore_checkpoint(checkpoint, resume.folder / resume.commit.checkpoint)
        self.model._training_state = _StartAt(resume.commit.position)
        self._carry = dict(resume.carry) if self.carry_metrics else {}

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch
        start = self.resume.commit.position if self.resume is not None else Position()
        self._saved_at = start.step if start.epoch == epoch else 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        faults.point("train_batch_end")  # as if a signal came during this graph call
        if self._carry:  # the interrupted epoch's totals, once its metrics exist again
            add_metric_totals(self.model, self._carry)
            self._carry = {}
        done = batch + 1
        if self.stop.signal is not None:
            self._commit(self._position(done), carry=done < self.steps_per_epoch)
            self.stop.honoured = True
            raise StoppedBySignal
        due = self.every_steps and done - self._saved_at >= self.every_steps
        if due and done < self.steps_per_epoch:  # the epoch's end commits anyway
            self._commit(self._position(done), carry=True)
            self._saved_at = done

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        faults.point("validation_batch_end")
        if self.stop.signal is not None:  # during validation: the last commit stands
            self.stop.honoured = True
            raise StoppedBySignal

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        # Last at each epoch end, after every record of the epoch (metrics row,
        # checkpoints): a kill before this commit replays the epoch, whose row
        # MetricsCSV then rewrites.
        # Training ends here (early stopping, time limit): say so, so that a resume from
        # this commit finishes the run instead of training on.
        ending = self.ending() if self.model.stop_training else None
        self._commit(Position(epoch + 1, 0), ending=ending)
        if self.stop.signal is not None:
            self.stop.honoured = True
            raise StoppedBySignal

    def on_train_end(self, logs: dict | None = None) -> None:
        # Early stopping has restored the best weights: these are the final model's.
        self._commit(self.writer.last.position, finished=self.ending())

    def _position(self, done: int) -> Position:
        if done >= self.steps_per_epoch:
            return Position(self._epoch + 1, 0)
        return Position(self._epoch, done)

    def _commit(self, position: Position, carry: bool = False, ending=None, finished=None):
        # The counters tf_keras's own format kept (epoch, and the last step covered).
        self._epoch_var.assign(position.epoch if position.step else position.epoch - 1)
        self._batch_var.assign(position.step - 1 if position.step else self.steps_per_epoch - 1)
        state = self.state()
        if position.step:
            state["epoch_seconds"] = self.throughput.seconds_so_far()
        if ending:
            state["ending"] = ending
        totals = metric_totals(self.model) if carry and self.carry_metrics else None
        self.writer.commit(
            position, state, finished=finished, carry=totals, attachments=self.attachments()
        )


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping whose patience, best value and best weights survive `--resume`:
    `state()` and `best_weights` are committed with each backup (the weights as an
    attachment, rewritten only when the best epoch changes), and come back through
    `resume_from`, so a resumed run ends with the weights the uninterrupted one would.
    """

    ATTACHMENT = "early_stopping_best"

    def __init__(self, state: dict | None = None, best_weights=None, **kw):
        super().__init__(**kw)
        self._resume_state = state
        self._resume_weights = best_weights

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        if not self._resume_state:
            return
        self.wait = self._resume_state["wait"]
        self.best = self._resume_state["best"]
        self.best_epoch = self._resume_state["best_epoch"]
        if self.restore_best_weights and self._resume_weights is not None:
            self.best_weights = list(self._resume_weights)

    def state(self) -> dict:
        return {"wait": self.wait, "best": float(self.best), "best_epoch": self.best_epoch}

    def attachment(self) -> dict[str, tuple[str, Callable[[], dict[str, np.ndarray]]]]:
        """The best weights for the backup, named by their epoch (their version)."""
        if not self.restore_best_weights or self.best_weights is None:
            return {}
        weights = self.best_weights
        arrays = lambda: {f"w{i:04d}": w for i, w in enumerate(weights)}  # noqa: E731
        return {self.ATTACHMENT: (f"early-stopping-best-{self.best_epoch + 1}.npz", arrays)}

    @staticmethod
    def weights_from(arrays: dict[str, np.ndarray] | None) -> list[np.ndarray] | None:
        return None if arrays is None else [arrays[k] for k in sorted(arrays)]


class NaNGuard(keras.callbacks.Callback):
    """Ends training at the first non-finite loss (LossNotFinite), before any callback
    after it could save the broken weights or Keras could run a validation pass."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            raise LossNotFinite(self.epoch + 1, batch + 1)


class TimeLimit(keras.callbacks.Callback):
    """Ends training after `minutes` of this invocation's fit, checked after every call
    into the training graph: the epoch under way ends there (validated and recorded like
    any other), and the run finishes normally."""

    def __init__(self, minutes: float) -> None:
        super().__init__()
        self.seconds = minutes * 60.0
        self.began = time.perf_counter()
        self.reached = False

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.began = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if time.perf_counter() - self.began >= self.seconds:
            self.reached = True
            self.model.stop_training = True


class ExecutionBound(keras.callbacks.Callback):
    """Keeps each call into the training graph under `seconds` of wall time, so that a
    signal (read between calls) is answered that fast: when a call with
    `steps_per_execution` > 1 takes longer, the next calls run proportionally fewer
    steps. The first call of a fit traces the graph and is not counted."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self._calls = 0
        self._began = 0.0
        self._first_step = 0

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._began = time.perf_counter()
        self._first_step = batch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        elapsed = time.perf_counter() - self._began
        self._calls += 1
        variable = self.model._steps_per_execution
        current = int(variable.numpy())
        # A partial call (the epoch's last) is restored by Keras afterwards: skip it.
        full = batch + 1 - self._first_step == current
        if self._calls > 1 and full and current > 1 and elapsed > self.seconds:
            variable.assign(max(1, int(current * 0.5 * self.seconds / elapsed)))

    @property
    def steps_per_execution(self) -> int:
        return int(self.model._steps_per_execution.numpy())


class ProgressCallback(keras.callbacks.Callback):
    """Feeds Keras's epoch events to the progress display (a line per epoch)."""

    def __init__(self, display: EpochProgress, throughput: Throughput):
        super().__init__()
        self.display = display
        self.throughput = throughput

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.display.start()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.display.begin_epoch(epoch + 1)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.display.end_epoch(
            epoch + 1,
            dict(logs or {}),
            self.throughput.epoch_seconds[epoch],
            self.throughput.examples_per_second(epoch),
            self.throughput.mfu(epoch),
        )

    def on_train_end(self, logs: dict | None = None) -> None:
        self.display.stop()


class LiveProgressCallback(ProgressCallback):
    """Adds the step bar. Kept separate because any batch hook makes Keras copy the logs
    to the host after every step, which costs small models much of their speed."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = time.perf_counter()
        super().on_epoch_begin(epoch, logs)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        elapsed = time.perf_counter() - self._epoch_start
        rate = (batch + 1) * self.throughput.items_per_step / elapsed if elapsed > 0 else 0.0
        self.display.update_step(batch + 1, (logs or {}).get("loss"), rate)

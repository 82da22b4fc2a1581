"""Keras callbacks that make a run directory: metrics.csv, checkpoints, NaN guard, progress.

Keras's own ModelCheckpoint and CSVLogger write in place; these write whole files
atomically (checkpoints) or whole rows (metrics.csv), so a crash never leaves half
of either.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

from bigmodel_cli import run_dir
from bigmodel_cli.console import EpochProgress
from bigmodel_cli.errors import UserError
from bigmodel_cli.layers import LayersModel


def current_learning_rate(model: keras.Model) -> float:
    """The optimizer's learning rate now (schedules report their current value)."""
    try:
        return float(keras.backend.get_value(model.optimizer.learning_rate))
    except (AttributeError, TypeError, ValueError):
        return float("nan")


class Throughput(keras.callbacks.Callback):
    """Times each epoch and counts examples, for metrics.csv, summary.json and progress."""

    def __init__(
        self,
        batch_size: int,
        examples_per_epoch: int,
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
        self.epoch_seconds: dict[int, float] = {}
        self.examples_seen = 0
        self.train_seconds = 0.0
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        seconds = time.perf_counter() - self._start
        self.epoch_seconds[epoch] = seconds
        self.train_seconds += seconds
        self.examples_seen += self.examples_per_epoch

    def examples_per_second(self, epoch: int) -> float:
        seconds = self.epoch_seconds.get(epoch, 0.0)
        return self.examples_per_epoch / seconds if seconds else 0.0

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
        # One write call per row: a crash leaves whole rows only.
        with open(self.path, "a", encoding="utf-8", newline="") as handle:
            handle.write(buffer.getvalue())
            handle.flush()

    def _drop_rows_from(self, epoch: int) -> None:
        """A resumed run replays from its backup: forget rows of epochs it will redo, so
        every epoch appears exactly once."""
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle))
        kept = [rows[0]] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) < epoch]
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
    run_dir.atomic_write_with_digest(path, lambda tmp: inference.save(tmp, overwrite=True))


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
    """Set by the SIGINT/SIGTERM handler; read at the next step boundary."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.honoured = False  # training stopped early because of it


# tf_keras resumes mid-epoch only when save_freq is a number; this one means "never by
# count" (SafeBackup counts steps itself: Keras counts hook calls, which are fewer than
# steps when several steps run per execution).
_NO_COUNT = 2**62


class SafeBackup(keras.callbacks.BackupAndRestore):
    """Backs up the whole training state (weights, optimizer, epoch and step) for --resume:
    at each epoch end, every `every_steps` steps, and at the step where a SIGINT/SIGTERM
    arrives (then training stops). tf.train.CheckpointManager writes a new checkpoint and
    switches to it atomically. Unlike Keras's own callback, it never backs up NaN weights
    and never deletes the backup when a run ends early.
    """

    def __init__(
        self,
        backup_dir: Path,
        nan_guard: NaNGuard,
        steps_per_epoch: int,
        every_steps: int | None,
        stop: StopRequest,
        records: bool = True,
    ):
        super().__init__(str(backup_dir), save_freq=_NO_COUNT, delete_checkpoint=True)
        self.nan_guard = nan_guard
        self.steps_per_epoch = steps_per_epoch
        self.every_steps = every_steps
        self.stop = stop
        # Only the chief writes the backup (and its manifest); under multi_worker the
        # other workers read the chief's backup on --resume and write theirs to
        # temporary folders that tf_keras removes.
        self.records = records
        self._saved_at = 0

    def _healthy(self, logs: dict | None) -> bool:
        return finite_loss(logs) and self.nan_guard.failed_at is None

    def on_train_begin(self, logs: dict | None = None) -> None:
        verify_backup(Path(self.backup_dir))  # before Keras restores from it
        # Tracked by the model, the layers' random-number states enter every backup
        # (atomically, with the weights) and come back on restore.
        self.model._bigmodel_random_states = RandomStates(self.model)
        super().on_train_begin(logs)

    def _backup(self, epoch: int, batch: int = 0) -> None:
        # tf_keras records the batch given to on_train_batch_begin, which with
        # steps_per_execution > 1 is the *first* step of the last execution: set the
        # step this backup really ends on, so a resume starts right after it.
        self._training_state._ckpt_saved_epoch.assign(epoch)
        self._training_state._ckpt_saved_batch.assign(batch)
        super()._backup(epoch=epoch, batch=batch)
        if self.records:
            record_backup(Path(self.backup_dir))

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        super().on_epoch_begin(epoch, logs)
        self._saved_at = 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if not self._healthy(logs):
            return
        step = batch + 1
        if self.stop.signal is not None:
            self._backup(epoch=self._current_epoch, batch=batch)
            self.model.stop_training = True
            self.stop.honoured = True
        elif self.every_steps and step - self._saved_at >= self.every_steps:
            self._backup(epoch=self._current_epoch, batch=batch)
            self._saved_at = step

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self._healthy(logs) and not self.stop.honoured:
            # Saved as "the last step of the epoch": a resume starts the next epoch.
            self._backup(epoch=epoch, batch=self.steps_per_epoch - 1)

    def on_train_end(self, logs: dict | None = None) -> None:
        # Delete the backup only when the run finished; keep it to resume from otherwise.
        self.delete_checkpoint = self.nan_guard.failed_at is None and not self.stop.honoured
        super().on_train_end(logs)


BACKUP_MANIFEST = "manifest.json"


def latest_backup(backup: Path) -> tuple[Path, str] | None:
    """The folder holding the newest resume backup and that checkpoint's name, if any."""
    import tensorflow as tf

    folder = backup / "chief"  # where tf_keras's BackupAndRestore writes
    latest = tf.train.latest_checkpoint(str(folder)) if folder.is_dir() else None
    return (folder, Path(latest).name) if latest else None


def _backup_files(folder: Path, name: str) -> dict[str, str]:
    return {p.name: run_dir.sha256_of(p) for p in sorted(folder.glob(f"{name}.*"))}


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


def record_backup(backup: Path) -> None:
    """Write the SHA-256 of each file of the newest backup to backup/chief/manifest.json."""
    found = latest_backup(backup)
    if found:
        folder, name = found
        manifest = {"checkpoint": name, "files": _backup_files(folder, name)}
        run_dir.atomic_write_json(folder / BACKUP_MANIFEST, manifest)


def verify_backup(backup: Path) -> dict | None:
    """Refuse to resume from a backup whose files differ from their recorded digests;
    return the verified manifest (None without a backup or a record of it)."""
    found = latest_backup(backup)
    if not found:
        return None
    folder, name = found
    path = folder / BACKUP_MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = {}
    if manifest.get("checkpoint") != name:
        # Killed between saving the backup and recording it (a few milliseconds): the
        # older, recorded backup is already gone, so refusing would strand the run.
        from bigmodel_cli import console

        console.note(
            f"{folder}: the newest backup ({name}) has no recorded digest; the run "
            "was stopped while saving it. Resuming from it unverified."
        )
        return None
    if _backup_files(folder, name) != manifest.get("files"):
        raise UserError(
            f"{folder}: backup {name} does not match {BACKUP_MANIFEST} (a file was changed, "
            "truncated or replaced); refusing to resume from it"
        )
    return manifest


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping whose patience and best value survive `--resume`."""

    def __init__(self, state: dict | None = None, best_weights_path: Path | None = None, **kw):
        super().__init__(**kw)
        self._resume_state = state
        self._best_weights_path = best_weights_path

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        if not self._resume_state:
            return
        self.wait = self._resume_state["wait"]
        self.best = self._resume_state["best"]
        self.best_epoch = self._resume_state["best_epoch"]
        if (
            self.restore_best_weights
            and self._best_weights_path
            and (self._best_weights_path.is_file())
        ):
            from bigmodel_cli.registry import custom_objects

            run_dir.verify_digest(self._best_weights_path)
            best = keras.models.load_model(
                self._best_weights_path,
                compile=False,
                safe_mode=True,
                custom_objects=custom_objects(),
            )
            self.best_weights = best.get_weights()

    def state(self) -> dict:
        return {"wait": self.wait, "best": float(self.best), "best_epoch": self.best_epoch}


class RunState(keras.callbacks.Callback):
    """Writes checkpoints/state.json after each good epoch: what callbacks must remember
    across `--resume` (best value so far, early-stopping patience)."""

    def __init__(
        self, path: Path, checkpoints: Checkpoints, early_stopping: ResumableEarlyStopping | None
    ):
        super().__init__()
        self.path = path
        self.checkpoints = checkpoints
        self.early_stopping = early_stopping

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if not finite_loss(logs):
            return
        state = {"epoch": epoch + 1, "best": self.checkpoints.state()}
        if self.early_stopping is not None:
            state["early_stopping"] = self.early_stopping.state()
        run_dir.atomic_write_json(self.path, state)


class NaNGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite loss and remembers where it happened."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch = 0
        self.failed_at: tuple[int, int] | None = None  # (epoch, step), both 1-based

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            self.failed_at = (self.epoch + 1, batch + 1)
            self.model.stop_training = True


class TimeLimit(keras.callbacks.Callback):
    """Ends training at the first epoch end past `minutes` of this invocation's fit."""

    def __init__(self, minutes: float) -> None:
        super().__init__()
        self.seconds = minutes * 60.0
        self.began = time.perf_counter()
        self.reached = False

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.began = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if time.perf_counter() - self.began >= self.seconds:
            self.reached = True
            self.model.stop_training = True


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

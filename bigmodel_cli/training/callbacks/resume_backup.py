"""The callback that commits the resume backup, and what its checkpoint holds.

The backup's files and their commit protocol are training/backup.py's; this module
decides when to commit (epoch ends, every N steps, a signal, the end of training),
what the checkpoint's object graph is (model, optimizer, random states, counters) and
how a resumed fit() is put back where the backup left it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bigmodel_cli import faults
from bigmodel_cli.errors import UserError
from bigmodel_cli.tfenv import import_keras, import_tensorflow
from bigmodel_cli.training.backup import Commit, Position
from bigmodel_cli.training.backup_writer import BackupWriter
from bigmodel_cli.training.callbacks.signals import StoppedBySignal, StopRequest
from bigmodel_cli.training.callbacks.throughput import Throughput

tf = import_tensorflow()
keras = import_keras()


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
    """Commits the backup for --resume (see training/backup.py): at each epoch end, every
    `every_steps` steps, at the step where a SIGINT/SIGTERM arrives (then training stops
    at once), and when training ends (then only the final files remain to be written).

    On a resume it restores the last commit before the first step and makes fit() start
    at its position; an interrupted epoch's training metrics continue from their totals.
    Its place in the callback list (last of the run's own) is build_callbacks's to keep.
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
        return Position.after_steps(self._epoch, done, self.steps_per_epoch)

    def _commit(self, position: Position, carry: bool = False, ending=None, finished=None):
        epoch, batch = position.counters(self.steps_per_epoch)
        self._epoch_var.assign(epoch)
        self._batch_var.assign(batch)
        state = self.state()
        if position.step:
            state["epoch_seconds"] = self.throughput.seconds_so_far()
        if ending:
            state["ending"] = ending
        totals = metric_totals(self.model) if carry and self.carry_metrics else None
        self.writer.commit(
            position, state, finished=finished, carry=totals, attachments=self.attachments()
        )

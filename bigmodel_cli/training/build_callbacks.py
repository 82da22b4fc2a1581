"""Step 5 of the recipe: every callback of the run, in the one order that is right.

Keras calls callbacks in list order at every hook, so the order is behaviour: which
callback sees the epoch's timings, which one may still save when the loss is NaN, what
the backup's commit covers. build_callbacks owns all of those rules; the helpers below
only construct.
"""

from __future__ import annotations

from dataclasses import dataclass

from bigmodel_cli import console, run_dir
from bigmodel_cli.performance import MAX_SECONDS_PER_EXECUTION, TRAIN_FLOPS_PER_FORWARD, peak_flops
from bigmodel_cli.tfenv import import_keras
from bigmodel_cli.training import prune
from bigmodel_cli.training.backup import folder_of, read_attachment, read_carry
from bigmodel_cli.training.backup_writer import BackupWriter
from bigmodel_cli.training.build import Built
from bigmodel_cli.training.callbacks.checkpoints import Checkpoints
from bigmodel_cli.training.callbacks.early_stopping import ResumableEarlyStopping
from bigmodel_cli.training.callbacks.execution import ExecutionBound, TimeLimit
from bigmodel_cli.training.callbacks.metrics_csv import MetricsCSV
from bigmodel_cli.training.callbacks.monitor import monitor_mode
from bigmodel_cli.training.callbacks.nan_guard import NaNGuard
from bigmodel_cli.training.callbacks.progress import LiveProgressCallback, ProgressCallback
from bigmodel_cli.training.callbacks.resume_backup import Resume, ResumeBackup
from bigmodel_cli.training.callbacks.signals import StopRequest
from bigmodel_cli.training.callbacks.tensorboard import TensorBoardScalars
from bigmodel_cli.training.callbacks.throughput import Throughput
from bigmodel_cli.training.options import TrainOptions
from bigmodel_cli.training.prepare import Prepared
from bigmodel_cli.training.run_directory import Claimed
from bigmodel_cli.training.runtime import Runtime
from bigmodel_cli.training.start import Start
from bigmodel_cli.training.transfer import unfreezing


@dataclass(frozen=True)
class Callbacks:
    """The callbacks of one fit, in order, and the ones the recipe reads afterwards."""

    all: list
    throughput: Throughput
    checkpoints: Checkpoints
    backup: ResumeBackup
    stop: StopRequest


def build_callbacks(start: Start, claimed: Claimed, runtime: Runtime, data: Prepared,
                    built: Built, options: TrainOptions) -> Callbacks:  # fmt: skip
    """Every callback of the run, in the one order that is right (each rule said here)."""
    keras = import_keras()
    cfg, run = start.cfg, claimed.run
    monitor = "val_loss" if data.val_ds is not None else "loss"
    throughput = _throughput(start, runtime, data, built)
    checkpoints = Checkpoints(
        run.best, run.last, monitor, monitor_mode(monitor), start.state.get("best"),
        best_from_epoch=prune.best_from_epoch(cfg),
    )  # fmt: skip
    early_stopping = _early_stopping(start)
    minutes = cfg.train.time_limit_minutes
    time_limit = TimeLimit(minutes) if minutes is not None else None
    remembered = _Remembered(start, checkpoints, early_stopping, time_limit)
    stop = StopRequest()
    resume_backup = _resume_backup(start, claimed, runtime, data, throughput, stop, remembered)
    unfreeze = unfreezing(built.model, cfg.init)
    callbacks: list = [
        throughput,  # first: the others read its epoch timings
        *([unfreeze] if unfreeze is not None else []),  # before the epoch's first step
        NaNGuard(),  # before anything that saves: a NaN step raises here
        # Re-masks the kernels at each epoch's end, before anything saves them.
        *([prune.update_step_callback()] if prune.is_wrapped(built.model) else []),
        MetricsCSV(run.metrics, throughput),
        *([checkpoints] if options.save_checkpoints else []),
        keras.callbacks.TensorBoard(str(run.tensorboard), write_graph=True, profile_batch=0),
        TensorBoardScalars(run.tensorboard, throughput),
    ]
    # Before the backup: the commit at an epoch's end records whether they ended training.
    callbacks += [c for c in (early_stopping, time_limit) if c is not None]
    if cfg.train.steps_per_execution == "auto" and not runtime.multi_worker:
        # Workers must back up at the same steps, so only a single process adapts.
        callbacks.append(ExecutionBound(MAX_SECONDS_PER_EXECUTION))
    # Last of the run's own at each epoch end and at the end of training: after every
    # record of the epoch (metrics row, checkpoints, early stopping's decision and
    # restored weights), so a kill before its commit replays the epoch, whose row
    # MetricsCSV then rewrites.
    callbacks.append(resume_backup)
    if options.progress and claimed.is_chief:  # one display per cluster
        callbacks.append(_progress(start, data, throughput))
    # A caller's own (a tuner's pruner) come after: at each epoch end they see the epoch
    # committed (metrics row, checkpoints, backup).
    callbacks.extend(options.callbacks)
    return Callbacks(callbacks, throughput, checkpoints, resume_backup, stop)


def _examples_per_epoch(start: Start, n_train: int, steps_per_epoch: int) -> int:
    if start.cfg.train.steps_per_epoch:  # a capped epoch draws full batches from a repeated split
        return steps_per_epoch * start.cfg.data.batch_size
    return n_train


def _throughput(start: Start, runtime: Runtime, data: Prepared, built: Built) -> Throughput:
    """Counts tokens for language models (the FLOPs per token), examples otherwise."""
    spec, placement = data.spec, runtime.placement
    tokens_per_example = (spec.sequence_length or 1) if spec.task == "language_model" else 1
    examples = _examples_per_epoch(start, len(data.bundle.train), data.steps_per_epoch)
    throughput = Throughput(
        start.cfg.data.batch_size,
        examples * tokens_per_example,
        data.steps_per_epoch,
        tokens_per_example,
        train_flops_per_item=TRAIN_FLOPS_PER_FORWARD * built.flops / tokens_per_example,
        peak_flops=peak_flops(placement.devices[0], built.precision) * placement.replicas,
    )
    if start.position.step:
        throughput.carry(start.position.epoch, start.state.get("epoch_seconds", 0.0))
    return throughput


def _early_stopping(start: Start) -> ResumableEarlyStopping | None:
    es = start.cfg.train.early_stopping
    if not es:
        return None
    saved = None
    if start.commit is not None and start.run is not None:
        saved = read_attachment(start.run.backup, start.commit, ResumableEarlyStopping.ATTACHMENT)
    return ResumableEarlyStopping(
        state=start.state.get("early_stopping"),
        best_weights=ResumableEarlyStopping.weights_from(saved),
        monitor=es.monitor,
        patience=es.patience,
        min_delta=es.min_delta,
        mode=monitor_mode(es.monitor) if es.mode == "auto" else es.mode,
        restore_best_weights=es.restore_best_weights,
        start_from_epoch=prune.best_from_epoch(start.cfg),  # a pruned run: at full sparsity
    )


@dataclass(frozen=True)
class _Remembered:
    """The callbacks whose memory each backup commits, and who can end training early."""

    start: Start
    checkpoints: Checkpoints
    early_stopping: ResumableEarlyStopping | None
    time_limit: TimeLimit | None

    def memory(self) -> dict:
        remembered = {"best": self.checkpoints.state()}
        if self.early_stopping is not None:
            remembered["early_stopping"] = self.early_stopping.state()
        return remembered

    def attachments(self) -> dict:
        return self.early_stopping.attachment() if self.early_stopping is not None else {}

    def ending(self) -> dict:
        """How training ended: why, and which weights the final model holds."""
        commit, state = self.start.commit, self.start.state
        if commit is not None and commit.finished:
            return commit.finished
        if state.get("ending"):  # resumed from the commit made as training ended
            return state["ending"]
        es = self.early_stopping
        reason = "epochs_completed"
        if es is not None and es.stopped_epoch > 0:
            reason = "early_stopping"
        elif self.time_limit is not None and self.time_limit.reached:
            reason = "time_limit"
        weights, epoch = "the last epoch's", None
        if es is not None and es.restore_best_weights and es.best_weights is not None:
            epoch = es.best_epoch + 1
            weights = f"the best epoch's ({epoch}, by {es.monitor})"
        return {"stop_reason": reason, "final_weights": weights, "final_weights_epoch": epoch}


def _resume_backup(start: Start, claimed: Claimed, runtime: Runtime, data: Prepared,
                   throughput: Throughput, stop: StopRequest,
                   remembered: _Remembered) -> ResumeBackup:  # fmt: skip
    resume = None
    if start.commit is not None and start.commit.checkpoint is not None:
        folder = folder_of(start.run.backup)  # every worker restores the chief's
        resume = Resume(start.commit, folder, read_carry(start.run.backup, start.commit))
    run = claimed.run
    writer = BackupWriter(
        run.backup,
        None,
        records=claimed.is_chief,
        last=start.commit,
        config_sha256=run_dir.sha256_of(run.config) if claimed.is_chief else None,
    )
    return ResumeBackup(
        writer,
        resume,
        data.steps_per_epoch,
        start.cfg.train.checkpoint.every_steps,
        stop,
        remembered.memory,
        remembered.ending,
        throughput,
        carry_metrics=not runtime.multi_worker,
        attachments=remembered.attachments,
    )


def _progress(start: Start, data: Prepared, throughput: Throughput) -> ProgressCallback:
    unit = "tok" if data.spec.task == "language_model" else "ex"
    display = console.EpochProgress(
        console.err, start.cfg.train.epochs, data.steps_per_epoch, unit=unit,
        first_step=start.position.step,
    )  # fmt: skip
    progress = LiveProgressCallback if display.live else ProgressCallback
    return progress(display, throughput)

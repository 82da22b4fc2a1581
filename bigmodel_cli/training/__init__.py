"""The training recipe: seed, strategy, data, model, compile, fit, save, in that order.

Everything that can be the user's fault (config, data, model shape) is checked before
the run directory exists, so a mistake never leaves an empty or half-made run behind.
Under multi-worker training every worker runs this recipe; only the chief writes the
run directory (the others write to a temporary folder they remove).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bigmodel_cli import console, faults, run_dir
from bigmodel_cli.config import Config
from bigmodel_cli.config import load as config_load
from bigmodel_cli.errors import ConfigError, Interrupted, TrainingFailed, UserError
from bigmodel_cli.models import memory
from bigmodel_cli.tfenv import import_keras, import_tensorflow
from bigmodel_cli.training import backup

LOWER_IS_BETTER = ("loss", "mae", "mse", "rmse", "perplexity")


@dataclass
class TrainOptions:
    """How `bigmodel train` was asked to run (beyond the config itself)."""

    config_path: Path | None = None
    overrides: list[str] = field(default_factory=list)
    run_dir: Path | None = None
    resume: Path | None = None
    progress: bool = True  # progress bars and notes on stderr (off for smoke runs)
    # Off for smoke runs, whose few steps need neither: scoring the test split with the
    # saved model at the end, and checkpoints/best.keras and last.keras at each epoch
    # (model.keras and the resume backup are still written).
    score_test: bool = True
    save_checkpoints: bool = True
    # Off for smoke runs, whose few steps need neither: scoring the test split with the
    # saved model at the end, and checkpoints/best.keras and last.keras at each epoch
    # (model.keras and the resume backup are still written).
    score_test: bool = True
    save_checkpoints: bool = True
    command: list[str] = field(default_factory=lambda: list(sys.argv))
    # More Keras callbacks (e.g. a tuner's pruner), run after the run's own: at each
    # epoch end they see the epoch committed (metrics row, checkpoints, backup).
    callbacks: list = field(default_factory=list)


def monitor_mode(monitor: str) -> str:
    """`min` for losses and errors, `max` for accuracy-like metrics (Keras's `auto`
    guesses `min` for f1, precision and recall, which is wrong)."""
    return "min" if monitor.removeprefix("val_") in LOWER_IS_BETTER else "max"


def _check_monitor(cfg: Config, metric_names: list[str], has_validation: bool) -> None:
    stopping = cfg.train.early_stopping
    if stopping is None:
        return
    known = ["loss", *metric_names]
    if has_validation:
        known += [f"val_{name}" for name in known]
    if stopping.monitor not in known:
        hint = ""
        if stopping.monitor.startswith("val_") and not has_validation:
            hint = " (no validation split: set data.validation_split > 0)"
        raise ConfigError(
            f"train.early_stopping.monitor: {stopping.monitor!r} is not logged{hint}; "
            f"expected one of: {', '.join(known)}"
        )


def _check_fit(cfg: Config, spec: Any, n_train: int) -> None:
    """Data that cannot train this model as configured: caught before the first step."""
    problems = []
    if n_train < cfg.data.batch_size:
        problems.append(
            f"data.batch_size: {cfg.data.batch_size} is larger than the training split "
            f"({n_train} examples); lower it, or use more data"
        )
    classes = spec.num_classes or 0
    if spec.task != "regression" and cfg.model.outputs and 1 < cfg.model.outputs < classes:
        problems.append(
            f"model.outputs: {cfg.model.outputs} output units, but the labels have {classes} "
            f"classes (0..{classes - 1}); remove model.outputs or set it to {classes}"
        )
    if problems:
        raise UserError(problems)


def _peer_errors() -> tuple[type[BaseException], ...]:
    """The errors collectives raise when another worker is gone."""
    tf = import_tensorflow()

    return (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.DeadlineExceededError)


def _peer_lost_message(err: BaseException, resume_command: str, is_chief: bool) -> str:
    """What a surviving worker says when a peer dies mid-training: TensorFlow's
    coordination service notices the missing heartbeats and aborts the collectives."""
    text = " ".join(str(getattr(err, "message", err)).split())
    start = text.find("The following tasks")
    reason = text[start:] if start >= 0 else text
    reason = reason.split(" The tasks have crashed")[0][:300]
    restart = (
        f"The last backup is kept; restart every worker, this one with: {resume_command} "
        "(the run directory must be on storage all workers share)"
        if is_chief
        else "Restart this worker together with the chief, which prints the resume command"
    )
    return f"a worker stopped during training: {reason}. {restart}."


def _absolute_paths(cfg: Config, base_dir: Path) -> Config:
    """The run's config.yaml must work from anywhere: make data.path and data.paths
    absolute (data.paths are glob patterns: see file_globs.anchored)."""
    from bigmodel_cli.data.files import anchored

    base = base_dir.resolve()
    update = {}
    if cfg.data.path:
        path = cfg.data.path
        update["path"] = (
            path if path.startswith("~") or Path(path).is_absolute() else str(base / path)
        )
    if cfg.data.paths:
        update["paths"] = [anchored(p, base) for p in cfg.data.paths]
    if not update:
        return cfg
    return cfg.model_copy(update={"data": cfg.data.model_copy(update=update)})


@dataclass
class _Start:
    """Where a run starts: a fresh config, or a run directory to resume."""

    cfg: Config
    base_dir: Path
    run: run_dir.RunDir | None = None
    resumed_from: str | None = None
    commit: backup.Commit | None = None  # the verified last backup of a resumed run
    finished: dict | None = None  # the summary of a run that already completed

    @property
    def position(self) -> backup.Position:
        return self.commit.position if self.commit is not None else backup.Position()

    @property
    def state(self) -> dict:
        return self.commit.state if self.commit is not None else {}


def _start(cfg: Config | None, options: TrainOptions) -> _Start:
    if options.resume is None:
        if cfg is None:
            raise UserError("missing CONFIG: bigmodel train CONFIG (or --resume RUN_DIR)")
        base_dir = options.config_path.parent if options.config_path else Path.cwd()
        return _Start(cfg, base_dir)
    path = run_dir.absolute(options.resume, "--resume")
    run = run_dir.RunDir(path)
    if not run_dir.is_run_dir(path):
        raise UserError(f"--resume {options.resume}: not a run directory (no {run_dir.CONFIG})")
    cfg = config_load.config_from_mapping(config_load.read_yaml_mapping(run.config))
    previous = run_dir.read_json(run.summary) if run.summary.exists() else {}
    start = _Start(cfg, run.root, run, str(run.root))
    if previous.get("status") == "completed":
        start.finished = {**previous, "run_dir": str(run.root)}
        return start
    start.commit = backup.read_commit(run.backup, config=run.config)
    run_dir.check_metrics(run.metrics, start.position.epoch, run.backup)
    return start


def _environment(placement: Any, precision: str, options: TrainOptions) -> dict[str, Any]:
    import platform

    import numpy as np

    keras = import_keras()

    from bigmodel_cli import __version__

    tf = import_tensorflow()
    return {
        "bigmodel": __version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "tf_keras": keras.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "hostname": platform.node(),
        "devices": [d.name for d in tf.config.list_logical_devices()],
        "strategy": placement.name,
        "replicas": placement.replicas,
        "is_chief": placement.is_chief,
        "strategy_devices": placement.devices,
        "precision": precision,
        "command": shlex.join(options.command),
    }


@contextlib.contextmanager
def _stop_on_signals(stop: Any) -> Iterator[None]:
    """SIGINT and SIGTERM ask training to stop after the graph call under way, with a
    backup (ResumeBackup reads `stop`); a second signal stops at once (KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return

    def request(signum: int, frame: Any) -> None:
        if stop.signal is not None:
            raise KeyboardInterrupt
        stop.signal = signum
        console.note(
            f"{signal.Signals(signum).name}: saving a backup at the next step, then stopping "
            "(Ctrl-C again to stop at once)"
        )

    previous = {}
    for number in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(number) is not signal.SIG_IGN:  # e.g. under nohup: keep ignoring
            previous[number] = signal.signal(number, request)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _examples_per_epoch(cfg: Config, n_train: int, steps_per_epoch: int) -> int:
    if cfg.train.steps_per_epoch:  # a capped epoch draws full batches from a repeated split
        return steps_per_epoch * cfg.data.batch_size
    return n_train


def train(cfg: Config | None, options: TrainOptions) -> dict[str, Any]:
    """Train per `cfg` (or resume `options.resume`); return the content of summary.json."""
    # === Config ===
    start = _start(cfg, options)
    if start.finished is not None:
        # A kill between summary.json and the backup's removal leaves the backup behind.
        backup.remove(start.run.backup)
        console.note(f"{start.run.root}: this run already finished; nothing to resume.")
        return start.finished
    from bigmodel_cli import distribution

    # Strategies that wait for other machines get a bound on start-up; it is cancelled
    # once the model exists, and on every way out (a data error must not leave it armed).
    deadline = distribution.startup_deadline(start.cfg.distribute)
    try:
        return _train(start, options, deadline)
    finally:
        if deadline is not None:
            deadline.cancel()


# === The recipe's steps, in the order they happen ============================


@dataclass
class Runtime:
    """Strategy, devices and precision, chosen before anything is built."""

    placement: Any
    precision: str


@dataclass
class Prepared:
    """The data, split and laid out, and the streams fit() reads."""

    bundle: Any
    spec: Any
    loss_cfg: Any
    metric_names: list[str]
    train_ds: Any
    val_ds: Any
    steps_per_epoch: int
    batches_per_epoch: int


@dataclass
class Built:
    model: Any
    flops: int
    precision: str
    steps_per_execution: int
    memory_estimate: int


@dataclass
class Claimed:
    """The run directory this process writes (a scratch one for non-chief workers)."""

    run: run_dir.RunDir
    scratch: Path | None

    @property
    def is_chief(self) -> bool:
        return self.scratch is None


def _setup_runtime(cfg: Config) -> Runtime:
    keras = import_keras()

    from bigmodel_cli import distribution

    placement = distribution.make_strategy(cfg.distribute)  # first: multi-worker needs that
    if placement.name == "multi_worker" and cfg.train.time_limit_minutes is not None:
        # Each worker would read its own clock: one could stop while another starts the
        # next epoch and waits for it in a collective forever.
        raise UserError(
            "train.time_limit_minutes: not supported with several workers (each would stop "
            "by its own clock); set train.epochs instead"
        )
    keras.utils.set_random_seed(cfg.seed)
    # Dropout and other random layers draw from a tf.random.Generator each, whose state
    # the resume backup records, so a resumed run draws the masks the whole run would.
    keras.backend.experimental.enable_tf_random_generator()
    if cfg.train.deterministic:
        tf = import_tensorflow()

        tf.config.experimental.enable_op_determinism()
    return Runtime(placement, distribution.resolve_precision(cfg.train.mixed_precision, placement))


def _prepare_data(cfg: Config, start: _Start) -> Prepared:
    from bigmodel_cli import data as data_lib
    from bigmodel_cli.config import defaults

    # A resumed run reuses its own vocabulary rather than learning it again.
    saved_vocabulary = run_dir.read_vocabulary(start.run) if start.run is not None else None
    bundle = data_lib.load_data(
        cfg, start.base_dir, vocabulary=saved_vocabulary, same_corpus=start.run is not None
    )
    spec = bundle.spec
    loss_cfg = defaults.effective_loss(cfg, spec)
    metric_names = defaults.effective_metrics(cfg, spec)
    _check_monitor(cfg, metric_names, bundle.validation is not None)
    _check_fit(cfg, spec, len(bundle.train))
    batches_per_epoch = math.ceil(len(bundle.train) / cfg.data.batch_size)
    steps_per_epoch = cfg.train.steps_per_epoch or batches_per_epoch
    if start.commit is not None:
        position = start.commit.position.normalized(steps_per_epoch)
        start.commit = dataclasses.replace(start.commit, position=position)
    # An endless stream of seeded epochs, started where a resumed run's backup ends.
    stream_start = start.position.stream_start(steps_per_epoch, batches_per_epoch)
    train_ds = data_lib.make_dataset(bundle.train, cfg, spec, training=True, start=stream_start)
    val_ds = None
    if bundle.validation is not None:
        val_ds = data_lib.make_dataset(bundle.validation, cfg, spec, training=False)
    return Prepared(
        bundle, spec, loss_cfg, metric_names, train_ds, val_ds, steps_per_epoch, batches_per_epoch
    )


def _build_and_compile(cfg: Config, runtime: Runtime, data: Prepared) -> Built:
    keras = import_keras()

    from bigmodel_cli import distribution, registry
    from bigmodel_cli.models import build_model
    from bigmodel_cli.models.flops import flops_per_example
    from bigmodel_cli.performance import auto_steps_per_execution

    placement = runtime.placement
    # Exit 2 before any weight exists when the model, its optimizer, a batch's
    # activations and the data cannot fit in the memory available.
    estimate = memory.check(cfg, data.spec, data.bundle, runtime.precision, placement.devices)

    def build(policy: str) -> keras.Model:
        keras.backend.clear_session()
        keras.utils.set_random_seed(cfg.seed)  # the same initial weights whatever the policy
        distribution.set_precision(policy)
        with placement.strategy.scope():
            return build_model(cfg, data.spec)

    precision = runtime.precision
    model = build(precision)
    flops = flops_per_example(model)
    batch_size = cfg.data.batch_size
    if distribution.prefers_bf16(cfg.train.mixed_precision, placement, flops, batch_size):
        precision = "mixed_bfloat16"
        model = build(precision)
    steps_per_execution = cfg.train.steps_per_execution
    if steps_per_execution == "auto":
        steps_per_execution = auto_steps_per_execution(flops, batch_size, data.steps_per_epoch)
    with placement.strategy.scope():
        model.compile(
            optimizer=registry.build_optimizer(
                cfg.optimizer, data.steps_per_epoch * cfg.train.epochs
            ),
            loss=registry.build_loss(data.loss_cfg),
            metrics=registry.build_metrics(data.metric_names, data.loss_cfg, data.spec),
            steps_per_execution=steps_per_execution,
            jit_compile=cfg.train.jit_compile,
        )
    return Built(model, flops, precision, steps_per_execution, estimate.total)


@contextlib.contextmanager
def _claim_run_dir(
    cfg: Config, start: _Start, options: TrainOptions, runtime: Runtime, data: Prepared,
    environment: dict[str, Any],
) -> Iterator[Claimed]:  # fmt: skip
    """The run directory, created only now that nothing the user wrote can fail, and held
    (one trainer per run directory) until the summary is written. Workers other than the
    chief write to a scratch folder they remove."""
    scratch = None
    run = start.run
    faults.point("before_run_dir")
    if not runtime.placement.is_chief:
        scratch = Path(tempfile.mkdtemp(prefix="bigmodel-worker-"))
        run = run_dir.create_run_dir(scratch, cfg.name)
    elif run is None:
        run = run_dir.create_run_dir(Path(cfg.output.dir), cfg.name, options.run_dir)
    held = contextlib.ExitStack()
    try:
        with run_dir.removed_on_failure(run, fresh=start.run is None):  # e.g. a full disk
            if scratch is None:
                held.enter_context(run_dir.locked(run, console.note))
            if start.run is None or scratch is not None:
                run_dir.atomic_write_text(run.config, config_load.dump_config(
                    _absolute_paths(cfg, start.base_dir)))  # fmt: skip
            run_dir.make_folders(run)
            if data.bundle.vocabulary is not None and start.run is None:
                run_dir.write_vocabulary(run, data.bundle.vocabulary)
            run_dir.atomic_write_json(run.environment, environment)
        faults.point("run_dir_created")
        yield Claimed(run, scratch)
    finally:
        held.close()
        if scratch is not None:
            with contextlib.suppress(OSError):
                shutil.rmtree(scratch)


@dataclass
class Callbacks:
    """The callbacks of one fit, in order, and the ones the recipe reads afterwards."""

    all: list
    throughput: Any
    checkpoints: Any
    early_stopping: Any
    time_limit: Any
    backup: Any
    stop: Any
    monitor: str


def _build_callbacks(
    cfg: Config, start: _Start, claimed: Claimed, runtime: Runtime, data: Prepared, built: Built,
    options: TrainOptions,
) -> Callbacks:  # fmt: skip
    """Every callback of the run, in the one order that is right (see the comments)."""
    keras = import_keras()

    from bigmodel_cli.performance import (
        MAX_SECONDS_PER_EXECUTION,
        TRAIN_FLOPS_PER_FORWARD,
        peak_flops,
    )
    from bigmodel_cli.training import callbacks as cb

    run, spec, state = claimed.run, data.spec, start.state
    monitor = "val_loss" if data.val_ds is not None else "loss"
    tokens_per_example = (spec.sequence_length or 1) if spec.task == "language_model" else 1
    peak = peak_flops(runtime.placement.devices[0], built.precision) * runtime.placement.replicas
    throughput = cb.Throughput(
        cfg.data.batch_size,
        _examples_per_epoch(cfg, len(data.bundle.train), data.steps_per_epoch) * tokens_per_example,
        data.steps_per_epoch,
        tokens_per_example,
        train_flops_per_item=TRAIN_FLOPS_PER_FORWARD * built.flops / tokens_per_example,
        peak_flops=peak,
    )
    if start.position.step:
        throughput.carry(start.position.epoch, state.get("epoch_seconds", 0.0))
    checkpoints = cb.Checkpoints(
        run.best, run.last, monitor, monitor_mode(monitor), state.get("best")
    )
    early_stopping = None
    if cfg.train.early_stopping:
        es = cfg.train.early_stopping
        saved = None
        if start.commit is not None and start.run is not None:
            saved = backup.read_attachment(
                start.run.backup, start.commit, cb.ResumableEarlyStopping.ATTACHMENT
            )
        early_stopping = cb.ResumableEarlyStopping(
            state=state.get("early_stopping"),
            best_weights=cb.ResumableEarlyStopping.weights_from(saved),
            monitor=es.monitor,
            patience=es.patience,
            min_delta=es.min_delta,
            mode=monitor_mode(es.monitor) if es.mode == "auto" else es.mode,
            restore_best_weights=es.restore_best_weights,
        )
    time_limit = None
    if cfg.train.time_limit_minutes is not None:
        time_limit = cb.TimeLimit(cfg.train.time_limit_minutes)
    stop = cb.StopRequest()

    def ending() -> dict:
        """How training ended: why, and which weights the final model holds."""
        if start.commit is not None and start.commit.finished:
            return start.commit.finished
        if state.get("ending"):  # resumed from the commit made as training ended
            return state["ending"]
        reason = "epochs_completed"
        if early_stopping is not None and early_stopping.stopped_epoch > 0:
            reason = "early_stopping"
        elif time_limit is not None and time_limit.reached:
            reason = "time_limit"
        weights, epoch = "the last epoch's", None
        es = early_stopping
        if es is not None and es.restore_best_weights and es.best_weights is not None:
            epoch = es.best_epoch + 1
            weights = f"the best epoch's ({epoch}, by {es.monitor})"
        return {"stop_reason": reason, "final_weights": weights, "final_weights_epoch": epoch}

    def memory() -> dict:
        remembered = {"best": checkpoints.state()}
        if early_stopping is not None:
            remembered["early_stopping"] = early_stopping.state()
        return remembered

    resume = None
    if start.commit is not None and start.commit.checkpoint is not None:
        folder = backup.folder_of(start.run.backup)  # every worker restores the chief's
        resume = cb.Resume(start.commit, folder, backup.read_carry(start.run.backup, start.commit))
    writer = backup.BackupWriter(
        run.backup,
        None,
        records=claimed.is_chief,
        last=start.commit,
        config_sha256=run_dir.sha256_of(run.config) if claimed.is_chief else None,
    )
    resume_backup = cb.ResumeBackup(
        writer,
        resume,
        data.steps_per_epoch,
        cfg.train.checkpoint.every_steps,
        stop,
        memory,
        ending,
        throughput,
        carry_metrics=runtime.placement.name != "multi_worker",
        attachments=early_stopping.attachment if early_stopping is not None else dict,
    )
    callbacks: list = [
        throughput,  # first: the others read its epoch timings
        cb.NaNGuard(),  # before anything that saves: a NaN step raises here
        cb.MetricsCSV(run.metrics, throughput),
        *([checkpoints] if options.save_checkpoints else []),
        keras.callbacks.TensorBoard(str(run.tensorboard), write_graph=True, profile_batch=0),
        cb.TensorBoardScalars(run.tensorboard, throughput),
    ]
    if early_stopping is not None:
        callbacks.append(early_stopping)
    if time_limit is not None:
        callbacks.append(time_limit)
    if cfg.train.steps_per_execution == "auto" and runtime.placement.name != "multi_worker":
        # Workers must back up at the same steps, so only a single process adapts.
        callbacks.append(cb.ExecutionBound(MAX_SECONDS_PER_EXECUTION))
    # Last at each epoch end and at the end of training: after every record of the
    # epoch (metrics row, checkpoints, early stopping's decision and restored weights).
    callbacks.append(resume_backup)
    if options.progress and claimed.is_chief:
        unit = "tok" if spec.task == "language_model" else "ex"
        display = console.EpochProgress(
            console.err, cfg.train.epochs, data.steps_per_epoch, unit=unit,
            first_step=start.position.step,
        )  # fmt: skip
        progress = cb.LiveProgressCallback if display.live else cb.ProgressCallback
        callbacks.append(progress(display, throughput))
    callbacks.extend(options.callbacks)
    return Callbacks(
        callbacks, throughput, checkpoints, early_stopping, time_limit, resume_backup, stop,
        monitor,
    )  # fmt: skip


def _resume_note(cfg: Config, start: _Start, data: Prepared) -> None:
    if start.commit is None or start.commit.checkpoint is None:
        if start.run is not None:
            console.note(f"resuming {start.run.root}: no backup yet, starting from the first step")
        return
    position = start.position
    if start.commit.finished or start.state.get("ending") or position.epoch >= cfg.train.epochs:
        console.note("resuming: training had finished; writing the run's final files")
    elif position.step:
        console.note(
            f"resuming at epoch {position.epoch + 1}, step {position.step} of "
            f"{data.steps_per_epoch} (of {cfg.train.epochs} epochs)"
        )
    else:
        console.note(f"resuming at epoch {position.epoch + 1} of {cfg.train.epochs}")


def _fit(cfg: Config, start: _Start, claimed: Claimed, runtime: Runtime, data: Prepared,
         built: Built, callbacks: Callbacks) -> None:  # fmt: skip
    """Train (or, when the backup says training ended, only finish it)."""
    from bigmodel_cli.training import callbacks as cb

    run, model = claimed.run, built.model
    resume_command = f"bigmodel train --resume {shlex.quote(str(run.root))}"
    if start.commit is not None and start.commit.finished:
        # Killed after training ended: the final weights are in the backup.
        checkpoint, _, _ = cb.training_checkpoint(model)
        folder = backup.folder_of(start.run.backup)
        cb.restore_checkpoint(checkpoint, folder / start.commit.checkpoint)
        return
    # A commit made as training ended (early stopping, time limit) runs no epoch: fit()
    # only restores it and lets the callbacks end the run (best weights, final commit).
    epochs = start.position.epoch if start.state.get("ending") else cfg.train.epochs
    try:
        model.fit(
            data.train_ds,
            validation_data=data.val_ds,
            epochs=epochs,
            initial_epoch=min(start.position.epoch, epochs),
            steps_per_epoch=data.steps_per_epoch,  # the stream is endless
            callbacks=callbacks.all,
            verbose=0,
        )
    except cb.StoppedBySignal:
        _stop_progress(callbacks)
        stop = callbacks.stop
        where = callbacks.backup.writer.last.position
        name = signal.Signals(stop.signal).name
        raise Interrupted(
            stop.signal,
            f"{name}: stopped at epoch {where.epoch + 1}, step {where.step} of "
            f"{data.steps_per_epoch}, after saving a backup; resume with: {resume_command}",
        ) from None
    except cb.LossNotFinite as err:
        _stop_progress(callbacks)
        good = run.best if run.best.exists() else None
        message = (
            f"the loss became NaN/Inf at epoch {err.epoch}, step {err.step} (within "
            f"{built.steps_per_execution} steps per execution). "
            + (f"The last good checkpoint is {good}. " if good else "")
            + "Try a lower optimizer.learning_rate, optimizer.clipnorm: 1.0, or "
            "train.mixed_precision: float32."
        )
        if claimed.is_chief:  # so `bigmodel runs` tells a failed run from an interrupted one
            failed = {"name": cfg.name, "run_dir": str(run.root), "status": "failed"}
            run_dir.atomic_write_json(run.summary, {**failed, "error": message})
        raise TrainingFailed(message) from None
    except KeyboardInterrupt:  # a second Ctrl-C: stop now, with the last backup
        _stop_progress(callbacks)
        console.note(f"interrupted; resume from the last backup with: {resume_command}")
        raise
    except Exception as err:
        if runtime.placement.name != "multi_worker" or not isinstance(err, _peer_errors()):
            raise
        raise TrainingFailed(_peer_lost_message(err, resume_command, claimed.is_chief)) from None


def _stop_progress(callbacks: Callbacks) -> None:
    for callback in callbacks.all:
        display = getattr(callback, "display", None)
        if display is not None:
            display.stop()


def _summarize(cfg: Config, start: _Start, claimed: Claimed, runtime: Runtime, data: Prepared,
               built: Built, callbacks: Callbacks, options: TrainOptions, started: float,
               ) -> dict[str, Any]:  # fmt: skip
    """Save model.keras, score the test split, write summary.json, drop the backup: the
    backup stays until the final files are committed, so a kill in between only makes
    `--resume` finish them."""
    keras = import_keras()

    from bigmodel_cli import data as data_lib
    from bigmodel_cli.inference.evaluate import score_saved_model
    from bigmodel_cli.training import callbacks as cb

    run, model, spec = claimed.run, built.model, data.spec
    faults.point("before_model_save")
    cb.save_model_atomically(model, run.model)
    test_metrics, scored = None, None
    if data.bundle.test is not None and options.score_test:
        test_metrics, scored = score_saved_model(run, data.bundle.test, cfg, spec)
    rows = cb.read_metrics_rows(run.metrics)
    history = cb.history_of(rows)
    ending = callbacks.backup.ending()
    seconds = sum(float(r.get("seconds") or 0) for r in rows)
    examples = sum(float(r.get("seconds") or 0) * float(r.get("examples_per_second") or 0)
                   for r in rows)  # fmt: skip
    rate = examples / seconds if seconds else 0.0
    checkpoints = callbacks.checkpoints
    summary = {
        "name": cfg.name,
        # Only the chief keeps a run directory; other workers' scratch is removed.
        "run_dir": str(run.root) if claimed.is_chief else None,
        "status": "completed",
        "stop_reason": ending["stop_reason"],
        "epochs_run": len(rows),
        "epochs_requested": cfg.train.epochs,
        "best_epoch": checkpoints.best_epoch,
        "best": {"monitor": checkpoints.monitor, "value": checkpoints.best_value},
        "final_weights": ending["final_weights"],
        # The epoch model.keras's weights are from (None: the last one trained).
        "final_weights_epoch": ending.get("final_weights_epoch"),
        "final": history,
        "test": test_metrics,
        "test_model": str(scored) if scored else None,
        "params": int(model.count_params()),
        "trainable_params": int(
            sum(keras.backend.count_params(w) for w in model.trainable_weights)
        ),
        "flops_per_example": int(built.flops),
        "train_seconds": round(seconds, 3),
        "wall_seconds": round(time.perf_counter() - started, 3),
        "examples_per_second": round(rate, 1),
        "mfu": round(
            callbacks.throughput.train_flops_per_item * rate / callbacks.throughput.peak_flops, 5
        )
        if callbacks.throughput.peak_flops
        else 0.0,  # fmt: skip
        "peak_flops": callbacks.throughput.peak_flops,
        "steps_per_execution": built.steps_per_execution,
        "memory_estimate_bytes": built.memory_estimate,
        "peak_rss_bytes": memory.peak_rss_bytes(),
        "jit_compile": cfg.train.jit_compile,
        "strategy": runtime.placement.name,
        "replicas": runtime.placement.replicas,
        "precision": built.precision,
        "data": data_lib.describe(data.bundle),
        "resumed_from": start.resumed_from,
        # Where training picked up: (epoch, step) counted from 0.
        "resumed_at": {"epoch": start.position.epoch, "batch": start.position.step}
        if start.resumed_from
        else None,
    }
    if spec.task == "language_model":
        summary["tokens_per_second"] = summary.pop("examples_per_second")
    faults.point("before_summary")
    run_dir.atomic_write_json(run.summary, summary)
    faults.point("after_summary")
    backup.remove(run.backup)
    run.state.unlink(missing_ok=True)  # callback state of bigmodel 0.1's backups
    return summary


STOP_REASONS = {
    "early_stopping": "early stopping",
    "time_limit": "the time limit",
    "epochs_completed": "the last epoch",
}


def _end_note(summary: dict[str, Any]) -> None:
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


def _train(start: _Start, options: TrainOptions, deadline: Any) -> dict[str, Any]:
    """The recipe itself (see the module docstring)."""
    import_tensorflow()  # heavy imports only once the config is known to be valid
    cfg, started = start.cfg, time.perf_counter()
    runtime = _setup_runtime(cfg)
    # Synthetic data is refused before it is generated when it (or its model) cannot fit.
    memory.check_before_data(cfg, runtime.precision, runtime.placement.devices)
    data = _prepare_data(cfg, start)
    built = _build_and_compile(cfg, runtime, data)
    if deadline is not None:
        deadline.cancel()  # every worker has joined: the model's variables exist
    environment = _environment(runtime.placement, built.precision, options)
    with _claim_run_dir(cfg, start, options, runtime, data, environment) as claimed:
        if options.progress and claimed.is_chief:
            console.note(f"run directory: {claimed.run.root}")
            _resume_note(cfg, start, data)
        callbacks = _build_callbacks(cfg, start, claimed, runtime, data, built, options)
        # Signals stay handled until summary.json is written: one that comes after fit
        # lets the (finished) run complete its summary instead of dying without one.
        with _stop_on_signals(callbacks.stop), _file_system_failures(claimed.run, callbacks):
            _fit(cfg, start, claimed, runtime, data, built, callbacks)
            faults.point("after_fit")
            summary = _summarize(
                cfg, start, claimed, runtime, data, built, callbacks, options, started
            )
        if options.progress and claimed.is_chief:
            _end_note(summary)
        return summary


# === A full disk or a read-only folder during training: a message, not a traceback ===


@contextlib.contextmanager
def _file_system_failures(run: run_dir.RunDir, callbacks: Callbacks) -> Iterator[None]:
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
        _stop_progress(callbacks)
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
        where = last.position
        at = f"epoch {where.epoch + 1}, step {where.step}" if where.step else f"epoch {where.epoch}"
        kept.insert(0, f"the backup after {at}")
    kept_text = ", ".join(kept) if kept else "nothing trained yet (the resume starts afresh)"
    fix = run_dir.remedy(reason)
    return (
        f"{what}. Kept: {kept_text}. {fix[0].upper()}{fix[1:]} ({run.root}), then resume "
        f"with: bigmodel train --resume {shlex.quote(str(run.root))}"
    )

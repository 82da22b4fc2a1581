"""The training recipe: seed, strategy, data, model, compile, fit, save, in that order.

Everything that can be the user's fault (config, data, model shape) is checked before
the run directory exists, so a mistake never leaves an empty or half-made run behind.
Under multi-worker training every worker runs this recipe; only the chief writes the
run directory (the others write to a temporary folder they remove).
"""

from __future__ import annotations

import contextlib
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

from bigmodel_cli import config_load, console, run_dir
from bigmodel_cli.config import Config
from bigmodel_cli.errors import ConfigError, Interrupted, TrainingFailed, UserError
from bigmodel_cli.tfenv import import_tensorflow

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
    command: list[str] = field(default_factory=lambda: list(sys.argv))


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
    import tensorflow as tf

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
    from bigmodel_cli.file_globs import anchored

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
    state: dict = field(default_factory=dict)
    finished: dict | None = None


def _start(cfg: Config | None, options: TrainOptions) -> _Start:
    if options.resume is None:
        assert cfg is not None
        base_dir = options.config_path.parent if options.config_path else Path.cwd()
        return _Start(cfg, base_dir)
    path = options.resume.resolve()
    run = run_dir.RunDir(path)
    if not run_dir.is_run_dir(path):
        raise UserError(f"--resume {options.resume}: not a run directory (no {run_dir.CONFIG})")
    cfg = config_load.config_from_mapping(config_load.read_yaml_mapping(run.config))
    previous = run_dir.read_json(run.summary) if run.summary.exists() else {}
    state = run_dir.read_json(run.state) if run.state.exists() else {}
    start = _Start(cfg, run.root, run, str(run.root), state)
    if previous.get("status") == "completed":
        start.finished = previous
    return start


def _environment(placement: Any, precision: str, options: TrainOptions) -> dict[str, Any]:
    import platform

    import numpy as np
    import tf_keras as keras

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
    """SIGINT and SIGTERM ask training to stop at the next step boundary, after a backup
    (SafeBackup reads `stop`); a second signal stops at once (KeyboardInterrupt)."""
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


def _resume_position(backup: Path, steps_per_epoch: int, batches_per_epoch: int) -> tuple[int, int]:
    """Where the training data stream restarts: (epoch of the data, batch within it).

    The backup records the epoch and the last step it covers; the run continues right
    after it, at global batch epoch * steps_per_epoch + step + 1 of the stream of epochs.
    """
    import tensorflow as tf

    from bigmodel_cli.callbacks import latest_backup

    found = latest_backup(backup)
    if found is None:
        return 0, 0
    latest = str(found[0] / found[1])
    reader = tf.train.load_checkpoint(latest)
    names = {name.split("/")[0]: name for name, _ in tf.train.list_variables(latest)}
    epoch = int(reader.get_tensor(names["ckpt_saved_epoch"]))
    step = int(reader.get_tensor(names["ckpt_saved_batch"]))
    done = max(0, epoch) * steps_per_epoch + max(-1, step) + 1
    return divmod(done, batches_per_epoch)


def _examples_per_epoch(cfg: Config, n_train: int, steps_per_epoch: int) -> int:
    if cfg.train.steps_per_epoch:  # a capped epoch draws full batches from a repeated split
        return steps_per_epoch * cfg.data.batch_size
    return n_train


def _epochs_logged(path: Path) -> int:
    if not path.exists():
        return 0
    return max(0, len(path.read_text(encoding="utf-8").splitlines()) - 1)


def train(cfg: Config | None, options: TrainOptions) -> dict[str, Any]:
    """Train per `cfg` (or resume `options.resume`); return the content of summary.json."""
    # === Config ===
    start = _start(cfg, options)
    if start.finished is not None:
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


def _train(start: _Start, options: TrainOptions, deadline: Any) -> dict[str, Any]:
    """The recipe itself (see the module docstring)."""
    cfg = start.cfg

    # Heavy imports only once the config is known to be valid.
    import_tensorflow()
    import tf_keras as keras

    from bigmodel_cli import callbacks as cb
    from bigmodel_cli import data as data_lib
    from bigmodel_cli import defaults, distribution, registry
    from bigmodel_cli.evaluation import score_saved_model
    from bigmodel_cli.flops import flops_per_example
    from bigmodel_cli.models import build_model
    from bigmodel_cli.performance import (
        TRAIN_FLOPS_PER_FORWARD,
        auto_steps_per_execution,
        peak_flops,
    )

    started = time.perf_counter()

    # === Seed, strategy, precision ===
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
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    precision = distribution.resolve_precision(cfg.train.mixed_precision, placement)

    # === Data ===
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
    batch_size = cfg.data.batch_size
    batches_per_epoch = math.ceil(len(bundle.train) / batch_size)
    steps_per_epoch = cfg.train.steps_per_epoch or batches_per_epoch
    # An endless stream of seeded epochs, started where a resumed run's backup ends.
    position = (0, 0)
    if start.run is not None:
        position = _resume_position(start.run.backup, steps_per_epoch, batches_per_epoch)
    train_ds = data_lib.make_dataset(bundle.train, cfg, spec, training=True, start=position)
    val_ds = None
    if bundle.validation is not None:
        val_ds = data_lib.make_dataset(bundle.validation, cfg, spec, training=False)

    # === Model, under the strategy's scope ===
    def build(policy: str) -> keras.Model:
        keras.backend.clear_session()
        keras.utils.set_random_seed(cfg.seed)  # the same initial weights whatever the policy
        distribution.set_precision(policy)
        with placement.strategy.scope():
            return build_model(cfg, spec)

    model = build(precision)
    flops = flops_per_example(model)
    if distribution.prefers_bf16(cfg.train.mixed_precision, placement, flops, batch_size):
        precision = "mixed_bfloat16"
        model = build(precision)
    steps_per_execution = cfg.train.steps_per_execution
    if steps_per_execution == "auto":
        steps_per_execution = auto_steps_per_execution(flops, batch_size, steps_per_epoch)
    with placement.strategy.scope():
        model.compile(
            optimizer=registry.build_optimizer(cfg.optimizer, steps_per_epoch * cfg.train.epochs),
            loss=registry.build_loss(loss_cfg),
            metrics=registry.build_metrics(metric_names, loss_cfg, spec),
            steps_per_execution=steps_per_execution,
            jit_compile=cfg.train.jit_compile,
        )
    if deadline is not None:
        deadline.cancel()  # every worker has joined: the model's variables exist

    # === Run directory: only now that nothing the user wrote can fail ===
    scratch = None
    run = start.run
    if not placement.is_chief:  # other workers write to a folder of their own, then drop it
        scratch = Path(tempfile.mkdtemp(prefix="bigmodel-worker-"))
        run = run_dir.create_run_dir(scratch, cfg.name)
    elif run is None:
        output_dir = Path(cfg.output.dir)
        output_dir = (output_dir if output_dir.is_absolute() else Path.cwd() / output_dir).resolve()
        run = run_dir.create_run_dir(output_dir, cfg.name, options.run_dir)
    if start.run is None or scratch is not None:
        cfg = _absolute_paths(cfg, start.base_dir)
        run_dir.atomic_write_text(run.config, config_load.dump_config(cfg))
    held = contextlib.ExitStack()
    if scratch is None:  # one trainer per run directory
        held.enter_context(run_dir.locked(run, console.note))
    try:
        run.checkpoints.mkdir(exist_ok=True)
        run_dir.atomic_write_json(run.environment, _environment(placement, precision, options))
        if bundle.vocabulary is not None and start.run is None:
            run_dir.write_vocabulary(run, bundle.vocabulary)
        if options.progress and scratch is None:
            console.note(f"run directory: {run.root}")

        # === Callbacks ===
        monitor = "val_loss" if val_ds is not None else "loss"
        tokens_per_example = (spec.sequence_length or 1) if spec.task == "language_model" else 1
        peak = peak_flops(placement.devices[0], precision) * placement.replicas
        throughput = cb.Throughput(
            batch_size,
            _examples_per_epoch(cfg, len(bundle.train), steps_per_epoch) * tokens_per_example,
            tokens_per_example,
            train_flops_per_item=TRAIN_FLOPS_PER_FORWARD * flops / tokens_per_example,
            peak_flops=peak,
        )
        nan_guard = cb.NaNGuard()
        stop = cb.StopRequest()
        checkpoints = cb.Checkpoints(
            run.best, run.last, monitor, monitor_mode(monitor), start.state.get("best")
        )
        early_stopping = None
        if cfg.train.early_stopping:
            es = cfg.train.early_stopping
            early_stopping = cb.ResumableEarlyStopping(
                state=start.state.get("early_stopping"),
                best_weights_path=run.best if es.monitor == monitor else None,
                monitor=es.monitor,
                patience=es.patience,
                min_delta=es.min_delta,
                mode=monitor_mode(es.monitor) if es.mode == "auto" else es.mode,
                restore_best_weights=es.restore_best_weights,
            )
        callbacks: list[keras.callbacks.Callback] = [
            throughput,  # first: the others read its epoch timings
            nan_guard,
            cb.MetricsCSV(run.metrics, throughput),
            *([checkpoints] if options.save_checkpoints else []),
            keras.callbacks.TensorBoard(str(run.tensorboard), write_graph=True, profile_batch=0),
        ]
        if early_stopping is not None:
            callbacks.append(early_stopping)
        time_limit = None
        if cfg.train.time_limit_minutes is not None:
            time_limit = cb.TimeLimit(cfg.train.time_limit_minutes)
            callbacks.append(time_limit)
        callbacks.append(cb.RunState(run.state, checkpoints, early_stopping))
        # Last at each epoch end, after every record of the epoch (metrics row, checkpoints,
        # state): a kill before it replays the epoch, whose row MetricsCSV then rewrites;
        # a backup taken first would let a kill lose the epoch's row for good.
        # A resumed multi_worker run: every worker restores from the chief's backup (the
        # run directory is on shared storage); only the chief writes it.
        backup = start.run.backup if start.run is not None else run.backup
        callbacks.append(
            cb.SafeBackup(
                backup,
                nan_guard,
                steps_per_epoch,
                cfg.train.checkpoint.every_steps,
                stop,
                records=scratch is None,
            )
        )
        if options.progress and scratch is None:
            unit = "tok" if spec.task == "language_model" else "ex"
            display = console.EpochProgress(
                console.err, cfg.train.epochs, steps_per_epoch, unit=unit
            )
            progress = cb.LiveProgressCallback if display.live else cb.ProgressCallback
            callbacks.append(progress(display, throughput))

        # === Fit ===
        resume_command = f"bigmodel train --resume {shlex.quote(str(run.root))}"
        # Signals stay handled until summary.json is written: one that comes after fit
        # lets the (finished) run complete its summary instead of dying without one.
        held.enter_context(_stop_on_signals(stop))
        try:
            history = model.fit(
                train_ds,
                validation_data=val_ds,
                epochs=cfg.train.epochs,
                steps_per_epoch=steps_per_epoch,  # the stream is endless
                callbacks=callbacks,
                verbose=0,
            )
        except KeyboardInterrupt:  # a second Ctrl-C: stop now, with the last backup
            console.note(f"interrupted; resume from the last backup with: {resume_command}")
            raise
        except Exception as err:
            if placement.name != "multi_worker" or not isinstance(err, _peer_errors()):
                raise
            raise TrainingFailed(_peer_lost_message(err, resume_command, scratch is None)) from None
        if stop.honoured:
            name = signal.Signals(stop.signal).name
            raise Interrupted(
                stop.signal, f"{name}: stopped after saving a backup; resume with: {resume_command}"
            )
        if nan_guard.failed_at is not None:
            epoch, step = nan_guard.failed_at
            good = run.best if run.best.exists() else None
            raise TrainingFailed(
                f"the loss became NaN/Inf at epoch {epoch}, step {step} (within "
                f"{steps_per_execution} steps per execution). "
                + (f"The last good checkpoint is {good}. " if good else "")
                + "Try a lower optimizer.learning_rate, optimizer.clipnorm: 1.0, or "
                "train.mixed_precision: float32."
            )

        # === Save and score ===
        cb.save_model_atomically(model, run.model)
        test_metrics, scored = None, None
        if bundle.test is not None and options.score_test:
            test_metrics, scored = score_saved_model(run, bundle.test, cfg, spec)
        stopped_early = early_stopping is not None and early_stopping.stopped_epoch > 0
        summary = {
            "name": cfg.name,
            # Only the chief keeps a run directory; other workers' scratch is removed.
            "run_dir": str(run.root) if scratch is None else None,
            "status": "completed",
            "stop_reason": "early_stopping"
            if stopped_early
            else "time_limit"
            if time_limit is not None and time_limit.reached
            else "epochs_completed",
            "epochs_run": _epochs_logged(run.metrics),
            "epochs_requested": cfg.train.epochs,
            "best_epoch": checkpoints.best_epoch,
            "best": {"monitor": monitor, "value": checkpoints.best_value},
            "final": {k: float(v[-1]) for k, v in history.history.items() if v},
            "test": test_metrics,
            "test_model": str(scored) if scored else None,
            "params": int(model.count_params()),
            "trainable_params": int(
                sum(keras.backend.count_params(w) for w in model.trainable_weights)
            ),
            "flops_per_example": int(flops),
            "train_seconds": round(throughput.train_seconds, 3),
            "wall_seconds": round(time.perf_counter() - started, 3),
            "examples_per_second": round(throughput.overall_rate(), 1),
            "mfu": round(throughput.mfu(), 5),
            "peak_flops": peak,
            "steps_per_execution": steps_per_execution,
            "jit_compile": cfg.train.jit_compile,
            "strategy": placement.name,
            "replicas": placement.replicas,
            "precision": precision,
            "data": data_lib.describe(bundle),
            "resumed_from": start.resumed_from,
            # Where the data stream picked up: (epoch, batch) counted from 0.
            "resumed_at": {"epoch": position[0], "batch": position[1]}
            if start.resumed_from
            else None,
        }
        if spec.task == "language_model":
            summary["tokens_per_second"] = summary.pop("examples_per_second")
        run_dir.atomic_write_json(run.summary, summary)
        return summary
    finally:
        held.close()
        if scratch is not None:
            with contextlib.suppress(OSError):
                shutil.rmtree(scratch)

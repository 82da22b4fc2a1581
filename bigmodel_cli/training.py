"""The training recipe: seed, strategy, data, model, compile, fit, save, in that order.

Everything that can be the user's fault (config, data, model shape) is checked before
the run directory exists, so a mistake never leaves an empty or half-made run behind.
"""

from __future__ import annotations

import math
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bigmodel_cli import config_load, console, run_dir
from bigmodel_cli.config import Config
from bigmodel_cli.errors import ConfigError, TrainingFailed, UserError
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
    command: list[str] = field(default_factory=lambda: list(sys.argv))


def monitor_mode(monitor: str) -> str:
    """`min` for losses and errors, `max` for accuracy-like metrics (Keras's `auto`
    guesses `min` for f1, precision and recall, which is wrong)."""
    base = monitor.removeprefix("val_")
    return "min" if base in LOWER_IS_BETTER else "max"


def _check_monitor(cfg: Config, metric_names: list[str], has_validation: bool) -> None:
    stopping = cfg.train.early_stopping
    if stopping is None:
        return
    monitor = stopping.monitor
    known = ["loss", *metric_names]
    if has_validation:
        known += [f"val_{name}" for name in known]
    if monitor not in known:
        hint = (
            " (no validation split: set data.validation_split > 0)"
            if monitor.startswith("val_") and not has_validation
            else ""
        )
        raise ConfigError(
            f"train.early_stopping.monitor: {monitor!r} is not logged{hint}; "
            f"expected one of: {', '.join(known)}"
        )


def _absolute_paths(cfg: Config, base_dir: Path) -> Config:
    """The run's config.yaml must work from anywhere: make data.path absolute."""
    if cfg.data.path and not Path(cfg.data.path).is_absolute():
        data = cfg.data.model_copy(update={"path": str((base_dir / cfg.data.path).resolve())})
        return cfg.model_copy(update={"data": data})
    return cfg


def _load_for_resume(path: Path) -> tuple[Config, run_dir.RunDir]:
    run = run_dir.RunDir(path)
    if not run_dir.is_run_dir(path):
        raise UserError(f"--resume {path}: not a run directory (no {run_dir.CONFIG})")
    document = config_load.read_yaml_mapping(run.config)
    return config_load.config_from_mapping(document, str(run.config)), run


def _environment(placement: Any, precision: str, options: TrainOptions) -> dict[str, Any]:
    import platform

    import numpy as np
    import tf_keras as keras

    tf = import_tensorflow()
    from bigmodel_cli import __version__

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
        "strategy_devices": placement.devices,
        "precision": precision,
        "command": shlex.join(options.command),
    }


def train(cfg: Config | None, options: TrainOptions) -> dict[str, Any]:
    """Train per `cfg` (or resume `options.resume`); return the content of summary.json."""
    # === Config ===
    resumed_from = None
    if options.resume is not None:
        cfg, run = _load_for_resume(options.resume)
        previous = run_dir.read_json(run.summary) if run.summary.exists() else {}
        if previous.get("status") == "completed":
            console.note(f"{run.root}: this run already finished; nothing to resume.")
            return previous
        resumed_from = str(run.root)
        base_dir = run.root
    else:
        assert cfg is not None
        run = None
        base_dir = options.config_path.parent if options.config_path else Path.cwd()

    # Heavy imports only once the config is known to be valid.
    tf = import_tensorflow()
    import tf_keras as keras

    from bigmodel_cli import data as data_lib
    from bigmodel_cli import defaults, distribution, registry
    from bigmodel_cli.callbacks import (
        Checkpoints,
        MetricsCSV,
        NaNGuard,
        ProgressCallback,
        Throughput,
        save_model_atomically,
    )
    from bigmodel_cli.evaluation import score
    from bigmodel_cli.flops import flops_per_example
    from bigmodel_cli.models import build_model

    started = time.perf_counter()

    # === Seed, strategy, precision ===
    keras.backend.clear_session()
    keras.utils.set_random_seed(cfg.seed)
    placement = distribution.make_strategy(cfg.distribute)
    precision = distribution.resolve_precision(cfg.train.mixed_precision, placement)
    distribution.set_precision(precision)

    # === Data ===
    bundle = data_lib.load_data(cfg, base_dir)
    spec = bundle.spec
    loss_cfg = defaults.effective_loss(cfg, spec)
    metric_names = defaults.effective_metrics(cfg, spec)
    _check_monitor(cfg, metric_names, bundle.validation is not None)
    batch_size = cfg.data.batch_size
    batches = math.ceil(len(bundle.train) / batch_size)
    steps_per_epoch = cfg.train.steps_per_epoch or batches
    train_ds = data_lib.make_dataset(bundle.train, cfg, spec, training=True)
    if cfg.train.steps_per_epoch:
        train_ds = train_ds.repeat()  # a capped epoch must never run out of batches
    val_ds = (
        data_lib.make_dataset(bundle.validation, cfg, spec, training=False)
        if bundle.validation is not None
        else None
    )

    # === Model, under the strategy's scope ===
    with placement.strategy.scope():
        model = build_model(cfg, spec)
        total_steps = steps_per_epoch * cfg.train.epochs
        model.compile(
            optimizer=registry.build_optimizer(cfg.optimizer, total_steps),
            loss=registry.build_loss(loss_cfg),
            metrics=registry.build_metrics(metric_names, loss_cfg, spec),
        )
    flops = flops_per_example(model)

    # === Run directory: only now that nothing the user wrote can fail ===
    if run is None:
        output_dir = Path(cfg.output.dir)
        if not output_dir.is_absolute():
            output_dir = Path.cwd() / output_dir
        run = run_dir.create_run_dir(output_dir, cfg.name, options.run_dir)
        cfg = _absolute_paths(cfg, base_dir)
        run_dir.atomic_write_text(run.config, config_load.dump_config(cfg))
    run.checkpoints.mkdir(exist_ok=True)
    run_dir.atomic_write_json(run.environment, _environment(placement, precision, options))
    if options.progress:
        console.note(f"run directory: {run.root}")

    # === Callbacks ===
    has_val = val_ds is not None
    monitor = "val_loss" if has_val else "loss"
    examples_per_epoch = (
        min(steps_per_epoch * batch_size, len(bundle.train))
        if not (cfg.train.steps_per_epoch)
        else steps_per_epoch * batch_size
    )
    tokens_per_example = (spec.sequence_length or 1) if spec.task == "language_model" else 1
    examples_per_epoch *= tokens_per_example  # language models report tokens, not sequences
    throughput = Throughput(batch_size, examples_per_epoch, tokens_per_example)
    nan_guard = NaNGuard()
    checkpoints = Checkpoints(run.best, run.last, monitor, monitor_mode(monitor))
    callbacks: list[keras.callbacks.Callback] = [
        throughput,
        nan_guard,
        keras.callbacks.BackupAndRestore(str(run.backup), delete_checkpoint=True),
        MetricsCSV(run.metrics, throughput),
        checkpoints,
        keras.callbacks.TensorBoard(str(run.tensorboard), write_graph=True, profile_batch=0),
    ]
    early_stopping = None
    if cfg.train.early_stopping:
        es = cfg.train.early_stopping
        early_stopping = keras.callbacks.EarlyStopping(
            monitor=es.monitor,
            patience=es.patience,
            min_delta=es.min_delta,
            mode=monitor_mode(es.monitor) if es.mode == "auto" else es.mode,
            restore_best_weights=es.restore_best_weights,
        )
        callbacks.append(early_stopping)
    if options.progress:
        unit = "tok" if spec.task == "language_model" else "ex"
        display = console.EpochProgress(console.err, cfg.train.epochs, steps_per_epoch, unit=unit)
        callbacks.append(ProgressCallback(display, throughput))

    # === Fit ===
    try:
        history = model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=cfg.train.epochs,
            steps_per_epoch=cfg.train.steps_per_epoch,
            callbacks=callbacks,
            verbose=0,
        )
    except KeyboardInterrupt:
        console.note(
            f"interrupted; resume with: bigmodel train --resume {shlex.quote(str(run.root))}"
        )
        raise
    if nan_guard.failed_at is not None:
        epoch, step = nan_guard.failed_at
        raise TrainingFailed(
            f"the loss became NaN/Inf at epoch {epoch}, step {step}. The last good "
            f"checkpoint is {run.last if run.last.exists() else 'not written yet'}. Try a "
            "lower optimizer.learning_rate, optimizer.clipnorm: 1.0, or "
            "train.mixed_precision: float32."
        )

    # === Save and score ===
    save_model_atomically(model, run.model)
    test_metrics = (
        score(model, bundle.test, cfg, spec, loss_cfg, metric_names)
        if bundle.test is not None
        else None
    )
    epochs_run = len(history.epoch)
    last_logs = {k: float(v[-1]) for k, v in history.history.items() if v}
    stopped_early = early_stopping is not None and early_stopping.stopped_epoch > 0
    summary = {
        "name": cfg.name,
        "run_dir": str(run.root),
        "status": "completed",
        "stop_reason": "early_stopping" if stopped_early else "epochs_completed",
        "epochs_run": epochs_run,
        "epochs_requested": cfg.train.epochs,
        "best_epoch": checkpoints.best_epoch,
        "best": {"monitor": monitor, "value": checkpoints.best_value},
        "final": last_logs,
        "test": test_metrics,
        "params": int(model.count_params()),
        "trainable_params": int(
            sum(keras.backend.count_params(w) for w in model.trainable_weights)
        ),
        "flops_per_example": int(flops),
        "train_seconds": round(throughput.train_seconds, 3),
        "wall_seconds": round(time.perf_counter() - started, 3),
        "examples_per_second": round(throughput.examples_seen / throughput.train_seconds, 1)
        if throughput.train_seconds
        else 0.0,
        "strategy": placement.name,
        "replicas": placement.replicas,
        "precision": precision,
        "data": data_lib.describe(bundle),
        "resumed_from": resumed_from,
    }
    if spec.task == "language_model":
        summary["tokens_per_second"] = summary.pop("examples_per_second")
    run_dir.atomic_write_json(run.summary, summary)
    del tf
    return summary

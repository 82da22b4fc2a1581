"""Step 2 of the recipe: the data, read, split and laid out, and the streams fit() reads.

Everything about the data that can be the user's fault (too little for a batch, labels
the model cannot output, a monitor that is never logged, more than fits in memory) is
refused here, before the run directory exists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bigmodel_cli import run_dir
from bigmodel_cli.config import Config
from bigmodel_cli.errors import UserError
from bigmodel_cli.models import memory
from bigmodel_cli.training.callbacks.monitor import check_monitor
from bigmodel_cli.training.runtime import Runtime
from bigmodel_cli.training.start import Start
from bigmodel_cli.training.transfer import Parent, open_parent, parent_normalization


@dataclass(frozen=True)
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
    parent: Parent | None = None  # the run `init.from` names
    teacher: Any = None  # distill's teacher run (a TrainedRun), checked against the data


def prepare_data(start: Start, runtime: Runtime) -> Prepared:
    from bigmodel_cli import data as data_lib
    from bigmodel_cli.config import defaults
    from bigmodel_cli.training import distill

    cfg = start.cfg
    # Synthetic data is refused before it is generated when it (or its model) cannot fit.
    memory.check_before_data(cfg, runtime.precision, runtime.placement.devices)
    parent = open_parent(cfg)  # None without init
    teacher = distill.open_teacher(cfg)  # None without distill; exit 2 unless a finished run
    # A resumed run reuses its own vocabulary rather than learning it again; a
    # fine-tuned one its parent's, whose embedding rows it copies; a student, its teacher's.
    saved_vocabulary = run_dir.read_vocabulary(start.run) if start.run is not None else None
    if saved_vocabulary is None:
        source = parent or teacher
        saved_vocabulary = source.vocabulary if source is not None else None
    bundle = data_lib.load_data(
        cfg,
        start.base_dir,
        parent_normalization=parent_normalization(parent, cfg),
        vocabulary=saved_vocabulary,
        same_corpus=start.run is not None,
    )
    spec = bundle.spec
    loss_cfg = defaults.effective_loss(cfg, spec)
    metric_names = defaults.effective_metrics(cfg, spec)
    if teacher is not None:
        distill.check_teacher(teacher, spec, cfg)
    check_monitor(cfg, metric_names, bundle.validation is not None)
    _check_fit(cfg, spec, len(bundle.train))
    batches_per_epoch = math.ceil(len(bundle.train) / cfg.data.batch_size)
    steps_per_epoch = cfg.train.steps_per_epoch or batches_per_epoch
    # An endless stream of seeded epochs, started where a resumed run's backup ends.
    position = start.in_epochs_of(steps_per_epoch).position
    stream_start = position.stream_start(steps_per_epoch, batches_per_epoch)
    train_ds = data_lib.make_dataset(bundle.train, cfg, spec, training=True, start=stream_start)
    val_ds = None
    if bundle.validation is not None:
        validation = bundle.validation.bounded(cfg.train.validation_steps, cfg.data.batch_size)
        val_ds = data_lib.make_dataset(validation, cfg, spec, training=False)
    return Prepared(
        bundle, spec, loss_cfg, metric_names, train_ds, val_ds, steps_per_epoch,
        batches_per_epoch, parent, teacher,
    )  # fmt: skip


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

"""Step 3 of the recipe: the model, built and compiled under the strategy's scope.

The memory check comes first, so a model that cannot fit exits 2 before any weight
exists; bf16 is chosen (when asked for `auto`) from the built model's FLOPs, which
means building it a second time under that policy, with the same initial weights.
With `compress.prune` the chosen layers are then wrapped for pruning (training/prune.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bigmodel_cli import distribution, registry
from bigmodel_cli.config import Config
from bigmodel_cli.models import build_model, memory
from bigmodel_cli.models.flops import flops_per_example
from bigmodel_cli.performance import auto_steps_per_execution
from bigmodel_cli.tfenv import import_keras
from bigmodel_cli.training import prune
from bigmodel_cli.training.prepare import Prepared
from bigmodel_cli.training.runtime import Runtime
from bigmodel_cli.training.transfer import build_every_slot, learning_rate, take_weights


@dataclass(frozen=True)
class Built:
    """The compiled model and what its building decided."""

    model: Any
    flops: int
    precision: str
    steps_per_execution: int
    memory_estimate: int
    init: dict | None = None  # what init.from gave the model: copied, fresh, frozen layers


def build_and_compile(cfg: Config, runtime: Runtime, data: Prepared) -> Built:
    keras = import_keras()

    placement = runtime.placement
    # Exit 2 before any weight exists when the model, its optimizer, a batch's
    # activations and the data cannot fit in the memory available.
    estimate = memory.check(cfg, data.spec, data.bundle, runtime.precision, placement.devices)

    taken = {}

    def build(policy: str) -> keras.Model:
        keras.backend.clear_session()
        keras.utils.set_random_seed(cfg.seed)  # the same initial weights whatever the policy
        distribution.set_precision(policy)
        with placement.strategy.scope():
            model = build_model(cfg, data.spec)
            if data.parent is not None:  # a resumed run's backup then replaces them
                taken.update(take_weights(model, data.parent, cfg.init))
            return model

    precision = runtime.precision
    model = build(precision)
    flops = flops_per_example(model)
    batch_size = cfg.data.batch_size
    if distribution.prefers_bf16(cfg.train.mixed_precision, placement, flops, batch_size):
        precision = "mixed_bfloat16"
        model = build(precision)
    if data.teacher is not None:  # distill: the same student, its loss also the teacher's
        from bigmodel_cli.training.distill import with_teacher

        model = with_teacher(model, data.teacher, cfg, data, runtime, precision)
    if prune.prune_config(cfg) is not None:  # FLOPs and the estimate are the plain model's
        with placement.strategy.scope():
            model = prune.wrap(model, cfg, data.steps_per_epoch)
    steps_per_execution = cfg.train.steps_per_execution
    if steps_per_execution == "auto":
        steps_per_execution = auto_steps_per_execution(flops, batch_size, data.steps_per_epoch)
    with placement.strategy.scope():
        model.compile(
            optimizer=registry.build_optimizer(
                cfg.optimizer,
                data.steps_per_epoch * cfg.train.epochs,
                learning_rate(cfg, data.steps_per_epoch),
            ),
            loss=registry.build_loss(data.loss_cfg),
            metrics=registry.build_metrics(data.metric_names, data.loss_cfg, data.spec),
            steps_per_execution=steps_per_execution,
            jit_compile=cfg.train.jit_compile,
        )
        if cfg.init is not None and cfg.init.unfreeze_after_epochs is not None:
            build_every_slot(model)
    init = data.parent.record(taken) if data.parent is not None else None
    return Built(model, flops, precision, steps_per_execution, estimate.total, init)

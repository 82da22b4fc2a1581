"""`init`: a run that starts from a trained one (transfer learning).

The parent's best model is read once, before the new model is built, as plain arrays by
layer name; the new model then takes them layer by layer. Nothing is loaded silently in
part: every `freeze` and `reinit` glob must match a layer, and a layer of the new model
that has weights must either be in `reinit` or find a layer of the same name and the
same weight shapes in the parent. Otherwise training stops with exit 2, naming each
layer and both shapes, before any run directory exists.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bigmodel_cli import registry
from bigmodel_cli.config import Config, InitConfig
from bigmodel_cli.errors import UserError
from bigmodel_cli.tfenv import import_keras

KEY = "init.from"


@dataclass(frozen=True)
class Parent:
    """The run a new one starts from: where it is, what it learned, and its weights."""

    root: Path
    cfg: Config
    normalization: dict | None  # its training split's statistics (summary.json)
    vocabulary: dict | None  # its vocabulary.json, for text
    model_file: str  # which of its files the weights come from (best.keras, model.keras)
    weights: dict[str, list[np.ndarray]] = field(repr=False)  # layer name -> its weights

    def record(self, report: dict[str, list[str]]) -> dict[str, Any]:
        """What summary.json says of the parent and of what was taken from it."""
        return {"from": str(self.root), "model": self.model_file, **report}


def open_parent(cfg: Config) -> Parent | None:
    """The parent run `init.from` names, read; None without an `init` section. A path
    that is not a finished run exits 2 with the key named."""
    if cfg.init is None:
        return None
    from bigmodel_cli.inference.open_run import open_named_run, prefixed

    unset = f"give the run to start from: --set {KEY}=RUN_DIR"
    trained = open_named_run(KEY, cfg.init.from_, unset)
    try:
        model, path = trained.load_model()
    except UserError as err:
        raise prefixed(err, KEY) from None
    weights = {layer.name: layer.get_weights() for layer in model.layers if layer.weights}
    import_keras().backend.clear_session()  # the parent's graph is not the new model's
    return Parent(
        trained.run.root,
        trained.cfg,
        trained.normalization,
        trained.vocabulary,
        path.name,
        weights,
    )


def parent_normalization(parent: Parent | None, cfg: Config) -> Any:
    """The parent's statistics, for data of the same kind (the same source): layers it
    trained expect inputs scaled as it scaled them. load_data still uses the new data's
    own when the example shapes differ."""
    from bigmodel_cli.data import Normalization

    if parent is None or parent.normalization is None:
        return None
    if parent.cfg.data.source != cfg.data.source:
        return None
    return Normalization.from_json(parent.normalization)


def take_weights(model: Any, parent: Parent, init: InitConfig) -> dict[str, list[str]]:
    """Copy the parent's weights into `model` by layer name, start `reinit` layers
    fresh, freeze `freeze` layers; what went where, for summary.json."""
    layers = [layer.name for layer in model.layers]
    frozen = _matching(init.freeze, layers, "init.freeze")
    fresh = _matching(init.reinit, layers, "init.reinit")
    copied, problems = [], []
    for layer in model.layers:
        if not layer.weights or layer.name in fresh:
            continue
        problem = _mismatch(layer, parent)
        if problem:
            problems.append(problem)
            continue
        layer.set_weights(parent.weights[layer.name])
        copied.append(layer.name)
    if problems:
        raise UserError(problems)
    for name in frozen:
        model.get_layer(name).trainable = False
    return {
        "copied": copied,
        "reinitialized": [name for name in layers if name in fresh],
        # A matched pooling or dropout layer has nothing to freeze.
        "frozen": [layer.name for layer in model.layers if layer.name in frozen and layer.weights],
    }


def _matching(globs: list[str], layers: list[str], key: str) -> set[str]:
    matched, problems = set(), []
    for glob in globs:
        # Case-sensitive on every platform, as layer names (and prune.layers) are.
        names = [name for name in layers if fnmatch.fnmatchcase(name, glob)]
        if not names:
            problems.append(
                f"{key}: {glob!r} matches no layer of the model; its layers are {', '.join(layers)}"
            )
        matched.update(names)
    if problems:
        raise UserError(problems)
    return matched


def _mismatch(layer: Any, parent: Parent) -> str | None:
    """Why `layer` cannot take the parent's weights of the same name, or None."""
    theirs = parent.weights.get(layer.name)
    if theirs is None:
        return (
            f"{KEY}: the parent run has no layer {layer.name!r} (its layers with weights: "
            f"{', '.join(parent.weights) or 'none'}); add it to init.reinit to start it fresh"
        )
    ours = [tuple(w.shape) for w in layer.weights]
    shapes = [tuple(w.shape) for w in theirs]
    if ours != shapes:
        return (
            f"{KEY}: layer {layer.name!r} has weights of shapes {_shapes(ours)} here but "
            f"{_shapes(shapes)} in the parent run; add it to init.reinit to start it fresh"
        )
    return None


def _shapes(shapes: list[tuple[int, ...]]) -> str:
    return ", ".join(str(shape) for shape in shapes)


# === The second phase: init.unfreeze_after_epochs ===========================


def learning_rate(cfg: Config, steps_per_epoch: int) -> Any:
    """The whole run's learning rate when a second phase unfreezes the model: the first
    rate (or schedule, sized to the first phase) until then, the second one after (its
    schedule started at the unfreezing); None when there is no second phase."""
    init = cfg.init
    if init is None or init.unfreeze_after_epochs is None:
        return None
    first_steps = init.unfreeze_after_epochs * steps_per_epoch
    second_steps = (cfg.train.epochs - init.unfreeze_after_epochs) * steps_per_epoch
    return registry.SwitchAt(
        registry.learning_rate(cfg.optimizer.learning_rate, first_steps),
        first_steps,
        registry.learning_rate(init.unfreeze_learning_rate, second_steps),
    )


def build_every_slot(model: Any) -> None:
    """Give the optimizer a slot for every weight that can train, the frozen ones too:
    a Keras optimizer refuses variables it was not built with, and the backups then
    hold the same variables before and after the unfreezing."""
    trainable = [v for v in model.variables if v.trainable]  # a frozen layer's stay True
    model.optimizer.build(trainable)


def unfreezing(model: Any, init: InitConfig | None) -> Any:
    """The callback that unfreezes the frozen layers at `init.unfreeze_after_epochs`
    (also when a resumed run starts past it), or None."""
    if init is None or init.unfreeze_after_epochs is None:
        return None
    keras = import_keras()
    names = [layer.name for layer in model.layers if not layer.trainable]

    class Unfreeze(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch < init.unfreeze_after_epochs or not names:
                return
            for name in names:
                self.model.get_layer(name).trainable = True
            names.clear()
            # fit() calls model.train_function at every step: a new one, traced with
            # every weight trainable, takes over from the next step.
            self.model.train_function = None
            self.model.make_train_function(force=True)

    return Unfreeze()

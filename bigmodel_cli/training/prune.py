"""Magnitude pruning (`compress.prune`) with tensorflow-model-optimization.

Each selected layer, not the whole model, is wrapped in `prune_low_magnitude` (tfmot
refuses a model holding layers it does not know, such as bigmodel's own), through
`clone_model`, which keeps every layer object and so its initial weights: a pruned run
starts from the weights the dense run of the same seed starts from.

The schedule is tfmot's `PolynomialDecay` (cubic, from sparsity 0) over training steps:
from step `begin_epoch * steps_per_epoch` to `end_epoch * steps_per_epoch`. The masks are
updated every `frequency` steps, the largest divisor of an epoch's steps up to tfmot's
default of 100, so every epoch's last step is an update and the last step of the
schedule reaches `sparsity` exactly. The wrappers keep the step, the masks and the
thresholds as variables of the model, so the resume backup's checkpoint holds them and a
resumed run continues the schedule where it stopped.

Every file a run writes (model.keras, checkpoints/best.keras and last.keras) holds the
stripped model (`strip_pruning`): plain Keras layers whose kernels hold the zeros, which
`evaluate`, `predict` and `export` load as the dense model's.
"""

from __future__ import annotations

import fnmatch
import gzip
import sys
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from bigmodel_cli.config import Config, PruneConfig
from bigmodel_cli.errors import ConfigError
from bigmodel_cli.tfenv import import_keras, import_tfmot

KEY = "compress.prune.layers"
MAX_FREQUENCY = 100  # tfmot's default: masks updated every 100 steps
_TFMOT = "tensorflow_model_optimization"


def prune_config(cfg: Config) -> PruneConfig | None:
    return cfg.compress.prune if cfg.compress is not None else None


# === Which layers =============================================================


def _registry():
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import (
        PruneRegistry,
    )

    return PruneRegistry


def is_prunable(layer) -> bool:
    """tfmot can prune it and it has a kernel to prune (Dropout is 'supported' too)."""
    registry = _registry()
    if not registry.supports(layer):
        return False
    if registry._is_rnn_layer(layer) or registry._is_mha_layer(layer):
        return True
    return bool(registry._weight_names(layer))


def output_layers(model) -> set[str]:
    return {tensor._keras_history.layer.name for tensor in model.outputs}


def select_layers(model, prune: PruneConfig) -> list[str]:
    """The names of the layers to prune, or a ConfigError naming `compress.prune.layers`
    for each glob that matches no prunable layer, with the names that exist."""
    keras = import_keras()
    import_tfmot()
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    prunable = [layer.name for layer in layers if is_prunable(layer) and _called_once(layer)]
    if prune.layers is None:
        outputs = output_layers(model)
        chosen = [name for name in prunable if name not in outputs]
        if not chosen:
            raise ConfigError(
                f"{KEY}: the model has no prunable layer besides its output layer "
                f"({', '.join(sorted(outputs))}); name the layers to prune. Layers: "
                f"{', '.join(layer.name for layer in layers)}"
            )
        return chosen
    problems = []
    for index, glob in enumerate(prune.layers):
        if any(fnmatch.fnmatchcase(name, glob) for name in prunable):
            continue
        others = [layer.name for layer in layers if fnmatch.fnmatchcase(layer.name, glob)]
        why = (
            f"matches only layers that cannot be pruned ({', '.join(others)})"
            if others
            else "matches no layer"
        )
        problems.append(
            f"{KEY}.{index}: {glob!r} {why}. Prunable layers: {', '.join(prunable) or 'none'}; "
            f"all layers: {', '.join(layer.name for layer in layers)}"
        )
    if problems:
        raise ConfigError(problems)
    return [n for n in prunable if any(fnmatch.fnmatchcase(n, g) for g in prune.layers)]


def _called_once(layer) -> bool:
    """A layer called twice (tied embeddings) would advance its pruning step twice."""
    return len(layer._inbound_nodes) <= 1


# === Wrapping and stripping ===================================================


def frequency(steps_per_epoch: int) -> int:
    """The largest divisor of an epoch's steps up to MAX_FREQUENCY (see the docstring)."""
    return max(d for d in range(1, min(steps_per_epoch, MAX_FREQUENCY) + 1)
               if steps_per_epoch % d == 0)  # fmt: skip


def schedule_steps(prune: PruneConfig, epochs: int, steps_per_epoch: int) -> dict[str, int]:
    end_epoch = prune.end_epoch if prune.end_epoch is not None else epochs
    return {
        "begin_step": prune.begin_epoch * steps_per_epoch,
        "end_step": end_epoch * steps_per_epoch,
        "frequency": frequency(steps_per_epoch),
    }


def wrap(model, cfg: Config, steps_per_epoch: int):
    """`model` with each selected layer wrapped for pruning (build it in the strategy's
    scope: the masks are variables)."""
    prune = prune_config(cfg)
    tfmot = import_tfmot()
    keras = import_keras()
    sparsity = tfmot.sparsity.keras
    chosen = set(select_layers(model, prune))
    steps = schedule_steps(prune, cfg.train.epochs, steps_per_epoch)

    def clone(layer):
        if layer.name not in chosen:
            return layer  # the same layer, weights and all
        schedule = sparsity.PolynomialDecay(0.0, prune.sparsity, **steps)
        return sparsity.prune_low_magnitude(layer, pruning_schedule=schedule)

    return keras.models.clone_model(model, clone_function=clone)


def is_wrapped(model) -> bool:
    if _TFMOT not in sys.modules:  # nothing was ever pruned in this process
        return False
    return bool(_wrappers(model))


def _wrappers(model) -> list:
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

    return pruning_wrapper.collect_prunable_layers(model)


_stripped: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def stripped(model):
    """The model without its pruning wrappers, as saved: the same layer objects, so the
    same weights (made once per model: each strip calls every layer once more)."""
    if not is_wrapped(model):
        return model
    if model not in _stripped:
        _stripped[model] = import_tfmot().sparsity.keras.strip_pruning(model)
    return _stripped[model]


def best_from_epoch(cfg: Config) -> int:
    """The first epoch (0-based) at the final sparsity: before it, no epoch is the best
    model or early stopping's best."""
    prune = prune_config(cfg)
    if prune is None:
        return 0
    return (prune.end_epoch if prune.end_epoch is not None else cfg.train.epochs) - 1


def update_step_callback():
    return import_tfmot().sparsity.keras.UpdatePruningStep()


# === What pruning reached =====================================================


def reached(model) -> dict[str, dict[str, Any]]:
    """Per pruned layer: the fraction of its prunable weights that are zero, and their
    count (read from the weights, as model.keras holds them)."""
    report = {}
    for wrapper in _wrappers(model):
        values = [np.asarray(weight.numpy()) for weight in wrapper.layer.get_prunable_weights()]
        total = sum(v.size for v in values)
        zeros = sum(int(np.count_nonzero(v == 0)) for v in values)
        report[wrapper.layer.name] = {"sparsity": round(zeros / total, 6), "weights": total}
    return report


def gzip_size(path: Path) -> int:
    """Bytes of `path` gzipped (level 9): what the zeros save in storage and download."""
    return len(gzip.compress(path.read_bytes(), compresslevel=9))


def summary_entry(model, cfg: Config, model_path: Path) -> dict[str, Any]:
    """summary.json's `compress.prune`: the target, what each layer reached, the sizes."""
    prune = prune_config(cfg)
    layers = reached(model)
    total = sum(entry["weights"] for entry in layers.values())
    zeros = sum(entry["sparsity"] * entry["weights"] for entry in layers.values())
    return {
        "target_sparsity": prune.sparsity,
        "sparsity": round(zeros / total, 6) if total else 0.0,
        "layers": layers,
        "model_bytes": model_path.stat().st_size,
        "model_gzip_bytes": gzip_size(model_path),
    }

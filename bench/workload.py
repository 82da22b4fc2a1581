"""What the plain and hand-tuned Keras scripts share with `bigmodel train`: the arrays,
the model written by hand, its compile settings, and the epoch timer.

The arrays come from `bigmodel_cli.data.load_data` on the same bench config, so all
three sides train on identical training and validation splits. The model is written
layer by layer in plain Keras from the config's numbers (no bigmodel builder), and the
bench checks that its parameter count equals bigmodel's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from bigmodel_cli.config import Config


@dataclass
class Workload:
    """One bench config, ready for a hand-written Keras script."""

    config_path: Path
    epochs: int
    batch_size: int
    seed: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    model_type: str
    cfg: Config


def load_workload(config_path: Path, overrides: list[str]) -> Workload:
    """The config's splits as NumPy arrays in the form the loss expects."""
    from bigmodel_cli.config.load import load_config
    from bigmodel_cli.data import load_data

    cfg = load_config(config_path, overrides)
    bundle = load_data(cfg, config_path.parent)
    one_hot = cfg.loss is not None and cfg.loss.name == "categorical_crossentropy"
    classes = bundle.spec.num_classes

    def labels(y: np.ndarray) -> np.ndarray:
        y = y.astype(np.int32)
        return np.eye(classes, dtype=np.float32)[y] if one_hot else y

    val = bundle.validation
    return Workload(
        config_path=config_path,
        epochs=cfg.train.epochs,
        batch_size=cfg.data.batch_size,
        seed=cfg.seed,
        x_train=bundle.train.x.astype(np.float32),
        y_train=labels(bundle.train.y),
        x_val=val.x.astype(np.float32) if val is not None else None,
        y_val=labels(val.y) if val is not None else None,
        model_type=cfg.model.type,
        cfg=cfg,
    )


def build_model(work: Workload):
    """The config's MLP or CNN, written the way a Keras user would write it."""
    import tf_keras as keras

    model = work.cfg.model
    layers = [keras.Input(shape=work.x_train.shape[1:])]
    if work.model_type == "cnn":
        for block in model.conv:
            layers.append(
                keras.layers.Conv2D(block.filters, block.kernel_size, activation=model.activation)
            )
            if block.pool:
                layers.append(keras.layers.MaxPooling2D(block.pool, padding=block.pool_padding))
        layers.append(keras.layers.Flatten())
    elif work.model_type != "mlp":
        raise SystemExit(f"bench: no hand-written model for model.type {work.model_type!r}")
    layers += [keras.layers.Dense(units, activation=model.activation) for units in model.dense]
    classes = int(work.y_train.max()) + 1 if work.y_train.ndim == 1 else work.y_train.shape[1]
    layers.append(keras.layers.Dense(classes, activation="softmax"))
    return keras.Sequential(layers)


def compile_args(work: Workload) -> dict:
    """Optimizer, loss and metrics with the config's values."""
    import tf_keras as keras

    opt = work.cfg.optimizer
    optimizers = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam}
    if opt.name not in optimizers or not isinstance(opt.learning_rate, float):
        raise SystemExit(f"bench: no hand-written optimizer for {opt.name!r}")
    return {
        "optimizer": optimizers[opt.name](learning_rate=opt.learning_rate),
        "loss": work.cfg.loss.name,
        "metrics": ["accuracy"],
    }


def epoch_timer():
    """A callback that times epochs exactly as bigmodel's Throughput does: from
    on_epoch_begin to on_epoch_end (the steps, first-epoch tracing, and validation)."""
    import tf_keras as keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs: list[float] = []

        @property
        def seconds(self) -> float:
            return sum(self.epochs)

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append(time.perf_counter() - self._start)

    return EpochTimer()


def parse_args(description: str, extra: dict | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("config", type=Path)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    for flag, kwargs in (extra or {}).items():
        parser.add_argument(flag, **kwargs)
    return parser.parse_args()


def seed_and_quiet(seed: int) -> None:
    """Same seed as bigmodel; TensorFlow's C++ log noise off (it is not timed anyway)."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tf_keras as keras

    keras.utils.set_random_seed(seed)


def report(work: Workload, model, timer, fit_seconds: float, **extra) -> None:
    """One JSON line on stdout, the fields bigmodel's summary.json uses."""
    examples = len(work.x_train) * work.epochs
    result = {
        "train_seconds": round(timer.seconds, 3),
        "fit_seconds": round(fit_seconds, 3),  # the whole fit() call, set-up included
        "examples_per_second": round(examples / timer.seconds, 1),
        "params": int(model.count_params()),
        "epoch_seconds": [round(s, 4) for s in timer.epochs],
        **extra,
    }
    sys.stdout.write(json.dumps(result) + "\n")

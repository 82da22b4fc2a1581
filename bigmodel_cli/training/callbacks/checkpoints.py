"""checkpoints/best.keras and last.keras, and model.keras: whole files or none.

Keras's own ModelCheckpoint writes in place; these files are written under a temporary
name and renamed, each with its SHA-256 beside it, so a crash never leaves half a file.
They hold no optimizer state: they are for evaluating and predicting, and resuming
uses the backup (see resume_backup.py).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from bigmodel_cli import faults, run_dir
from bigmodel_cli.layers import LayersModel
from bigmodel_cli.tfenv import import_keras
from bigmodel_cli.training.prune import stripped

keras = import_keras()


def without_optimizer(model: keras.Model) -> keras.Model:
    """The same layers and weights (shared, not copied) without the optimizer's state.

    Checkpoints and model.keras are for evaluating and predicting; resuming uses the
    backup, which does hold the optimizer. For Adam this makes each file 3x smaller.
    """
    # A LayersModel stays one: its file must name bigmodel_cli.layers (see there).
    model_class = LayersModel if isinstance(model, LayersModel) else keras.Model
    return model_class(model.inputs, model.outputs, name=model.name)


def save_model_atomically(model: keras.Model, path: Path) -> None:
    """Write `path` whole or not at all, with its SHA-256 beside it; a pruned model is
    written without its pruning wrappers, as the plain model with sparse kernels."""
    inference = without_optimizer(stripped(model))

    def write(tmp: Path) -> None:
        inference.save(tmp, overwrite=True)
        faults.point(f"saved_{path.stem}")  # written, not yet renamed into place

    run_dir.atomic_write_with_digest(path, write)


def finite_loss(logs: dict | None) -> bool:
    loss = (logs or {}).get("loss")
    return loss is None or bool(np.isfinite(loss))


class Checkpoints(keras.callbacks.Callback):
    """Saves checkpoints/last.keras every epoch and best.keras when `monitor` improves.

    An epoch whose loss is NaN/Inf saves nothing: the files stay the last good ones.
    Epochs before `best_from_epoch` (0-based; a pruned run's schedule) cannot be best.
    """

    def __init__(self, best: Path, last: Path, monitor: str, mode: str = "min",
                 state: dict | None = None, best_from_epoch: int = 0):  # fmt: skip
        super().__init__()
        self.best_path, self.last_path = best, last
        self.best_from_epoch = best_from_epoch
        self.monitor = monitor
        self.mode = mode
        self.best_value = math.inf if mode == "min" else -math.inf
        self.best_epoch: int | None = None
        if state:  # resuming: the best so far is not forgotten
            self.best_value, self.best_epoch = state["value"], state["epoch"]

    def state(self) -> dict:
        return {"value": self.best_value, "epoch": self.best_epoch}

    def _improved(self, value: float) -> bool:
        return value < self.best_value if self.mode == "min" else value > self.best_value

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        if not finite_loss(logs):
            return
        save_model_atomically(self.model, self.last_path)
        value = logs.get(self.monitor)
        if epoch < self.best_from_epoch:
            return
        if value is not None and np.isfinite(value) and self._improved(float(value)):
            self.best_value, self.best_epoch = float(value), epoch + 1
            save_model_atomically(self.model, self.best_path)

"""The first non-finite loss ends training before anything can save the broken weights."""

from __future__ import annotations

import numpy as np

from bigmodel_cli.tfenv import import_keras

keras = import_keras()


class LossNotFinite(Exception):  # noqa: N818
    """Raised from a callback at the first NaN/Inf loss: nothing after it may be saved."""

    def __init__(self, epoch: int, step: int):
        super().__init__(f"loss not finite at epoch {epoch}, step {step}")
        self.epoch, self.step = epoch, step


class NaNGuard(keras.callbacks.Callback):
    """Ends training at the first non-finite loss (LossNotFinite), before any callback
    after it could save the broken weights or Keras could run a validation pass."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            raise LossNotFinite(self.epoch + 1, batch + 1)

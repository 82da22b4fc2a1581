"""Keras's epoch (and, when live, step) events fed to the console's progress display."""

from __future__ import annotations

import time

from bigmodel_cli.console import EpochProgress
from bigmodel_cli.tfenv import import_keras
from bigmodel_cli.training.callbacks.throughput import Throughput

keras = import_keras()


class ProgressCallback(keras.callbacks.Callback):
    """Feeds Keras's epoch events to the progress display (a line per epoch)."""

    def __init__(self, display: EpochProgress, throughput: Throughput):
        super().__init__()
        self.display = display
        self.throughput = throughput

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.display.start()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.display.begin_epoch(epoch + 1)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.display.end_epoch(
            epoch + 1,
            dict(logs or {}),
            self.throughput.epoch_seconds[epoch],
            self.throughput.examples_per_second(epoch),
            self.throughput.mfu(epoch),
        )

    def on_train_end(self, logs: dict | None = None) -> None:
        self.display.stop()


class LiveProgressCallback(ProgressCallback):
    """Adds the step bar. Kept separate because any batch hook makes Keras copy the logs
    to the host after every step, which costs small models much of their speed."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = time.perf_counter()
        super().on_epoch_begin(epoch, logs)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        elapsed = time.perf_counter() - self._epoch_start
        rate = (batch + 1) * self.throughput.items_per_step / elapsed if elapsed > 0 else 0.0
        self.display.update_step(batch + 1, (logs or {}).get("loss"), rate)

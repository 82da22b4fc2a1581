"""Epoch timings and example counts, which metrics.csv, TensorBoard, progress, the
backup and summary.json all read (so the Throughput callback runs first)."""

from __future__ import annotations

import time

from bigmodel_cli.tfenv import import_keras

keras = import_keras()


class Throughput(keras.callbacks.Callback):
    """Times each epoch and counts its steps, for metrics.csv, summary.json and progress.

    An epoch may be shorter than `steps_per_epoch` (stopped by the time limit) or
    continue one a kill interrupted (`carry`: the seconds it had run): examples are
    counted for the steps actually trained.
    """

    def __init__(
        self,
        batch_size: int,
        examples_per_epoch: int,
        steps_per_epoch: int,
        items_per_example: int = 1,
        train_flops_per_item: float = 0.0,
        peak_flops: float = 0.0,
    ):
        super().__init__()
        # Language models count tokens: each example holds `items_per_example` of them.
        self.items_per_step = batch_size * items_per_example
        self.train_flops_per_item = train_flops_per_item
        self.peak_flops = peak_flops
        self.examples_per_epoch = examples_per_epoch
        self.steps_per_epoch = steps_per_epoch
        self.epoch_seconds: dict[int, float] = {}
        self.epoch_examples: dict[int, float] = {}
        self.examples_seen = 0.0
        self.train_seconds = 0.0
        self._start = 0.0
        self._carried: tuple[int | None, float] = (None, 0.0)  # (epoch, seconds before a kill)
        self._epoch = 0
        self._steps_done = 0

    def carry(self, epoch: int, seconds: float) -> None:
        self._carried = (epoch, float(seconds))

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()
        self._epoch = epoch
        self._steps_done = 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._steps_done = batch + 1  # batches count from the epoch's start, also resumed

    def seconds_so_far(self) -> float:
        """Seconds of the current epoch, including those run before a resume."""
        carried_epoch, carried = self._carried
        before = carried if carried_epoch == self._epoch else 0.0
        return time.perf_counter() - self._start + before

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        seconds = time.perf_counter() - self._start
        carried_epoch, carried = self._carried
        if carried_epoch == epoch:
            seconds += carried
        steps = min(self._steps_done, self.steps_per_epoch) or self.steps_per_epoch
        examples = self.examples_per_epoch * steps / self.steps_per_epoch
        self.epoch_seconds[epoch] = seconds
        self.epoch_examples[epoch] = examples
        self.train_seconds += seconds
        self.examples_seen += examples

    def examples_per_second(self, epoch: int) -> float:
        seconds = self.epoch_seconds.get(epoch, 0.0)
        return self.epoch_examples.get(epoch, 0.0) / seconds if seconds else 0.0

    def overall_rate(self) -> float:
        """Examples (tokens for language models) per second over every epoch so far."""
        return self.examples_seen / self.train_seconds if self.train_seconds else 0.0

    def mfu(self, epoch: int | None = None) -> float:
        """Model FLOPs utilization of one epoch (or of the whole run)."""
        rate = self.overall_rate() if epoch is None else self.examples_per_second(epoch)
        return self.train_flops_per_item * rate / self.peak_flops if self.peak_flops else 0.0

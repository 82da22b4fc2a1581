"""Bounds on wall time: per call into the training graph, and for the whole fit.

Both act between graph calls, the only place a callback can: ExecutionBound keeps each
call short so that a signal is answered quickly; TimeLimit ends the run after
train.time_limit_minutes.
"""

from __future__ import annotations

import time

from bigmodel_cli.tfenv import import_keras

keras = import_keras()


class TimeLimit(keras.callbacks.Callback):
    """Ends training after `minutes` of this invocation's fit, checked after every call
    into the training graph: the epoch under way ends there (validated and recorded like
    any other), and the run finishes normally."""

    def __init__(self, minutes: float) -> None:
        super().__init__()
        self.seconds = minutes * 60.0
        self.began = time.perf_counter()
        self.reached = False

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.began = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if time.perf_counter() - self.began >= self.seconds:
            self.reached = True
            self.model.stop_training = True


class ExecutionBound(keras.callbacks.Callback):
    """Keeps each call into the training graph under `seconds` of wall time, so that a
    signal (read between calls) is answered that fast: when a call with
    `steps_per_execution` > 1 takes longer, the next calls run proportionally fewer
    steps. The first call of a fit traces the graph and is not counted."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self._calls = 0
        self._began = 0.0
        self._first_step = 0

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._began = time.perf_counter()
        self._first_step = batch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        elapsed = time.perf_counter() - self._began
        self._calls += 1
        variable = self.model._steps_per_execution
        current = int(variable.numpy())
        # A partial call (the epoch's last) is restored by Keras afterwards: skip it.
        full = batch + 1 - self._first_step == current
        if self._calls > 1 and full and current > 1 and elapsed > self.seconds:
            variable.assign(max(1, int(current * 0.5 * self.seconds / elapsed)))

    @property
    def steps_per_execution(self) -> int:
        return int(self.model._steps_per_execution.numpy())

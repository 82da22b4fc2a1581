"""TensorBoard scalars beyond Keras's own: what metrics.csv records about each epoch."""

from __future__ import annotations

from pathlib import Path

from bigmodel_cli.tfenv import import_keras, import_tensorflow
from bigmodel_cli.training.callbacks.metrics_csv import current_learning_rate
from bigmodel_cli.training.callbacks.throughput import Throughput

tf = import_tensorflow()
keras = import_keras()


class TensorBoardScalars(keras.callbacks.Callback):
    """What metrics.csv has beyond the loss and metrics (the learning rate, examples/s,
    MFU) as TensorBoard scalars, in the same `train/` run as Keras's own."""

    def __init__(self, log_dir: Path, throughput: Throughput):
        super().__init__()
        self.log_dir = log_dir
        self.throughput = throughput
        self._writer = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.log_dir / "train"))
        with self._writer.as_default(step=epoch):
            tf.summary.scalar("epoch_learning_rate", current_learning_rate(self.model))
            tf.summary.scalar(
                "epoch_examples_per_second", self.throughput.examples_per_second(epoch)
            )
            tf.summary.scalar("epoch_mfu", self.throughput.mfu(epoch))
        self._writer.flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

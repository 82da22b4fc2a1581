"""Re-scoring: the exported file and the Keras model on the same test batches, with the
run's own loss and metrics, and how many examples per second each answers.

Both are scored by the same code on the same raw inputs: the Keras model as `bigmodel
predict` runs it (normalized in NumPy, then the model), the exported file through its
signature (normalization inside). So the difference between the two columns is the
export's alone. The loss is the data term only (no L1/L2 penalty), for both.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from bigmodel_cli.config import Config
from bigmodel_cli.export.graph import Interface
from bigmodel_cli.spec import Arrays, DataSpec
from bigmodel_cli.tfenv import import_tensorflow

Model = Callable[[np.ndarray], np.ndarray]  # raw inputs -> the Keras model's own outputs
TIMING_SECONDS = 0.2  # each model is timed for at least this long (whole passes)
MAX_TIMING_PASSES = 50


def test_batches(arrays: Arrays, cfg: Config, spec: DataSpec) -> list[tuple[np.ndarray, Any]]:
    """(raw inputs, labels in the form the loss expects) per batch, as evaluate batches."""
    from bigmodel_cli.data import make_dataset

    dataset = make_dataset(arrays, cfg, spec, training=False)
    return [(x.numpy(), y.numpy()) for x, y in dataset]


def keras_model(model: Any, normalization: dict | None) -> Model:
    """The Keras model on raw inputs, as `bigmodel predict` prepares them."""
    tf = import_tensorflow()
    from bigmodel_cli.data import Normalization

    stats = Normalization.from_json(normalization) if normalization else None
    call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    return lambda x: call(stats.apply(x) if stats else x).numpy()


def exported_model(signature: Callable[[np.ndarray], dict], interface: Interface) -> Model:
    """An exported file's signature, returning the Keras model's own output."""
    return lambda x: interface.model_outputs({k: np.asarray(v) for k, v in signature(x).items()})


def score(model: Model, batches: list[tuple[np.ndarray, Any]], cfg: Config, spec: DataSpec
          ) -> dict[str, float]:  # fmt: skip
    """The run's loss and metrics of `model` over `batches`, per example as evaluate."""
    import_tensorflow()
    from bigmodel_cli import registry
    from bigmodel_cli.config import defaults

    keras = registry.keras
    loss_cfg = defaults.effective_loss(cfg, spec)
    loss = registry.build_loss(loss_cfg)
    metrics = registry.build_metrics(defaults.effective_metrics(cfg, spec), loss_cfg, spec)
    mean_loss = keras.metrics.Mean(name="loss")
    for x, y in batches:
        out = model(x)
        mean_loss.update_state(loss(y, out), sample_weight=len(x))
        for metric in metrics:
            metric.update_state(y, out)
    return {m.name: float(m.result()) for m in [mean_loss, *metrics]}


def examples_per_second(model: Model, inputs: Iterable[np.ndarray]) -> float:
    """Examples answered per second over whole passes of `inputs`, after one warm-up
    call (tracing, allocation)."""
    inputs = list(inputs)
    model(inputs[0])
    examples, seconds, passes = 0, 0.0, 0
    while passes == 0 or (seconds < TIMING_SECONDS and passes < MAX_TIMING_PASSES):
        for x in inputs:
            start = time.perf_counter()
            model(x)
            seconds += time.perf_counter() - start
            examples += len(x)
        passes += 1
    return examples / seconds if seconds > 0 else float("inf")

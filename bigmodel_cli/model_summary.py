"""What `bigmodel validate` shows: the built model's layers, parameters and FLOPs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bigmodel_cli.config import Config
from bigmodel_cli.tfenv import import_tensorflow


def _shape(shape: Any) -> list[int | None]:
    if isinstance(shape, list):  # a layer with several outputs: show the first
        shape = shape[0]
    return [None if d is None else int(d) for d in tuple(shape)[1:]]


def summarize(cfg: Config, base_dir: Path) -> dict[str, Any]:
    """Build the model for `cfg` on its data's spec and describe it."""
    import_tensorflow()
    import tf_keras as keras

    from bigmodel_cli import data as data_lib
    from bigmodel_cli import defaults, distribution
    from bigmodel_cli.flops import flops_per_example
    from bigmodel_cli.models import build_model

    keras.backend.clear_session()
    keras.utils.set_random_seed(cfg.seed)
    distribution.set_precision("float32")  # the summary is about shapes and counts
    spec = data_lib.load_data(cfg, base_dir).spec
    defaults.effective_loss(cfg, spec)  # a loss that cannot fit the data is a config error
    defaults.effective_metrics(cfg, spec)
    model = build_model(cfg, spec)
    trainable = sum(keras.backend.count_params(w) for w in model.trainable_weights)
    layers = [
        {
            "name": layer.name,
            "type": type(layer).__name__,
            "output_shape": _shape(layer.output_shape),
            "params": int(layer.count_params()),
        }
        for layer in model.layers
    ]
    return {
        "name": cfg.name,
        "model_type": cfg.model.type,
        "params": int(model.count_params()),
        "trainable_params": int(trainable),
        "flops_per_example": int(flops_per_example(model)),
        "input_shape": _shape(model.input_shape),
        "output_shape": _shape(model.output_shape),
        "layers": layers,
        "data": {"source": cfg.data.source, "task": spec.task},
    }

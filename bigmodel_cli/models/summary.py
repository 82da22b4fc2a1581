"""What `bigmodel validate` shows: the model's layers, parameters, FLOPs and memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bigmodel_cli.config import Config
from bigmodel_cli.tfenv import import_keras, import_tensorflow


def _shape(shape: Any) -> list[int | None]:
    if isinstance(shape, list):  # a layer with several outputs: show the first
        shape = shape[0]
    return [None if d is None else int(d) for d in tuple(shape)[1:]]


def _precision(cfg: Config) -> str:
    """The precision training will use, where the config fixes it (auto: float32 on
    CPUs, the conservative guess elsewhere: float32 activations are the larger)."""
    requested = cfg.train.mixed_precision
    return "float32" if requested == "auto" else requested


def summarize(cfg: Config, base_dir: Path) -> dict[str, Any]:
    """Estimate the memory `cfg` needs (exit 2 when it cannot fit), then describe the
    model, built symbolically: validate allocates no weight, however large."""
    import_tensorflow()
    keras = import_keras()

    from bigmodel_cli import data as data_lib
    from bigmodel_cli.config import defaults
    from bigmodel_cli.models import memory
    from bigmodel_cli.models.flops import flops_per_example

    memory.check_before_data(cfg, _precision(cfg))  # before a synthetic example exists
    bundle = data_lib.load_data(cfg, base_dir)
    spec = bundle.spec
    defaults.effective_loss(cfg, spec)  # a loss that cannot fit the data is a config error
    defaults.effective_metrics(cfg, spec)
    with memory.measured_model(cfg, spec, bundle, _precision(cfg)) as (model, estimate):
        trainable = sum(keras.backend.count_params(w) for w in model.trainable_weights)
        layers = [
            {
                "name": layer.name,
                "type": type(layer).__name__,
                "output_shape": _shape(layer.get_output_shape_at(0)),
                "params": int(layer.count_params()),
            }
            for layer in model.layers
        ]
        result = {
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
    available = memory.host_available()
    result["memory_estimate_bytes"] = estimate.total
    result["memory"] = estimate.to_json(available)
    return result


def layer_table(result: dict[str, Any]) -> tuple[str, list[str], list[tuple[Any, ...]]]:
    """(title, columns, rows) of the layer table `bigmodel validate` prints."""
    rows = [
        (la["name"], la["type"], str(tuple(la["output_shape"])), la["params"])
        for la in result["layers"]
    ]
    columns = ["layer", "type", "output shape", "params"]
    return f"{result['name']}: {result['model_type']}", columns, rows


def size_line(result: dict[str, Any]) -> str:
    """Parameters and FLOPs, one line."""
    return (
        f"params: {result['params']:,} (trainable {result['trainable_params']:,})  "
        f"FLOPs per example: {result['flops_per_example']:,}"
    )

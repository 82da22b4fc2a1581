"""Helpers shared by the data tests: configs for each model type, error text."""

from __future__ import annotations

from bigmodel_cli.config import Config

MODELS = {
    "mlp": {"type": "mlp", "dense": [4]},
    "cnn": {"type": "cnn", "conv": [{"filters": 4}]},
    "rnn": {"type": "rnn", "units": [4]},
    "transformer": {"type": "transformer", "d_model": 8, "num_heads": 2},
    "lm": {"type": "transformer", "task": "language_model", "d_model": 8, "num_heads": 2},
    "sequential": {"type": "sequential", "layers": [{"type": "Flatten"}]},
}


def make_cfg(data: dict, model: str = "mlp", **top) -> Config:
    return Config.model_validate({"data": data, "model": MODELS[model], **top})


def problems(excinfo) -> str:
    return "\n".join(excinfo.value.problems)

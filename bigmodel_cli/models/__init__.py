"""Model builders: one pure function per `model.type`, `build_model` dispatches.

Each builder is `build_x(cfg: Config, spec: DataSpec) -> keras.Model`, uses the
functional API (sequential: `keras.Sequential`), names the model after `cfg.name`, and
adds no layer the config did not ask for. Importing this package imports TensorFlow,
so callers import it lazily.
"""

from __future__ import annotations

from bigmodel_cli.config import Config
from bigmodel_cli.errors import ConfigError
from bigmodel_cli.models.cnn import build_cnn
from bigmodel_cli.models.mlp import build_mlp
from bigmodel_cli.models.rnn import build_rnn
from bigmodel_cli.models.sequential import build_sequential
from bigmodel_cli.models.transformer import build_transformer
from bigmodel_cli.spec import DataSpec
from bigmodel_cli.tfenv import import_keras

keras = import_keras()

BUILDERS = {
    "mlp": build_mlp,
    "cnn": build_cnn,
    "rnn": build_rnn,
    "transformer": build_transformer,
    "sequential": build_sequential,
}


def build_model(cfg: Config, spec: DataSpec) -> keras.Model:
    """The Keras model `cfg.model` describes, sized by the data (`spec`) where the
    config leaves input shape or output size out. Raises ConfigError on a model that
    cannot be built from this config and data."""
    builder = BUILDERS.get(cfg.model.type)
    if builder is None:
        raise ConfigError(
            f"model.type: unknown {cfg.model.type!r}; expected one of {', '.join(BUILDERS)}."
        )
    return builder(cfg, spec)


__all__ = [
    "BUILDERS",
    "build_cnn",
    "build_mlp",
    "build_model",
    "build_rnn",
    "build_sequential",
    "build_transformer",
]

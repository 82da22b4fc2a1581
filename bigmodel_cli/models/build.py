"""`build_model`: the table of builders, one per `model.type`, and the dispatch.

Importing this module imports TensorFlow (every builder does).
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

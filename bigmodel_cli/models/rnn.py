"""`model.type: rnn`: [Embedding] -> stacked LSTM/GRU/SimpleRNN layers (optionally
bidirectional) -> hidden Dense blocks -> output layer.

Token inputs `(steps,)` are embedded first; float inputs must already be sequences
`(steps, features)`. On language-model data the last recurrent layer returns every
step too, and the Dense layers and the output act per position (next-token logits).
"""

from __future__ import annotations

from bigmodel_cli import registry
from bigmodel_cli.config import Config
from bigmodel_cli.errors import ConfigError
from bigmodel_cli.models import common
from bigmodel_cli.spec import DataSpec
from bigmodel_cli.tfenv import import_keras

keras = import_keras()

CELLS = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU, "simple": keras.layers.SimpleRNN}
DEFAULT_EMBEDDING_DIM = 64


def _check_inputs(cfg: Config, spec: DataSpec) -> None:
    shape = common.input_shape(cfg, spec)
    if common.is_tokens(spec):
        if len(shape) != 1:
            raise ConfigError(
                f"model.input_shape: token inputs must be one id per step, (steps,); "
                f"received {list(shape)}."
            )
        if not spec.vocab_size:
            raise ConfigError("data: integer token inputs need a vocab_size.")
        return
    if cfg.model.embedding_dim is not None:
        raise ConfigError(
            "model.embedding_dim: the data has float inputs, which are fed to the "
            "recurrent layers directly; only integer token inputs are embedded. Remove it."
        )
    if len(shape) != 2:
        raise ConfigError(
            f"model.type: rnn needs sequences shaped (steps, features); the examples have "
            f"shape {list(shape)}. Set model.input_shape (e.g. [{shape[0]}, 1]) or use "
            "type: mlp."
        )


def recurrent_layer(cfg: Config, units: int, return_sequences: bool, index: int):
    """One recurrent layer, wrapped in Bidirectional when asked."""
    kernels = common.kernel_args(cfg)
    layer = CELLS[cfg.model.cell](
        units,
        return_sequences=return_sequences,
        recurrent_regularizer=registry.build_regularizer(cfg.regularization),
        name=f"{cfg.model.cell}_{index}",
        **kernels,
    )
    if cfg.model.bidirectional:
        layer = keras.layers.Bidirectional(layer, name=f"bidirectional_{index}")
    return layer


def build_rnn(cfg: Config, spec: DataSpec) -> keras.Model:
    _check_inputs(cfg, spec)
    common.require_batch_norm_target(cfg, bool(cfg.model.dense), "its hidden Dense layers")
    per_position = spec.task == "language_model"

    # === Inputs ===
    inputs = common.model_input(cfg, spec)
    x = inputs
    if common.is_tokens(spec):
        x = keras.layers.Embedding(
            spec.vocab_size,
            cfg.model.embedding_dim or DEFAULT_EMBEDDING_DIM,
            embeddings_regularizer=registry.build_regularizer(cfg.regularization),
            name="embedding",
        )(x)

    # === Recurrent layers ===
    stack = cfg.model.units
    for index, units in enumerate(stack, start=1):
        last = index == len(stack)
        x = recurrent_layer(cfg, units, not last or per_position, index)(x)
        x = common.dropout(x, cfg, f"{cfg.model.cell}_{index}")

    # === Hidden Dense layers ===
    x = common.dense_stack(x, cfg)

    # === Output ===
    outputs = common.output_layer(x, cfg, spec)
    return keras.Model(inputs, outputs, name=common.model_name(cfg))

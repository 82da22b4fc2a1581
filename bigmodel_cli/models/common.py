"""Pieces every preset shares: the input, hidden Dense blocks and the output layer.

Policy, in one place:
- Every kernel (Dense, Conv, recurrent input and recurrent kernels, attention
  projections) gets `model.initializer` and, when `regularization.l1`/`l2` > 0, an
  L1L2 penalty. Embedding tables (token and learned position) get the penalty too, as
  nanoGPT decays every matrix; biases and normalization scales never do. Recurrent
  kernels keep Keras's orthogonal initializer, which matters for stable RNN training.
- A hidden block is Dense/Conv -> BatchNormalization (if `batch_norm`) -> activation ->
  Dropout (if `dropout` > 0). Without batch norm the activation lives inside the
  Dense/Conv layer, so no Activation layer is added.
- The output is one `Dense(units, activation, dtype="float32", name="predictions")`;
  float32 keeps predictions and the loss in full precision under mixed precision.
"""

from __future__ import annotations

import re

from bigmodel_cli import registry
from bigmodel_cli.config import Config, defaults
from bigmodel_cli.errors import ConfigError
from bigmodel_cli.spec import DataSpec
from bigmodel_cli.tfenv import import_keras

keras = import_keras()


def model_name(cfg: Config) -> str:
    """`cfg.name` made safe for a Keras/TF name scope (letters, digits, `_.-`)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", cfg.name)
    return name if name[:1].isalnum() else f"m{name}"


def input_shape(cfg: Config, spec: DataSpec) -> tuple[int, ...]:
    """Shape of one example: `model.input_shape` if given, else the data's."""
    shape = cfg.model.input_shape or spec.input_shape
    return tuple(int(dim) for dim in shape)


def model_input(cfg: Config, spec: DataSpec):
    """The `keras.Input` of one example, int32 for token ids."""
    return keras.Input(shape=input_shape(cfg, spec), dtype=spec.input_dtype, name="inputs")


def is_tokens(spec: DataSpec) -> bool:
    """Integer token ids (they need an embedding, never arithmetic on the ids)."""
    return spec.input_dtype == "int32"


def kernel_args(cfg: Config) -> dict:
    """Initializer and penalty for a layer's `kernel` (see the module docstring)."""
    return {
        "kernel_initializer": cfg.model.initializer,
        "kernel_regularizer": registry.build_regularizer(cfg.regularization),
    }


def normalize_activate_drop(x, cfg: Config, name: str, with_activation: bool = True):
    """The tail of a hidden block whose Dense/Conv was built without activation when
    batch norm is on (the activation must follow the normalization)."""
    model = cfg.model
    if model.batch_norm:
        x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
        if with_activation:
            x = keras.layers.Activation(model.activation, name=f"{name}_act")(x)
    return dropout(x, cfg, name)


def dropout(x, cfg: Config, name: str):
    if cfg.model.dropout > 0:
        x = keras.layers.Dropout(cfg.model.dropout, name=f"{name}_dropout")(x)
    return x


def block_activation(cfg: Config) -> str:
    """Activation to put inside a Dense/Conv layer: none when batch norm comes next."""
    return "linear" if cfg.model.batch_norm else cfg.model.activation


def dense_stack(x, cfg: Config, units: list[int] | None = None):
    """The hidden Dense blocks `model.dense` (works per position on sequences too)."""
    for index, width in enumerate(cfg.model.dense if units is None else units, start=1):
        name = f"dense_{index}"
        x = keras.layers.Dense(
            width, activation=block_activation(cfg), name=name, **kernel_args(cfg)
        )(x)
        x = normalize_activate_drop(x, cfg, name)
    return x


OUTPUT_LAYER = "predictions"  # the output Dense of every preset


def output_layer(x, cfg: Config, spec: DataSpec, units: int | None = None):
    """The single output Dense; `units` overrides the head's (a language model's vocab)."""
    head = defaults.output_head(cfg, spec)
    return keras.layers.Dense(
        units or head.units,
        activation=head.activation,
        dtype="float32",
        name=OUTPUT_LAYER,
        **kernel_args(cfg),
    )(x)


def keras_message(err: Exception) -> str:
    """The informative line of a Keras/TF build error, without the op dump around it."""
    # Some Keras errors carry several args, e.g. ("Keyword argument not understood:", "x").
    text = " ".join(map(str, err.args)) if len(err.args) > 1 else str(err)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Exception encountered when calling layer"):
        lines = lines[1:]
    line = lines[0] if lines else type(err).__name__
    return re.sub(r" for '\{\{node .*?' with", " with", line)


def require_not_language_model(cfg: Config, spec: DataSpec) -> None:
    """mlp and cnn predict one label per example; a language model needs one per token."""
    if spec.task == "language_model":
        raise ConfigError(
            f"model.type: {cfg.model.type!r} predicts one label per example, but the data "
            "is a language-model corpus (a label per token). Use type: transformer with "
            "task: language_model, or type: rnn."
        )
    if is_tokens(spec):
        raise ConfigError(
            f"model.type: {cfg.model.type!r} would do arithmetic on integer token ids "
            f"(the data has a vocabulary of {spec.vocab_size}). Use type: rnn or "
            "transformer, which embed tokens first."
        )


def require_batch_norm_target(cfg: Config, has_target: bool, target: str) -> None:
    """`batch_norm` must normalize something; say so rather than ignore it silently."""
    if cfg.model.batch_norm and not has_target:
        raise ConfigError(
            f"model.batch_norm: {cfg.model.type} applies batch normalization to {target}, "
            "and this model has none. Remove batch_norm or add model.dense layers."
        )

"""Names, the strict base section and shared field types of the config schema."""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

ModelType = Literal["mlp", "cnn", "rnn", "transformer", "sequential"]
DataSource = Literal[
    "digits", "iris", "wine", "breast_cancer", "diabetes", "synthetic", "csv", "npz",
    "image_dir", "text_dir", "text_corpus", "tfrecord",
]  # fmt: skip
BUILTIN_SOURCES = ("digits", "iris", "wine", "breast_cancer", "diabetes")

OPTIMIZERS = ("sgd", "rmsprop", "adagrad", "adadelta", "adam", "adamw", "nadam", "adamax")
SCHEDULES = ("constant", "exponential", "cosine", "warmup_cosine", "piecewise")
LOSSES = (
    "mse",
    "mean_squared_error",
    "mae",
    "mean_absolute_error",
    "huber",
    "binary_crossentropy",
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
)
CLASSIFICATION_LOSSES = (
    "binary_crossentropy",
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
)
METRICS = (
    "accuracy", "precision", "recall", "f1", "auc", "mae", "mse", "rmse", "perplexity",
    "bits_per_byte",
)  # fmt: skip
LM_METRICS = ("perplexity", "bits_per_byte")
ACTIVATIONS = (
    "relu", "gelu", "selu", "elu", "tanh", "sigmoid", "swish", "silu", "softplus",
    "softsign", "leaky_relu", "relu6", "mish", "hard_sigmoid", "exponential", "linear",
    "softmax",
)  # fmt: skip
INITIALIZERS = (
    "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
    "lecun_normal", "orthogonal", "random_normal", "random_uniform", "truncated_normal",
    "zeros", "ones",
)  # fmt: skip
OUTPUT_ACTIVATIONS = ("softmax", "sigmoid", "linear", "tanh", "relu", "softplus")


class ConfigKeyError(ValueError):
    """Semantic problems with keys of one section; `config.load` appends each key to the
    section's path, so every problem is reported as its own `dotted.key: message` line."""

    def __init__(self, key: str, message: str, more: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.problems = [(key, message), *(more or [])]

    @property
    def key(self) -> str:
        return self.problems[0][0]

    @classmethod
    def collect(cls, problems: list[tuple[str, str]]) -> ConfigKeyError:
        (key, message), *rest = problems
        return cls(key, message, rest)


class Section(BaseModel):
    """Base of every config section: unknown keys are errors and values are frozen."""

    # NaN and infinity pass `gt=0`-style bounds and reach TensorFlow; no key wants them.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _whole_floats_are_ints(cls, data: Any) -> Any:
        """Configs validate strictly ("3" is not 3), but 3.0 counts as 3 where a whole
        number is expected: JSON, and so the JSON Schema, cannot tell the two apart."""
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {
            key: _whole_numbers(value, fields[key].annotation) if key in fields else value
            for key, value in data.items()
        }


def _whole_numbers(value: Any, annotation: Any) -> Any:
    """`value` with whole floats as ints wherever `annotation` expects an int."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _whole_numbers(value, typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        for member in typing.get_args(annotation):
            value = _whole_numbers(value, member)
        return value
    if annotation is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if origin is list and isinstance(value, list):
        return [_whole_numbers(item, typing.get_args(annotation)[0]) for item in value]
    return value


Activation = Literal[ACTIVATIONS]  # type: ignore[valid-type]
Initializer = Literal[INITIALIZERS]  # type: ignore[valid-type]
# Counts and sizes end up in TensorFlow shapes and step counters; past int32 they only
# overflow there (with a traceback, after TensorFlow loaded), so the schema refuses them.
# `lt`, not `le`: a field's own `Field(le=...)` (e.g. batch_size) must not be overridden.
MAX_INT = 2**31 - 1
PositiveInt = Annotated[int, Field(ge=1, lt=MAX_INT + 1)]
Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]

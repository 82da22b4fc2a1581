"""Choices the config may leave out, derived from the data: loss, metrics, output head.

One place decides them so that the data pipeline (label format), the model builders
(output layer) and compile (loss, metrics) always agree. No TensorFlow import.
"""

from __future__ import annotations

from dataclasses import dataclass

from bigmodel_cli.config.root import Config
from bigmodel_cli.config.sections import LossConfig
from bigmodel_cli.errors import ConfigError
from bigmodel_cli.spec import DataSpec


@dataclass(frozen=True)
class OutputHead:
    units: int
    activation: str  # "linear" means none


def effective_loss(cfg: Config, spec: DataSpec) -> LossConfig:
    """The config's loss, or the natural one for the data's task."""
    if cfg.loss is not None:
        if spec.task == "regression" and cfg.loss.is_classification:
            raise ConfigError(
                f"loss: {cfg.loss.name!r} is a classification loss but data "
                f"source={cfg.data.source!r} has regression targets; use mse, mae or huber."
            )
        if spec.task != "regression" and not cfg.loss.is_classification:
            raise ConfigError(
                f"loss: {cfg.loss.name!r} is a regression loss but the data has class labels; "
                "use sparse_categorical_crossentropy (or categorical_/binary_crossentropy)."
            )
        if cfg.loss.name == "binary_crossentropy" and (spec.num_classes or 0) > 2:
            raise ConfigError(
                f"loss: binary_crossentropy needs 2 classes; the data has {spec.num_classes}. "
                "Use sparse_categorical_crossentropy."
            )
        return cfg.loss
    if spec.task == "regression":
        return LossConfig(name="mse")
    return LossConfig(
        name="sparse_categorical_crossentropy",
        from_logits=spec.task == "language_model",  # stabler over a large vocabulary
    )


def effective_metrics(cfg: Config, spec: DataSpec) -> list[str]:
    if cfg.metrics is not None:
        if "perplexity" in cfg.metrics and spec.task != "language_model":
            raise ConfigError("metrics: perplexity is only for language models.")
        if "bits_per_byte" in cfg.metrics and spec.bytes_per_token is None:
            raise ConfigError(
                "metrics: bits_per_byte needs text (data.source: text_corpus); this data's "
                "tokens do not stand for bytes."
            )
        return list(cfg.metrics)
    if spec.task == "regression":
        return ["mae", "rmse"]
    if spec.task == "language_model":
        text = ["bits_per_byte"] if spec.bytes_per_token is not None else []
        return ["accuracy", "perplexity", *text]
    return ["accuracy"]


def output_head(cfg: Config, spec: DataSpec) -> OutputHead:
    """Units and activation of the model's last layer."""
    loss = effective_loss(cfg, spec)
    if spec.task == "regression":
        units = spec.target_size
    elif loss.name == "binary_crossentropy":
        units = 1
    else:
        units = spec.num_classes or 1
    units = cfg.model.outputs or units
    if cfg.model.output_activation is not None:
        activation = cfg.model.output_activation
    elif loss.is_classification and loss.from_logits:
        activation = "linear"
    elif loss.name == "binary_crossentropy":
        activation = "sigmoid"
    elif loss.is_classification:
        activation = "softmax"
    else:
        activation = "linear"
    return OutputHead(units=units, activation=activation)


def one_hot_labels(cfg: Config, spec: DataSpec) -> bool:
    """Whether the pipeline must one-hot encode integer labels for the loss."""
    return effective_loss(cfg, spec).name == "categorical_crossentropy"

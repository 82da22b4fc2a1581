"""The whole config: `Config`, which assembles the sections and checks what one section
says against another (a loss against the data, a model type against the source)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from bigmodel_cli.config.base import (
    LM_METRICS,
    LOSSES,
    METRICS,
    ConfigKeyError,
    Section,
)
from bigmodel_cli.config.compress import CompressConfig, PruneConfig
from bigmodel_cli.config.data import (
    MAX_SEQUENCE_LENGTH,
    SEQUENCE_SOURCES,
    SEQUENCE_TASKS,
    DataConfig,
)
from bigmodel_cli.config.distill import DistillConfig
from bigmodel_cli.config.init import InitConfig
from bigmodel_cli.config.model import (
    ModelConfig,
)
from bigmodel_cli.config.optim import (
    OptimizerConfig,
)
from bigmodel_cli.config.sections import (
    DistributeConfig,
    LossConfig,
    OutputConfig,
    RegularizationConfig,
    TrainConfig,
)
from bigmodel_cli.config.tune import TuneConfig

# === the whole config ========================================================


class Config(Section):
    """A bigmodel config: everything `bigmodel train` needs."""

    name: str = Field(
        "run",
        min_length=1,
        max_length=100,
        description="Run name; runs go to OUTPUT_DIR/NAME/<timestamp>/.",
    )
    seed: int = Field(42, ge=0, le=2**31 - 1, description="Seeds data splits and weights.")
    base: str | None = Field(
        None,
        min_length=1,
        description="Path of a config this one extends (merged key by key); the file then "
        "holds only the keys it changes.",
    )
    data: DataConfig = Field(default_factory=DataConfig, description="Data source and splits.")
    model: ModelConfig = Field(description="Architecture; `type` picks the builder.")
    optimizer: OptimizerConfig = Field(
        default_factory=OptimizerConfig, description="Optimizer and learning rate."
    )
    loss: LossConfig | None = Field(
        None,
        description="Loss; default sparse_categorical_crossentropy for classification and "
        "language models, mse for regression.",
    )
    regularization: RegularizationConfig = Field(
        default_factory=RegularizationConfig, description="L1/L2 weight penalties."
    )
    metrics: list[Literal[METRICS]] | None = Field(  # type: ignore[valid-type]
        None,
        description="Metrics to report; default accuracy (classification), mae+rmse "
        "(regression), accuracy+perplexity+bits_per_byte (text_corpus language models), "
        "accuracy+perplexity (other language models).",
    )
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training loop.")
    distribute: DistributeConfig = Field(
        default_factory=DistributeConfig, description="tf.distribute strategy."
    )
    output: OutputConfig = Field(default_factory=OutputConfig, description="Where runs go.")
    distill: DistillConfig | None = Field(
        None,
        description="Knowledge distillation: learn from a trained run's model (the teacher) "
        "as well as from the labels.",
    )
    compress: CompressConfig | None = Field(
        None, description="Make the model smaller while it trains: `prune`."
    )
    tune: TuneConfig | None = Field(
        None, description="Hyperparameter search for `bigmodel tune` (`bigmodel train` ignores it)."
    )
    init: InitConfig | None = Field(
        None, description="Start from a trained run's weights (transfer learning)."
    )

    # The JSON Schema shows what this validator accepts: a loss name, or the mapping.
    @field_validator(
        "loss", mode="before", json_schema_input_type=Literal[LOSSES] | LossConfig | None
    )
    @classmethod
    def _loss_string_is_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="before")
    @classmethod
    def _max_length_is_the_default_sequence_length(cls, document: Any) -> Any:
        """A transformer's `max_length` is the sequence length meant when the data has no
        `sequence_length` of its own (else the data's default would exceed it)."""
        if not isinstance(document, dict):
            return document
        model, data = document.get("model"), document.get("data", {})
        if not isinstance(model, dict) or not isinstance(data, dict):
            return document
        length = model.get("max_length")
        if (
            model.get("type") != "transformer"
            or type(length) is not int  # a bool or a string is reported by the schema
            or not 1 <= length <= MAX_SEQUENCE_LENGTH
            or data.get("sequence_length") is not None
        ):
            return document
        source = data.get("source")
        if source in SEQUENCE_SOURCES or (
            source == "synthetic" and data.get("task") in SEQUENCE_TASKS
        ):
            return {**document, "data": {**data, "sequence_length": length}}
        return document

    @field_validator("name")
    @classmethod
    def _name_stays_inside_output_dir(cls, name: str) -> str:
        bad = [c for c in ("/", "\\") if c in name] + [c for c in name if not c.isprintable()]
        if bad or name in (".", "..") or name.startswith(".") or name != name.strip():
            raise ValueError(
                f"a run name must be a plain folder name (no path separators, no leading "
                f"dot, no control or invisible characters, no surrounding spaces); "
                f"received {name!r}"
            )
        if len(name.encode("utf-8")) > 255:  # NAME_MAX of common file systems
            raise ValueError(
                f"a run name must fit in a folder name, 255 bytes of UTF-8; received "
                f"{len(name.encode('utf-8'))} bytes"
            )
        return name

    @model_validator(mode="after")
    def _sections_agree(self) -> Config:
        metrics = self.metrics or []
        lm_only = [m for m in LM_METRICS if m in metrics]
        if lm_only and not _is_language_model(self):
            raise ConfigKeyError("metrics", f"{', '.join(lm_only)}: only for language models.")
        if self.loss and not self.loss.is_classification:
            wrong = sorted({"accuracy", "precision", "recall", "f1", "auc"} & set(metrics))
            if wrong:
                raise ConfigKeyError(
                    "metrics",
                    f"{', '.join(wrong)} need a classification loss; loss is {self.loss.name!r}.",
                )
        unfreeze = self.init.unfreeze_after_epochs if self.init else None
        if unfreeze is not None and unfreeze >= self.train.epochs:
            raise ConfigKeyError(
                "init.unfreeze_after_epochs",
                f"{unfreeze}: training ends after train.epochs={self.train.epochs}; unfreeze "
                "earlier, or train longer",
            )
        if self.distill is not None:
            _check_distill(self)
        prune = self.compress.prune if self.compress else None
        if prune is not None:
            _prune_fits_the_epochs(prune, self.train.epochs)
        return self


def _check_distill(cfg: Config) -> None:
    """What distillation cannot be combined with, said before anything loads. `init` and
    `compress.prune` are read by name, so this holds whether or not those sections exist."""
    if cfg.loss and not cfg.loss.is_classification:
        raise ConfigKeyError(
            "distill",
            f"distillation compares class probabilities, so it needs a classification "
            f"loss; loss is {cfg.loss.name!r}. Remove distill, or use a classification loss",
        )
    others = [("init", getattr(cfg, "init", None))]
    others.append(("compress.prune", getattr(getattr(cfg, "compress", None), "prune", None)))
    for key, section in others:
        if section is not None:
            raise ConfigKeyError(
                "distill",
                f"distill and {key} cannot be combined in one run; distill first, then "
                f"{'start a new run from it' if key == 'init' else 'prune'} the student's run",
            )


def _prune_fits_the_epochs(prune: PruneConfig, epochs: int) -> None:
    """The pruning schedule must end within training (train.epochs)."""
    end = prune.end_epoch if prune.end_epoch is not None else epochs
    if prune.end_epoch is not None and prune.end_epoch > epochs:
        raise ConfigKeyError(
            "compress.prune.end_epoch",
            f"must be at most train.epochs ({epochs}): the schedule must end within "
            f"training. Received: end_epoch={prune.end_epoch}",
        )
    if prune.begin_epoch >= end:
        raise ConfigKeyError(
            "compress.prune.begin_epoch",
            f"must be below train.epochs ({epochs}) and end_epoch: at least one epoch must "
            f"prune. Received: begin_epoch={prune.begin_epoch}",
        )


def _is_language_model(cfg: Config) -> bool:
    return (
        (cfg.model.type == "transformer" and cfg.model.task == "language_model")
        or (cfg.data.source == "synthetic" and cfg.data.task == "language_model")
        or cfg.data.source == "text_corpus"
    )


def is_language_model(cfg: Config) -> bool:
    """True when the config trains a next-token predictor."""
    return _is_language_model(cfg)

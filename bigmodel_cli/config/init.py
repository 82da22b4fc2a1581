"""The `init` config section: start a run from a trained one (transfer learning)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from bigmodel_cli.config.base import ConfigKeyError, PositiveInt, Section
from bigmodel_cli.config.optim import LearningRate

LayerGlobs = list[str]


class InitConfig(Section):
    """Weights copied by layer name from a trained run's best model; some layers frozen,
    some started fresh, and optionally everything unfrozen for a second, slower phase."""

    from_: str | None = Field(
        None,
        alias="from",
        min_length=1,
        description="The run directory to start from (relative to the current directory), "
        "usually given as --set init.from=RUN_DIR; `bigmodel train` requires it.",
    )
    freeze: LayerGlobs = Field(
        default_factory=list,
        description="Layer-name globs (fnmatch) of copied layers not to train; a frozen "
        "BatchNormalization runs in inference mode. Each must match a layer.",
    )
    reinit: LayerGlobs = Field(
        default_factory=list,
        description="Layer-name globs of layers that start from fresh weights instead of "
        "the parent's (e.g. a new output layer for another number of classes). Each must "
        "match a layer.",
    )
    unfreeze_after_epochs: PositiveInt | None = Field(
        None,
        description="Train the frozen layers too from this epoch on, at "
        "`unfreeze_learning_rate` (the 'train the head, then fine-tune everything' recipe).",
    )
    unfreeze_learning_rate: LearningRate | None = Field(
        None,
        description="The learning rate (a number or a schedule mapping, started at the "
        "unfreezing) of the second phase; required with unfreeze_after_epochs.",
    )

    @field_validator("freeze", "reinit")
    @classmethod
    def _globs_are_names(cls, globs: list[str]) -> list[str]:
        blank = [g for g in globs if not g.strip()]
        if blank:
            raise ValueError("a layer glob cannot be empty; give a layer name or pattern")
        return globs

    @model_validator(mode="after")
    def _phases_agree(self) -> InitConfig:
        both = sorted(set(self.freeze) & set(self.reinit))
        if both:
            raise ConfigKeyError(
                "reinit",
                f"{', '.join(both)}: in both freeze and reinit; a fresh layer "
                "that is never trained stays random",
            )
        if self.unfreeze_after_epochs is not None:
            if not self.freeze:
                raise ConfigKeyError(
                    "unfreeze_after_epochs", "nothing is frozen; set init.freeze as well"
                )
            if self.unfreeze_learning_rate is None:
                raise ConfigKeyError(
                    "unfreeze_learning_rate",
                    "required with unfreeze_after_epochs: the rate of the fine-tuning phase, "
                    "usually far below the first (e.g. 1.0e-5)",
                )
        elif self.unfreeze_learning_rate is not None:
            raise ConfigKeyError(
                "unfreeze_learning_rate", "only used with init.unfreeze_after_epochs"
            )
        return self

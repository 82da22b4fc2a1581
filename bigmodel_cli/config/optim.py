"""Config sections for `optimizer`: the optimizer, its learning rate or schedule, clipping."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    Tag,
    model_validator,
)

from bigmodel_cli.config.base import (
    MAX_INT,
    OPTIMIZERS,
    SCHEDULES,
    ConfigKeyError,
    PositiveInt,
    Section,
)

# === optimizer ==============================================================


class ScheduleConfig(Section):
    """A learning-rate schedule; steps count optimizer updates."""

    schedule: Literal[SCHEDULES] = Field(  # type: ignore[valid-type]
        description="constant | exponential | cosine | warmup_cosine | piecewise"
    )
    initial: float | None = Field(None, gt=0, description="Starting (peak) learning rate.")
    decay_steps: PositiveInt | None = Field(
        None,
        description="exponential: steps per decay; cosine: steps to decay over "
        "(default: all training steps).",
    )
    decay_rate: float | None = Field(None, gt=0, le=1, description="exponential: factor.")
    staircase: bool = Field(False, description="exponential: decay in discrete steps.")
    warmup_steps: int = Field(
        0, ge=0, le=MAX_INT, description="Linear warm-up steps before the decay."
    )
    alpha: float = Field(0.0, ge=0, le=1, description="cosine: final rate as a fraction.")
    boundaries: list[PositiveInt] | None = Field(None, description="piecewise: step boundaries.")
    values: list[Annotated[float, Field(ge=0)]] | None = Field(
        None, description="piecewise: one rate per interval (len(boundaries) + 1)."
    )

    @model_validator(mode="after")
    def _fits_schedule(self) -> ScheduleConfig:
        kind = self.schedule
        if kind == "piecewise":
            if not self.boundaries or not self.values:
                raise ConfigKeyError("boundaries", "piecewise needs `boundaries` and `values`.")
            if len(self.values) != len(self.boundaries) + 1:
                raise ConfigKeyError(
                    "values",
                    f"piecewise needs len(values) = len(boundaries) + 1; received "
                    f"{len(self.values)} values for {len(self.boundaries)} boundaries.",
                )
            if sorted(self.boundaries) != self.boundaries:
                raise ConfigKeyError("boundaries", "boundaries must be increasing.")
        elif self.initial is None:
            raise ConfigKeyError("initial", f"schedule {kind!r} needs `initial`.")
        if kind == "exponential" and (self.decay_steps is None or self.decay_rate is None):
            raise ConfigKeyError("decay_steps", "exponential needs `decay_steps` and `decay_rate`.")
        return self


def _number_or_mapping(value: Any) -> str:
    return "mapping" if isinstance(value, dict | ScheduleConfig) else "number"


# Tagged so that an error names `optimizer.learning_rate.initial`, not both union members.
LearningRate = Annotated[
    Annotated[Annotated[float, Field(gt=0, le=100)], Tag("number")]
    | Annotated[ScheduleConfig, Tag("mapping")],
    Discriminator(_number_or_mapping),
]
LEARNING_RATE_TAGS = ("number", "mapping")


# Which optimizer accepts which optional hyperparameter (beyond learning_rate/clipping).
OPTIMIZER_ARGS: dict[str, set[str]] = {
    "sgd": {"momentum", "nesterov", "weight_decay"},
    "rmsprop": {"rho", "momentum", "epsilon", "centered", "weight_decay"},
    "adagrad": {"epsilon", "initial_accumulator_value", "weight_decay"},
    "adadelta": {"rho", "epsilon", "weight_decay"},
    "adam": {"beta_1", "beta_2", "epsilon", "amsgrad", "weight_decay"},
    "adamw": {"beta_1", "beta_2", "epsilon", "amsgrad", "weight_decay"},
    "nadam": {"beta_1", "beta_2", "epsilon", "weight_decay"},
    "adamax": {"beta_1", "beta_2", "epsilon", "weight_decay"},
}


# Keras's own default learning rate of each optimizer (0.001 for the others): a config
# that names an optimizer and no rate gets what that Keras optimizer would use.
KERAS_LEARNING_RATES = {"sgd": 0.01}
DEFAULT_LEARNING_RATE = 1.0e-3


class OptimizerConfig(Section):
    """Optimizer, learning rate (or schedule) and gradient clipping."""

    name: Literal[OPTIMIZERS] = Field("adam", description="Optimizer.")  # type: ignore[valid-type]
    learning_rate: LearningRate = Field(
        DEFAULT_LEARNING_RATE,
        description="A number, or a schedule mapping. Default: the Keras optimizer's own "
        "(0.01 for sgd, 0.001 for the others).",
    )
    clipnorm: float | None = Field(None, gt=0, description="Clip each gradient's norm.")
    clipvalue: float | None = Field(None, gt=0, description="Clip each gradient element.")
    global_clipnorm: float | None = Field(None, gt=0, description="Clip the global norm.")
    momentum: float | None = Field(None, ge=0, lt=1, description="sgd, rmsprop: momentum.")
    nesterov: bool | None = Field(None, description="sgd: Nesterov momentum.")
    beta_1: float | None = Field(None, ge=0, lt=1, description="adam family: beta_1.")
    beta_2: float | None = Field(None, ge=0, lt=1, description="adam family: beta_2.")
    epsilon: float | None = Field(None, gt=0, description="Numerical-stability epsilon.")
    amsgrad: bool | None = Field(None, description="adam, adamw: AMSGrad variant.")
    rho: float | None = Field(None, ge=0, lt=1, description="rmsprop, adadelta: decay.")
    centered: bool | None = Field(None, description="rmsprop: centered variant.")
    initial_accumulator_value: float | None = Field(None, ge=0, description="adagrad.")
    weight_decay: float | None = Field(
        None, ge=0, description="Decoupled weight decay (adamw default 0.004)."
    )

    @model_validator(mode="before")
    @classmethod
    def _keras_default_learning_rate(cls, data: Any) -> Any:
        if isinstance(data, dict) and "learning_rate" not in data:
            rate = KERAS_LEARNING_RATES.get(data.get("name"), DEFAULT_LEARNING_RATE)
            data = {**data, "learning_rate": rate}
        return data

    @model_validator(mode="after")
    def _args_fit_optimizer(self) -> OptimizerConfig:
        accepted = OPTIMIZER_ARGS[self.name]
        for key in sorted(set().union(*OPTIMIZER_ARGS.values()) - accepted):
            if getattr(self, key) is not None:
                users = sorted(n for n, args in OPTIMIZER_ARGS.items() if key in args)
                raise ConfigKeyError(
                    key,
                    f"optimizer.name={self.name!r} does not accept `{key}`; it applies to "
                    f"{', '.join(users)}. {self.name} accepts: {', '.join(sorted(accepted))}.",
                )
        clips = [k for k in ("clipnorm", "clipvalue", "global_clipnorm") if getattr(self, k)]
        if "clipnorm" in clips and "global_clipnorm" in clips:
            raise ConfigKeyError("global_clipnorm", "use clipnorm or global_clipnorm, not both.")
        return self

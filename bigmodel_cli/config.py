"""The config schema: one strict pydantic model per section of the contract.

Nothing here imports TensorFlow, so `bigmodel validate --no-build` and config errors
answer instantly. Loading (YAML, `base:` inheritance, `--set` overrides) and turning
pydantic's errors into `dotted.key: message` lines live in `config_load.py`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

ModelType = Literal["mlp", "cnn", "rnn", "transformer", "sequential"]
DataSource = Literal[
    "digits", "iris", "wine", "breast_cancer", "diabetes", "synthetic", "csv", "npz"
]
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
METRICS = ("accuracy", "precision", "recall", "f1", "auc", "mae", "mse", "rmse", "perplexity")
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
    """A semantic problem with one key; `config_load` appends `key` to the error's path."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


class Section(BaseModel):
    """Base of every config section: unknown keys are errors and values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


Activation = Literal[ACTIVATIONS]  # type: ignore[valid-type]
Initializer = Literal[INITIALIZERS]  # type: ignore[valid-type]
PositiveInt = Annotated[int, Field(ge=1)]
Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]


# === data ===================================================================


class DataConfig(Section):
    """Where examples come from, how they are split, batched and normalized."""

    source: DataSource = Field(
        "digits", description="Built-in dataset, `synthetic`, or a file type (`csv`, `npz`)."
    )
    validation_split: Fraction = Field(
        0.1, description="Fraction of the examples held out for validation (seeded)."
    )
    test_split: Fraction = Field(
        0.1,
        description="Fraction held out for `bigmodel evaluate` (ignored when an npz "
        "file brings its own x_test/y_test).",
    )
    batch_size: PositiveInt = Field(
        32, le=1_000_000, description="Global batch size, split across replicas."
    )
    shuffle: bool = Field(True, description="Reshuffle the training split every epoch.")
    normalize: bool = Field(
        True,
        description="Standardize float inputs with mean/std of the training split "
        "(per feature; per channel for images). Token inputs are never normalized.",
    )
    limit: PositiveInt | None = Field(
        None, description="Use only the first N examples (after a seeded shuffle)."
    )
    # synthetic
    task: Literal["classification", "regression", "image", "sequence", "language_model"] | None = (
        Field(None, description="synthetic: what kind of examples to generate.")
    )
    examples: PositiveInt | None = Field(
        None, le=10_000_000, description="synthetic: number of examples (default 2000)."
    )
    features: PositiveInt | list[str] | None = Field(
        None,
        description="synthetic: features per example (default 20); csv: the input "
        "columns (default: every column but the target).",
    )
    image_shape: list[PositiveInt] | None = Field(
        None, description="synthetic image: [height, width, channels] (default [16, 16, 1])."
    )
    sequence_length: PositiveInt | None = Field(
        None, le=100_000, description="synthetic sequence/language_model: steps per example."
    )
    vocab_size: PositiveInt | None = Field(
        None,
        le=1_000_000,
        description="synthetic sequence/language_model: integer tokens in [0, vocab_size). "
        "For `sequence`, omit it to get float-valued sequences.",
    )
    classes: PositiveInt | None = Field(
        None, ge=2, le=100_000, description="synthetic classification/image/sequence: classes."
    )
    noise: float | None = Field(
        None, ge=0.0, le=10.0, description="synthetic: label/feature noise (default 0.1)."
    )
    # files
    path: str | None = Field(
        None,
        description="csv/npz: path of the file (relative to the "
        "config file's folder, or absolute).",
    )
    target: str | None = Field(None, description="csv: name of the label column.")
    delimiter: str | None = Field(
        None, min_length=1, max_length=1, description="csv: field separator (default `,`)."
    )

    @model_validator(mode="after")
    def _keys_fit_source(self) -> DataConfig:
        by_source = {
            "synthetic": {"task", "examples", "features", "image_shape", "sequence_length",
                          "vocab_size", "classes", "noise"},
            "csv": {"path", "target", "features", "delimiter"},
            "npz": {"path"},
        }  # fmt: skip
        allowed = by_source.get(self.source, set())
        specific = set().union(*by_source.values())
        for key in sorted(specific - allowed):
            if key in self.model_fields_set:
                users = [s for s, keys in by_source.items() if key in keys]
                raise ConfigKeyError(
                    key,
                    f"data.source={self.source!r} does not use `{key}` (only "
                    f"{' and '.join(users)} do). Remove it.",
                )
        if self.source in ("csv", "npz") and not self.path:
            raise ConfigKeyError("path", f"data.source={self.source!r} needs `path`.")
        if self.source == "csv" and not self.target:
            raise ConfigKeyError("target", "data.source='csv' needs `target`, the label column.")
        if self.source == "synthetic" and isinstance(self.features, list):
            raise ConfigKeyError("features", "synthetic data takes a number of features.")
        if self.source == "csv" and isinstance(self.features, int):
            raise ConfigKeyError("features", "csv takes a list of column names.")
        if self.image_shape is not None and len(self.image_shape) != 3:
            raise ConfigKeyError("image_shape", "expected [height, width, channels].")
        if self.validation_split + self.test_split >= 0.9:
            raise ConfigKeyError(
                "validation_split",
                f"validation_split + test_split = {self.validation_split + self.test_split:g}"
                " leaves less than 10% of the data for training.",
            )
        return self


# === model ==================================================================


class ModelCommon(Section):
    input_shape: list[PositiveInt] | None = Field(
        None, description="Shape of one example; default: from the data."
    )
    outputs: PositiveInt | None = Field(
        None, description="Units of the output layer; default: classes or targets in the data."
    )
    output_activation: Literal[OUTPUT_ACTIVATIONS] | None = Field(  # type: ignore[valid-type]
        None,
        description="Default from the loss: softmax (categorical), sigmoid (binary), linear "
        "(regression, or any loss with from_logits).",
    )
    activation: Activation = Field("relu", description="Activation of hidden layers.")
    dropout: Fraction = Field(0.0, description="Dropout rate after each hidden block (0 disables).")
    batch_norm: bool = Field(
        False, description="BatchNormalization after each hidden layer, before activation."
    )
    initializer: Initializer = Field(
        "glorot_uniform", description="Kernel initializer (glorot = Xavier, he = Kaiming)."
    )


class MLPConfig(ModelCommon):
    """Dense layers, then the output layer."""

    type: Literal["mlp"]
    dense: list[PositiveInt] = Field(
        default_factory=list, description="Units of each hidden Dense layer ([] = linear model)."
    )


class ConvBlock(Section):
    filters: PositiveInt = Field(description="Output channels.")
    kernel_size: PositiveInt | list[PositiveInt] = Field(3, description="Kernel size.")
    strides: PositiveInt | list[PositiveInt] = Field(1, description="Convolution strides.")
    padding: Literal["valid", "same"] = Field("valid", description="Keras padding mode.")
    pool: PositiveInt | None = Field(None, description="Max-pooling size after the block.")


class CNNConfig(ModelCommon):
    """Convolution blocks (1-D, 2-D or 3-D by input rank), then Dense layers."""

    type: Literal["cnn"]
    conv: list[ConvBlock] = Field(min_length=1, description="Convolution blocks, in order.")
    global_pool: bool = Field(
        False, description="Global average pooling after the convolutions (else Flatten)."
    )
    dense: list[PositiveInt] = Field(
        default_factory=list, description="Hidden Dense layers after the convolutions."
    )


class RNNConfig(ModelCommon):
    """Stacked recurrent layers over a sequence, then Dense layers."""

    type: Literal["rnn"]
    cell: Literal["lstm", "gru", "simple"] = Field("lstm", description="Recurrent cell.")
    units: list[PositiveInt] = Field(
        default_factory=lambda: [64], min_length=1, description="Units of each stacked layer."
    )
    bidirectional: bool = Field(False, description="Wrap each layer in Bidirectional.")
    embedding_dim: PositiveInt | None = Field(
        None,
        description="Embedding size for integer token inputs (default 64 when the data "
        "has a vocabulary; not allowed for float inputs).",
    )
    dense: list[PositiveInt] = Field(
        default_factory=list, description="Hidden Dense layers after the last recurrent layer."
    )


class TransformerConfig(ModelCommon):
    """Transformer encoder: sequence classifier or causal language model."""

    type: Literal["transformer"]
    task: Literal["classify", "language_model"] = Field(
        "classify",
        description="`classify`: pooled encoder + classifier head; `language_model`: "
        "causal self-attention, next-token logits at every position.",
    )
    vocab_size: PositiveInt | None = Field(None, description="Token vocabulary (default: data).")
    max_length: PositiveInt | None = Field(
        None, description="Longest sequence (default: data's sequence length)."
    )
    d_model: PositiveInt = Field(128, description="Width of the residual stream.")
    num_heads: PositiveInt = Field(4, description="Attention heads (must divide d_model).")
    num_layers: PositiveInt = Field(2, le=1000, description="Encoder blocks.")
    ff_dim: PositiveInt | None = Field(None, description="Feed-forward width (default 4*d_model).")
    positional: Literal["sinusoidal", "learned"] = Field(
        "sinusoidal", description="Position encoding added to token embeddings."
    )
    activation: Activation = Field("gelu", description="Feed-forward activation.")
    dense: list[PositiveInt] = Field(
        default_factory=list, description="classify: hidden Dense layers before the output."
    )

    @model_validator(mode="after")
    def _heads_divide_width(self) -> TransformerConfig:
        if self.d_model % self.num_heads:
            raise ConfigKeyError(
                "num_heads",
                f"num_heads={self.num_heads} must divide d_model={self.d_model}.",
            )
        if self.task == "language_model" and self.dense:
            raise ConfigKeyError("dense", "a language model has no classifier head.")
        return self


class SequentialConfig(ModelCommon):
    """A plain Keras stack written layer by layer (allow-listed `keras.layers` classes)."""

    type: Literal["sequential"]
    layers: list[dict[str, Any]] = Field(
        min_length=1,
        description="Each item is {type: <Keras layer class>, <its arguments>...}. The last "
        "layer is the output; no output layer is added.",
    )

    @field_validator("layers")
    @classmethod
    def _layers_name_a_type(cls, layers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from bigmodel_cli.layer_allowlist import check_layer_spec

        for index, spec in enumerate(layers):
            problem = check_layer_spec(spec)
            if problem:
                raise ConfigKeyError(f"{index}", problem)
        return layers


ModelConfig = Annotated[
    MLPConfig | CNNConfig | RNNConfig | TransformerConfig | SequentialConfig,
    Field(discriminator="type"),
]
MODEL_CLASSES = {
    "mlp": MLPConfig,
    "cnn": CNNConfig,
    "rnn": RNNConfig,
    "transformer": TransformerConfig,
    "sequential": SequentialConfig,
}


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
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps before the decay.")
    alpha: float = Field(0.0, ge=0, le=1, description="cosine: final rate as a fraction.")
    boundaries: list[PositiveInt] | None = Field(None, description="piecewise: step boundaries.")
    values: list[float] | None = Field(
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


class OptimizerConfig(Section):
    """Optimizer, learning rate (or schedule) and gradient clipping."""

    name: Literal[OPTIMIZERS] = Field("adam", description="Optimizer.")  # type: ignore[valid-type]
    learning_rate: LearningRate = Field(1.0e-3, description="A number, or a schedule mapping.")
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


# === loss, regularization, metrics =========================================


class LossConfig(Section):
    """Loss function. A bare string means {name: <string>}."""

    name: Literal[LOSSES] = Field(description="Loss name.")  # type: ignore[valid-type]
    from_logits: bool = Field(False, description="The model outputs logits (no softmax).")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Cross-entropy smoothing.")
    delta: float | None = Field(None, gt=0, description="huber: where it turns linear.")

    @model_validator(mode="after")
    def _args_fit_loss(self) -> LossConfig:
        is_ce = self.name in CLASSIFICATION_LOSSES
        if not is_ce and "from_logits" in self.model_fields_set:
            raise ConfigKeyError("from_logits", f"loss {self.name!r} has no from_logits.")
        if self.label_smoothing and self.name == "sparse_categorical_crossentropy":
            raise ConfigKeyError(
                "label_smoothing",
                "tf_keras's sparse_categorical_crossentropy has no label smoothing; use "
                "categorical_crossentropy (labels are one-hot encoded for it).",
            )
        if self.label_smoothing and not is_ce:
            raise ConfigKeyError("label_smoothing", f"loss {self.name!r} has no smoothing.")
        if self.delta is not None and self.name != "huber":
            raise ConfigKeyError("delta", "only the huber loss takes `delta`.")
        return self

    @property
    def is_classification(self) -> bool:
        return self.name in CLASSIFICATION_LOSSES


class RegularizationConfig(Section):
    """Weight penalties added to the loss for every kernel."""

    l1: float = Field(0.0, ge=0, le=10, description="L1 penalty on every kernel.")
    l2: float = Field(0.0, ge=0, le=10, description="L2 penalty on every kernel.")


# === train, distribute, output ==============================================


class EarlyStoppingConfig(Section):
    monitor: str = Field("val_loss", description="Metric to watch, as in metrics.csv.")
    patience: int = Field(3, ge=0, description="Epochs without improvement before stopping.")
    min_delta: float = Field(0.0, ge=0, description="Smallest change that counts.")
    mode: Literal["auto", "min", "max"] = Field("auto", description="Direction of improvement.")
    restore_best_weights: bool = Field(True, description="End with the best epoch's weights.")


class TrainConfig(Section):
    """The training loop."""

    epochs: PositiveInt = Field(10, le=1_000_000, description="Epochs to train.")
    steps_per_epoch: PositiveInt | None = Field(
        None, description="Cap on batches per epoch (default: the whole training split)."
    )
    early_stopping: EarlyStoppingConfig | None = Field(
        None, description="Stop when the monitored metric stops improving."
    )
    mixed_precision: Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"] = Field(
        "auto",
        description="auto: mixed_float16 on GPUs with compute capability >= 7.0, "
        "mixed_bfloat16 on TPUs, float32 otherwise.",
    )


class DistributeConfig(Section):
    """How training is spread over devices and machines."""

    strategy: Literal["auto", "default", "one_device", "mirrored", "multi_worker", "tpu"] = Field(
        "auto",
        description="auto: TPU if reachable, multi_worker when TF_CONFIG names several "
        "workers, mirrored on several GPUs, one_device on one GPU, default otherwise.",
    )
    devices: list[str] | None = Field(
        None, description="one_device/mirrored: device names (default: all GPUs, else CPU)."
    )
    tpu: str | None = Field(None, description="tpu: TPU name or grpc:// address.")


class OutputConfig(Section):
    dir: str = Field("runs", min_length=1, description="Parent of run directories.")


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
        None, description="Path of a config this one extends (merged key by key)."
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
        "(regression), accuracy+perplexity (language models).",
    )
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training loop.")
    distribute: DistributeConfig = Field(
        default_factory=DistributeConfig, description="tf.distribute strategy."
    )
    output: OutputConfig = Field(default_factory=OutputConfig, description="Where runs go.")

    @field_validator("loss", mode="before")
    @classmethod
    def _loss_string_is_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("name")
    @classmethod
    def _name_stays_inside_output_dir(cls, name: str) -> str:
        bad = [c for c in ("/", "\\", "\x00") if c in name]
        if bad or name in (".", "..") or name.startswith(".") or name != name.strip():
            raise ValueError(
                f"a run name must be a plain folder name (no path separators, no leading "
                f"dot, no NUL, no surrounding spaces); received {name!r}"
            )
        return name

    @model_validator(mode="after")
    def _sections_agree(self) -> Config:
        metrics = self.metrics or []
        if "perplexity" in metrics and not _is_language_model(self):
            raise ConfigKeyError("metrics", "perplexity is only for language models.")
        if self.loss and not self.loss.is_classification:
            wrong = sorted({"accuracy", "precision", "recall", "f1", "auc"} & set(metrics))
            if wrong:
                raise ConfigKeyError(
                    "metrics",
                    f"{', '.join(wrong)} need a classification loss; loss is {self.loss.name!r}.",
                )
        return self


def _is_language_model(cfg: Config) -> bool:
    return (cfg.model.type == "transformer" and cfg.model.task == "language_model") or (
        cfg.data.source == "synthetic" and cfg.data.task == "language_model"
    )


def is_language_model(cfg: Config) -> bool:
    """True when the config trains a next-token predictor."""
    return _is_language_model(cfg)

"""Config sections for loss, regularization, train, distribute and output, and the parts
of `data` (augmentation, tfrecord features) that `config.data.DataConfig` holds."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from bigmodel_cli.config.base import (
    CLASSIFICATION_LOSSES,
    LOSSES,
    ConfigKeyError,
    PositiveInt,
    Section,
)

# === parts of data =========================================================

MAX_IMAGE_SIDE = 4096  # pixels; a 4096 x 4096 RGB image is 48 MB decoded
MAX_FEATURE_VALUES = 1 << 24  # values in one tfrecord feature (64 MB as float32)


class AugmentConfig(Section):
    """Random image transformations applied to training batches only (never to
    validation, test, evaluate or predict). Each is off when 0 / `none`."""

    flip: Literal["none", "horizontal", "vertical", "horizontal_and_vertical"] = Field(
        "none", description="Random mirror images."
    )
    rotation: float = Field(
        0.0, ge=0, le=0.5, description="Largest rotation, as a fraction of a full turn."
    )
    zoom: float = Field(0.0, ge=0, lt=1, description="Largest zoom in or out (fraction).")
    translation: float = Field(
        0.0, ge=0, lt=1, description="Largest shift, as a fraction of height and width."
    )
    contrast: float = Field(0.0, ge=0, lt=1, description="Largest contrast change (fraction).")

    @property
    def active(self) -> bool:
        return self.flip != "none" or any(
            (self.rotation, self.zoom, self.translation, self.contrast)
        )


class FeatureSpec(Section):
    """One feature of a tfrecord `tf.train.Example`."""

    dtype: Literal["float32", "int64", "string", "image"] = Field(
        description="float32/int64: numbers; string: bytes; image: encoded PNG/JPEG/GIF/BMP "
        "bytes, decoded to uint8."
    )
    shape: list[Annotated[int, Field(ge=1, le=MAX_FEATURE_VALUES)]] = Field(
        default_factory=list,
        max_length=4,
        description="Shape of the feature ([] for a scalar; at most "
        f"{MAX_FEATURE_VALUES:,} values in all).",
    )

    @field_validator("shape")
    @classmethod
    def _shape_fits_memory(cls, shape: list[int]) -> list[int]:
        if math.prod(shape) > MAX_FEATURE_VALUES:
            raise ValueError(
                f"{shape} holds {math.prod(shape):,} values per record; at most "
                f"{MAX_FEATURE_VALUES:,} are read"
            )
        return shape


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
        if not is_ce and self.from_logits:
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
    """Stop when `monitor` has not improved for `patience` epochs."""

    monitor: str = Field("val_loss", description="Metric to watch, as in metrics.csv.")
    patience: int = Field(3, ge=0, description="Epochs without improvement before stopping.")
    min_delta: float = Field(0.0, ge=0, description="Smallest change that counts.")
    mode: Literal["auto", "min", "max"] = Field("auto", description="Direction of improvement.")
    restore_best_weights: bool = Field(True, description="End with the best epoch's weights.")


class CheckpointConfig(Section):
    """How often training state is backed up for `--resume`."""

    every_steps: PositiveInt | None = Field(
        None,
        description="Also back up every N training steps (default: only at each epoch end). "
        "A resumed run continues at the saved step.",
    )


class TrainConfig(Section):
    """The training loop."""

    epochs: PositiveInt = Field(10, le=1_000_000, description="Epochs to train.")
    steps_per_epoch: PositiveInt | None = Field(
        None, description="Cap on batches per epoch (default: the whole training split)."
    )
    validation_steps: PositiveInt | None = Field(
        None,
        description="Cap on batches per validation pass, and for the test score at the end "
        "of training and `bigmodel evaluate` (default: the whole split): the split's first "
        "batches, the same ones each time. For corpora too large to score whole.",
    )
    time_limit_minutes: float | None = Field(
        None,
        gt=0,
        le=10_000_000,
        description="Stop after this much training time, checked after every call into the "
        "training graph: the epoch under way ends there, validated and recorded, and the run "
        "finishes normally (final model, test score).",
    )
    early_stopping: EarlyStoppingConfig | None = Field(
        None, description="Stop when the monitored metric stops improving."
    )
    mixed_precision: Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"] = Field(
        "auto",
        description="auto: mixed_float16 on GPUs with compute capability >= 7.0, "
        "mixed_bfloat16 on TPUs and on CPUs with bfloat16 matrix units (AMX, AVX-512 BF16) "
        "when the model is large enough to gain, float32 otherwise.",
    )
    steps_per_execution: PositiveInt | Literal["auto"] = Field(
        "auto",
        description="Training steps per call into the TensorFlow graph. auto: enough steps "
        "that small models are not dominated by per-step overhead; 1 for large models.",
    )
    jit_compile: bool = Field(
        False, description="Compile the training step with XLA (can be faster on GPU/TPU)."
    )
    checkpoint: CheckpointConfig = Field(
        default_factory=CheckpointConfig, description="Backups for --resume."
    )
    deterministic: bool = Field(
        False,
        description="Deterministic TensorFlow ops (same results on every run and resume, "
        "somewhat slower).",
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
    timeout_seconds: PositiveInt = Field(
        120,
        le=86_400,
        description="multi_worker/tpu: how long to wait for every worker (or the TPU) to "
        "join before giving up with exit 2, instead of hanging.",
    )


class OutputConfig(Section):
    """Where run directories are created."""

    dir: str = Field("runs", min_length=1, description="Parent of run directories.")

    @field_validator("dir")
    @classmethod
    def _dir_is_a_path(cls, value: str) -> str:
        if "\x00" in value:  # else the run fails at mkdir, after TensorFlow loaded
            raise ValueError(f"a path cannot contain a NUL character; received {value!r}")
        return value

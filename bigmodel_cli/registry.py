"""The one table from config names to Keras objects: optimizers, learning-rate schedules,
losses, metrics and regularizers.

Every name arrives already checked by the config schema, and is looked up here in an
explicit dict; no string is handed to `keras.*.get`, so a config can only ever reach
the objects listed below.
"""

from __future__ import annotations

from bigmodel_cli import layers
from bigmodel_cli import metrics as keras_metrics
from bigmodel_cli.config import (
    OPTIMIZER_ARGS,
    LossConfig,
    OptimizerConfig,
    RegularizationConfig,
    ScheduleConfig,
)
from bigmodel_cli.errors import ConfigError
from bigmodel_cli.spec import DataSpec
from bigmodel_cli.tfenv import import_keras, import_tensorflow

tf = import_tensorflow()
keras = import_keras()

OPTIMIZERS = {
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
    "adagrad": keras.optimizers.Adagrad,
    "adadelta": keras.optimizers.Adadelta,
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "nadam": keras.optimizers.Nadam,
    "adamax": keras.optimizers.Adamax,
}
CLIPPING = ("clipnorm", "clipvalue", "global_clipnorm")
CLASSIFICATION_METRICS = (
    "accuracy", "precision", "recall", "f1", "auc", "perplexity", "bits_per_byte",
)  # fmt: skip


# === Learning-rate schedules =================================================


@keras.saving.register_keras_serializable(package="bigmodel")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Rises linearly from 0 to `peak` over `warmup_steps`, then follows `after`.

    `after` is a schedule started at its own step 0 when warm-up ends (so its
    `decay_steps` and `boundaries` count from there), or None to stay at `peak`.
    Used for every schedule but cosine, whose Keras class warms up by itself.
    """

    def __init__(self, peak: float, warmup_steps: int, after=None, name: str | None = None):
        super().__init__()
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        if isinstance(after, dict):
            after = keras.optimizers.schedules.deserialize(after)
        self.after = after
        self.name = name

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = tf.cast(self.warmup_steps, tf.float32)
        rising = self.peak * step / tf.maximum(warmup, 1.0)
        if self.after is None:
            settled = tf.constant(self.peak, tf.float32)
        else:
            settled = tf.cast(self.after(tf.maximum(step - warmup, 0.0)), tf.float32)
        return tf.where(step < warmup, rising, settled)

    def get_config(self):
        after = None if self.after is None else keras.optimizers.schedules.serialize(self.after)
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "after": after,
            "name": self.name,
        }


@keras.saving.register_keras_serializable(package="bigmodel")
class SwitchAt(keras.optimizers.schedules.LearningRateSchedule):
    """`before` (a rate or a schedule) until step `boundary`, then `after`, a schedule
    started at its own step 0 then: init.unfreeze_after_epochs' second phase."""

    def __init__(self, before, boundary: int, after, name: str | None = None):
        super().__init__()
        self.before, self.after = (
            keras.optimizers.schedules.deserialize(rate) if isinstance(rate, dict) else rate
            for rate in (before, after)
        )
        self.boundary = int(boundary)
        self.name = name

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        boundary = tf.cast(self.boundary, tf.float32)
        first = _rate_at(self.before, step)
        second = _rate_at(self.after, tf.maximum(step - boundary, 0.0))
        return tf.where(step < boundary, first, second)

    def get_config(self):
        before, after = (
            rate if isinstance(rate, float) else keras.optimizers.schedules.serialize(rate)
            for rate in (self.before, self.after)
        )
        return {"before": before, "boundary": self.boundary, "after": after, "name": self.name}


def _rate_at(rate, step):
    return tf.cast(rate(step), tf.float32) if callable(rate) else tf.constant(rate, tf.float32)


def _default_warmup(cfg: ScheduleConfig, total_steps: int) -> int:
    # warmup_cosine promises a warm-up; when its length is not given, use 10% of
    # training (the usual `warmup_ratio`).
    if cfg.schedule == "warmup_cosine" and cfg.warmup_steps == 0:
        return max(1, total_steps // 10)
    return cfg.warmup_steps


def _warmed_up(peak: float, after, warmup: int):
    # Every schedule but cosine warms up through LinearWarmup; without warm-up a
    # constant rate is a plain float.
    if warmup:
        return LinearWarmup(peak, warmup, after)
    return peak if after is None else after


def _cosine(cfg: ScheduleConfig, total_steps: int, warmup: int):
    # Keras's CosineDecay warms up by itself.
    decay_steps = cfg.decay_steps or max(1, total_steps - warmup)
    if warmup == 0:
        return keras.optimizers.schedules.CosineDecay(cfg.initial, decay_steps, cfg.alpha)
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps, cfg.alpha, warmup_target=cfg.initial, warmup_steps=warmup
    )


def _exponential(cfg: ScheduleConfig, total_steps: int, warmup: int):
    after = keras.optimizers.schedules.ExponentialDecay(
        cfg.initial, cfg.decay_steps, cfg.decay_rate, staircase=cfg.staircase
    )
    return _warmed_up(cfg.initial, after, warmup)


def _piecewise(cfg: ScheduleConfig, total_steps: int, warmup: int):
    after = keras.optimizers.schedules.PiecewiseConstantDecay(
        list(cfg.boundaries), list(cfg.values)
    )
    return _warmed_up(cfg.values[0], after, warmup)


def _constant(cfg: ScheduleConfig, total_steps: int, warmup: int):
    return _warmed_up(cfg.initial, None, warmup)


# name -> builder(cfg, total_steps, warmup_steps); one entry per `schedule:` choice.
SCHEDULES = {
    "constant": _constant,
    "exponential": _exponential,
    "cosine": _cosine,
    "warmup_cosine": _cosine,
    "piecewise": _piecewise,
}


def build_schedule(
    cfg: ScheduleConfig, total_steps: int
) -> keras.optimizers.schedules.LearningRateSchedule | float:
    """The learning rate for `optimizer.learning_rate: {schedule: ...}`.

    `total_steps` (optimizer updates over the whole run) is the default length of a
    cosine decay. A constant rate without warm-up is returned as a plain float.
    """
    builder = SCHEDULES.get(cfg.schedule)
    # The schema's Literal makes a miss unreachable; kept so a new name fails loudly.
    if builder is None:
        raise ConfigError(f"optimizer.learning_rate.schedule: unknown {cfg.schedule!r}")
    return builder(cfg, total_steps, _default_warmup(cfg, total_steps))


# === Optimizers ==============================================================


def learning_rate(rate: float | ScheduleConfig, total_steps: int):
    """A config's learning rate (a number or a schedule mapping) as Keras takes it."""
    if isinstance(rate, ScheduleConfig):
        return build_schedule(rate, total_steps)
    return float(rate)


def build_optimizer(
    cfg: OptimizerConfig, total_steps: int, rate=None
) -> keras.optimizers.Optimizer:
    """The optimizer, with only the hyperparameters the config sets (Keras defaults
    apply to the rest), its learning rate or schedule (or `rate`, a Keras one), and
    gradient clipping."""
    if rate is None:
        rate = learning_rate(cfg.learning_rate, total_steps)
    kwargs = {
        key: getattr(cfg, key)
        for key in (*sorted(OPTIMIZER_ARGS[cfg.name]), *CLIPPING)
        if getattr(cfg, key) is not None
    }
    return OPTIMIZERS[cfg.name](learning_rate=rate, **kwargs)


# === Losses ==================================================================


def _cross_entropy(loss_class):
    return lambda cfg: loss_class(from_logits=cfg.from_logits, label_smoothing=cfg.label_smoothing)


# name -> builder(LossConfig); one entry per `loss.name` choice, aliases included.
LOSSES = {
    "mse": lambda cfg: keras.losses.MeanSquaredError(),
    "mean_squared_error": lambda cfg: keras.losses.MeanSquaredError(),
    "mae": lambda cfg: keras.losses.MeanAbsoluteError(),
    "mean_absolute_error": lambda cfg: keras.losses.MeanAbsoluteError(),
    "huber": lambda cfg: (
        keras.losses.Huber() if cfg.delta is None else keras.losses.Huber(cfg.delta)
    ),
    "binary_crossentropy": _cross_entropy(keras.losses.BinaryCrossentropy),
    "categorical_crossentropy": _cross_entropy(keras.losses.CategoricalCrossentropy),
    # tf_keras's sparse loss takes no label_smoothing (the schema refuses it).
    "sparse_categorical_crossentropy": lambda cfg: keras.losses.SparseCategoricalCrossentropy(
        from_logits=cfg.from_logits
    ),
}


def build_loss(cfg: LossConfig) -> keras.losses.Loss:
    """The loss object named by `loss:`."""
    builder = LOSSES.get(cfg.name)
    if builder is None:
        raise ConfigError(f"loss.name: unknown loss {cfg.name!r}")
    return builder(cfg)


# === Metrics =================================================================


def _num_classes(loss: LossConfig, spec: DataSpec) -> int:
    if loss.name == "binary_crossentropy":
        return 2
    classes = spec.num_classes or spec.vocab_size
    if not classes:
        raise ConfigError("metrics: classification metrics need data with class labels.")
    return classes


def _accuracy(loss: LossConfig, spec: DataSpec) -> keras.metrics.Metric:
    if loss.name == "binary_crossentropy":
        # A logit is positive exactly when its sigmoid is above 0.5.
        return keras.metrics.BinaryAccuracy(
            name="accuracy", threshold=0.0 if loss.from_logits else 0.5
        )
    if loss.name == "categorical_crossentropy":
        return keras.metrics.CategoricalAccuracy(name="accuracy")
    return keras.metrics.SparseCategoricalAccuracy(name="accuracy")


def _score(name: str, loss: LossConfig, spec: DataSpec) -> keras.metrics.Metric:
    # Macro over both classes for binary_crossentropy too, as for every other loss and
    # as evaluate's per-class table: the mean of its rows, not the positive class's row.
    binary = loss.name == "binary_crossentropy"
    return keras_metrics.ClassificationScore(
        _num_classes(loss, spec),
        score=name,
        average="macro",
        label_format="one_hot" if loss.name == "categorical_crossentropy" else "sparse",
        threshold=0.0 if (binary and loss.from_logits) else 0.5,
        name=name,
    )


def _auc(loss: LossConfig, spec: DataSpec) -> keras.metrics.Metric:
    if loss.name == "binary_crossentropy":
        return keras.metrics.AUC(name="auc", from_logits=loss.from_logits)
    return keras_metrics.OneVsRestAUC(
        _num_classes(loss, spec),
        sparse_labels=loss.name == "sparse_categorical_crossentropy",
        from_logits=loss.from_logits,
        name="auc",
    )


def _check_categorical(metric: str, loss: LossConfig) -> None:
    if loss.name not in ("sparse_categorical_crossentropy", "categorical_crossentropy"):
        raise ConfigError(
            f"metrics: {metric} needs a categorical cross-entropy loss; loss is {loss.name!r}."
        )


def _perplexity(loss: LossConfig, spec: DataSpec) -> keras.metrics.Metric:
    _check_categorical("perplexity", loss)
    return keras_metrics.Perplexity(
        from_logits=loss.from_logits,
        sparse_labels=loss.name == "sparse_categorical_crossentropy",
        name="perplexity",
    )


def _bits_per_byte(loss: LossConfig, spec: DataSpec) -> keras.metrics.Metric:
    _check_categorical("bits_per_byte", loss)
    if spec.token_bytes is None:
        raise ConfigError("metrics: bits_per_byte needs text data (data.source: text_corpus).")
    return keras_metrics.BitsPerByte(
        token_bytes=spec.token_bytes,
        from_logits=loss.from_logits,
        sparse_labels=loss.name == "sparse_categorical_crossentropy",
    )


METRICS = {
    "accuracy": _accuracy,
    "precision": lambda loss, spec: _score("precision", loss, spec),
    "recall": lambda loss, spec: _score("recall", loss, spec),
    "f1": lambda loss, spec: _score("f1", loss, spec),
    "auc": _auc,
    "mae": lambda loss, spec: keras.metrics.MeanAbsoluteError(name="mae"),
    "mse": lambda loss, spec: keras.metrics.MeanSquaredError(name="mse"),
    "rmse": lambda loss, spec: keras.metrics.RootMeanSquaredError(name="rmse"),
    "perplexity": _perplexity,
    "bits_per_byte": _bits_per_byte,
}


def build_metrics(names: list[str], loss: LossConfig, spec: DataSpec) -> list[keras.metrics.Metric]:
    """One metric object per config name; each is named exactly as in the config, so
    Keras logs (and metrics.csv) use "accuracy", "f1", "val_rmse", ..."""
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise ConfigError(
            f"metrics: unknown {', '.join(map(repr, unknown))}; expected one of "
            f"{', '.join(METRICS)}."
        )
    needs_classes = [name for name in names if name in CLASSIFICATION_METRICS]
    if needs_classes and not loss.is_classification:
        raise ConfigError(
            f"metrics: {', '.join(needs_classes)} need a classification loss; the loss is "
            f"{loss.name!r}. Use mae, mse or rmse for regression."
        )
    return [METRICS[name](loss, spec) for name in names]


# === Regularizers and loading =================================================


def build_regularizer(cfg: RegularizationConfig) -> keras.regularizers.Regularizer | None:
    """L1/L2 penalty for kernels, or None when both are zero (no penalty term at all)."""
    if not (cfg.l1 or cfg.l2):
        return None
    return keras.regularizers.L1L2(l1=cfg.l1, l2=cfg.l2)


def custom_objects() -> dict:
    """Every bigmodel class a saved model may contain, for `keras.models.load_model`.

    They are also registered (package "bigmodel"), so loading works without this; the
    dict makes the dependency explicit and covers both spellings of each name.
    """
    classes = (
        *layers.CUSTOM_LAYERS,
        *layers.MODELS,
        *keras_metrics.CUSTOM_METRICS,
        LinearWarmup,
    )
    objects = {}
    for cls in classes:
        objects[cls.__name__] = cls
        objects[keras.saving.get_registered_name(cls)] = cls
    return objects

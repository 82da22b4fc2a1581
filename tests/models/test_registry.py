"""registry: names -> optimizers, schedules, losses, metrics; metrics agree with sklearn."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from sklearn import metrics as skm

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from bigmodel_cli import metrics as keras_metrics  # noqa: E402
from bigmodel_cli import registry  # noqa: E402
from bigmodel_cli.config import (  # noqa: E402
    LOSSES,
    METRICS,
    OPTIMIZERS,
    SCHEDULES,
    LossConfig,
    OptimizerConfig,
    RegularizationConfig,
    ScheduleConfig,
)
from bigmodel_cli.errors import ConfigError  # noqa: E402
from bigmodel_cli.spec import DataSpec  # noqa: E402

CLASSES = DataSpec(task="classification", input_shape=(4,), num_classes=3)
BINARY = DataSpec(task="classification", input_shape=(4,), num_classes=2)
CORPUS = DataSpec(
    task="language_model", input_shape=(5,), input_dtype="int32", vocab_size=7, num_classes=7
)
TEXT = DataSpec(
    task="language_model",
    input_shape=(5,),
    input_dtype="int32",
    vocab_size=7,
    num_classes=7,
    token_bytes=(1, 1, 1, 0, 1, 2, 3),  # bytes, end-of-document, unknown, two merges
)
SPARSE = LossConfig(name="sparse_categorical_crossentropy")

RNG = np.random.default_rng(0)
LABELS = RNG.integers(0, 3, size=40)
LOGITS = RNG.normal(size=(40, 3)).astype("float32") + 1.5 * np.eye(3)[LABELS]
PROBS = tf.nn.softmax(LOGITS).numpy()


def lr_at(schedule, step: int) -> float:
    return float(schedule(step)) if callable(schedule) else float(schedule)


# === Optimizers ===============================================================


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_builds_with_keras_defaults(name):
    optimizer = registry.build_optimizer(OptimizerConfig(name=name, learning_rate=0.01), 100)
    assert isinstance(optimizer, registry.OPTIMIZERS[name])
    assert float(optimizer.learning_rate) == pytest.approx(0.01)
    assert optimizer.clipnorm is None and optimizer.clipvalue is None


def test_only_set_hyperparameters_and_clipping_reach_the_optimizer():
    cfg = OptimizerConfig(name="sgd", momentum=0.9, nesterov=True, clipnorm=1.5, clipvalue=0.5)
    optimizer = registry.build_optimizer(cfg, 100)
    assert (optimizer.momentum, optimizer.nesterov) == (0.9, True)
    assert (optimizer.clipnorm, optimizer.clipvalue) == (1.5, 0.5)
    adam = registry.build_optimizer(OptimizerConfig(name="adam", global_clipnorm=2.0), 100)
    assert adam.global_clipnorm == 2.0
    assert adam.beta_1 == keras.optimizers.Adam().beta_1  # untouched default


def test_optimizer_takes_a_schedule():
    cfg = OptimizerConfig.model_validate(
        {"name": "adamw", "learning_rate": {"schedule": "cosine", "initial": 0.1}}
    )
    optimizer = registry.build_optimizer(cfg, 10)
    assert optimizer.get_config()["learning_rate"]["class_name"] == "CosineDecay"


# === Schedules ================================================================


def schedule(**kwargs) -> ScheduleConfig:
    return ScheduleConfig.model_validate(kwargs)


@pytest.mark.parametrize(
    "cfg",
    [
        {"schedule": "constant", "initial": 0.1},
        {"schedule": "constant", "initial": 0.1, "warmup_steps": 5},
        {"schedule": "exponential", "initial": 0.1, "decay_steps": 10, "decay_rate": 0.5},
        {"schedule": "cosine", "initial": 0.1},
        {"schedule": "warmup_cosine", "initial": 0.1},
        {"schedule": "piecewise", "boundaries": [10], "values": [0.1, 0.01]},
    ],
)
def test_every_schedule_builds_and_starts_sensibly(cfg):
    built = registry.build_schedule(schedule(**cfg), 100)
    assert cfg["schedule"] in SCHEDULES
    assert 0.0 <= lr_at(built, 0) <= 0.1 + 1e-7
    assert 0.0 < lr_at(built, 50) <= 0.1 + 1e-7


def test_cosine_follows_the_formula():
    built = registry.build_schedule(schedule(schedule="cosine", initial=0.1, alpha=0.1), 100)
    for step in (0, 25, 50, 100, 150):
        decayed = 0.5 * (1 + math.cos(math.pi * min(step, 100) / 100))
        assert lr_at(built, step) == pytest.approx(0.1 * (0.9 * decayed + 0.1), rel=1e-5)


def test_warmup_cosine_rises_linearly_then_decays_over_the_rest():
    built = registry.build_schedule(
        schedule(schedule="warmup_cosine", initial=0.1, warmup_steps=10), 110
    )
    assert lr_at(built, 0) == 0.0
    assert lr_at(built, 5) == pytest.approx(0.05)
    assert lr_at(built, 10) == pytest.approx(0.1)
    assert lr_at(built, 60) == pytest.approx(0.05, rel=1e-5)  # half-way through 100 decay steps
    assert lr_at(built, 110) == pytest.approx(0.0, abs=1e-7)


def test_warmup_cosine_defaults_to_a_tenth_of_training():
    built = registry.build_schedule(schedule(schedule="warmup_cosine", initial=0.1), 200)
    assert lr_at(built, 10) == pytest.approx(0.05)
    assert lr_at(built, 20) == pytest.approx(0.1)


def test_exponential_and_piecewise_follow_their_formulas_after_warmup():
    exp = registry.build_schedule(
        schedule(
            schedule="exponential",
            initial=0.1,
            decay_steps=10,
            decay_rate=0.5,
            warmup_steps=4,
        ),
        100,
    )
    assert lr_at(exp, 2) == pytest.approx(0.05)
    assert lr_at(exp, 4 + 20) == pytest.approx(0.1 * 0.5**2)
    piecewise = registry.build_schedule(
        schedule(schedule="piecewise", boundaries=[10, 20], values=[1.0, 0.5, 0.1]), 100
    )
    assert [lr_at(piecewise, s) for s in (0, 10, 11, 21)] == pytest.approx([1.0, 1.0, 0.5, 0.1])


def test_warmup_schedule_round_trips_through_keras_serialization():
    built = registry.build_schedule(
        schedule(schedule="piecewise", boundaries=[5], values=[0.2, 0.1], warmup_steps=2), 50
    )
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(built))
    assert [lr_at(restored, s) for s in (1, 3, 9)] == pytest.approx([0.1, 0.2, 0.1])


# === Losses and regularizers ==================================================


@pytest.mark.parametrize("name", LOSSES)
def test_every_loss_builds(name):
    loss = registry.build_loss(LossConfig(name=name))
    assert isinstance(loss, keras.losses.Loss)


def test_loss_options_reach_keras():
    cfg = LossConfig(name="categorical_crossentropy", from_logits=True, label_smoothing=0.1)
    loss = registry.build_loss(cfg).get_config()
    assert (loss["from_logits"], loss["label_smoothing"]) == (True, 0.1)
    assert registry.build_loss(LossConfig(name="huber", delta=2.0)).get_config()["delta"] == 2.0


def test_regularizer_only_when_asked():
    assert registry.build_regularizer(RegularizationConfig()) is None
    penalty = registry.build_regularizer(RegularizationConfig(l1=0.1, l2=0.2))
    assert penalty.get_config() == pytest.approx({"l1": 0.1, "l2": 0.2})


# === Metrics ==================================================================


def metric_value(metric, y_true, y_pred, batches: int = 3) -> float:
    """Streamed over several batches, as fit() does."""
    for true, pred in zip(
        np.array_split(y_true, batches), np.array_split(y_pred, batches), strict=True
    ):
        metric.update_state(true, pred)
    return float(metric.result())


@pytest.mark.parametrize(
    ("loss", "spec"),
    [
        (SPARSE, CLASSES),
        (LossConfig(name="categorical_crossentropy", from_logits=True), CLASSES),
        (LossConfig(name="binary_crossentropy"), BINARY),
        (LossConfig(name="sparse_categorical_crossentropy", from_logits=True), CORPUS),
        (LossConfig(name="sparse_categorical_crossentropy", from_logits=True), TEXT),
    ],
)
def test_metrics_build_and_carry_their_config_names(loss, spec):
    names = [m for m in METRICS if m != "perplexity" or spec.task == "language_model"]
    names = [m for m in names if m != "bits_per_byte" or spec.token_bytes]
    built = registry.build_metrics(names, loss, spec)
    assert [metric.name for metric in built] == names


def test_bits_per_byte_is_the_cross_entropy_in_bits_per_byte_of_text():
    loss = LossConfig(name="sparse_categorical_crossentropy", from_logits=True)
    (metric,) = registry.build_metrics(["bits_per_byte"], loss, TEXT)
    logits = np.random.default_rng(0).normal(size=(6, 5, 7)).astype(np.float32)
    labels = np.random.default_rng(1).integers(0, 7, size=(6, 5))
    nats = skm.log_loss(labels.ravel(), tf.nn.softmax(logits).numpy().reshape(-1, 7),
                        labels=list(range(7)))  # fmt: skip
    # Per split: the bytes these labels stand for, not an average bytes per token.
    text_bytes = np.asarray(TEXT.token_bytes)[labels].sum()
    expected = nats * labels.size / np.log(2) / text_bytes
    assert metric_value(metric, labels, logits) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ConfigError, match="bits_per_byte needs text"):
        registry.build_metrics(["bits_per_byte"], loss, CORPUS)


def test_unknown_metric_is_a_config_error():
    with pytest.raises(ConfigError, match="metrics: unknown 'top5'"):
        registry.build_metrics(["accuracy", "top5"], SPARSE, CLASSES)


@pytest.mark.parametrize("score", ["precision", "recall", "f1"])
def test_macro_scores_match_sklearn_on_sparse_labels(score):
    (metric,) = registry.build_metrics([score], SPARSE, CLASSES)
    expected = getattr(skm, f"{score}_score")(LABELS, PROBS.argmax(1), average="macro")
    assert metric_value(metric, LABELS, PROBS) == pytest.approx(expected, rel=1e-6)


def test_f1_ignores_classes_never_seen_like_sklearn():
    metric = keras_metrics.ClassificationScore(5, score="f1")
    y_true, y_pred = np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2])
    expected = skm.f1_score(y_true, y_pred, average="macro")
    assert metric_value(metric, y_true, np.eye(5)[y_pred], batches=2) == pytest.approx(expected)


def test_f1_on_one_hot_labels_and_logits():
    loss = LossConfig(name="categorical_crossentropy", from_logits=True)
    (metric,) = registry.build_metrics(["f1"], loss, CLASSES)
    expected = skm.f1_score(LABELS, LOGITS.argmax(1), average="macro")
    assert metric_value(metric, np.eye(3)[LABELS], LOGITS) == pytest.approx(expected, rel=1e-6)


def test_f1_is_sklearn_macro_f1_on_fixed_arrays():
    y_true = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
    y_pred = np.array([0, 1, 0, 1, 2, 2, 2, 0, 2, 1])
    metric = keras_metrics.ClassificationScore(4, score="f1")
    expected = skm.f1_score(y_true, y_pred, average="macro")
    assert metric_value(metric, y_true, np.eye(4)[y_pred]) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("from_logits", [False, True])
def test_binary_scores_are_macro_averages_over_both_classes(from_logits):
    labels = LABELS % 2
    logits = (LOGITS[:, 1] - LOGITS[:, 0])[:, None]
    outputs = logits if from_logits else tf.sigmoid(logits).numpy()
    loss = LossConfig(name="binary_crossentropy", from_logits=from_logits)
    names = ["accuracy", "precision", "recall", "f1"]
    accuracy, *scores = registry.build_metrics(names, loss, BINARY)
    predicted = (logits[:, 0] > 0).astype(int)
    assert metric_value(accuracy, labels, outputs) == pytest.approx(
        skm.accuracy_score(labels, predicted)
    )
    for name, metric in zip(names[1:], scores, strict=True):
        score = getattr(skm, f"{name}_score")
        macro = score(labels, predicted, average="macro")
        assert score(labels, predicted) != pytest.approx(macro)  # the two differ here
        assert metric_value(metric, labels, outputs) == pytest.approx(macro, rel=1e-6)


def test_one_vs_rest_auc_is_close_to_sklearn():
    (metric,) = registry.build_metrics(
        ["auc"], LossConfig(name="sparse_categorical_crossentropy", from_logits=True), CLASSES
    )
    expected = skm.roc_auc_score(LABELS, PROBS, multi_class="ovr", average="macro")
    assert metric_value(metric, LABELS, LOGITS) == pytest.approx(expected, abs=0.02)


def test_perplexity_is_exp_of_mean_cross_entropy_over_positions():
    loss = LossConfig(name="sparse_categorical_crossentropy", from_logits=True)
    (metric,) = registry.build_metrics(["perplexity"], loss, CORPUS)
    labels = RNG.integers(0, 7, size=(6, 5))
    logits = RNG.normal(size=(6, 5, 7)).astype("float32")
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    cross_entropy = -np.take_along_axis(log_probs, labels[..., None], -1).mean()
    assert metric_value(metric, labels, logits) == pytest.approx(np.exp(cross_entropy), rel=1e-5)


def test_perplexity_weights_each_example_over_its_positions():
    metric = keras_metrics.Perplexity(from_logits=False)
    probs = np.full((2, 3, 4), 0.25, dtype="float32")
    probs[1] = [0.7, 0.1, 0.1, 0.1]
    metric.update_state(np.zeros((2, 3)), probs, sample_weight=np.array([1.0, 0.0]))
    assert float(metric.result()) == pytest.approx(4.0)


def test_metrics_survive_a_safe_mode_save_and_load(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    names = ["accuracy", "precision", "recall", "f1", "auc"]
    loss = SPARSE
    model.compile(
        optimizer=registry.build_optimizer(
            OptimizerConfig.model_validate(
                {"learning_rate": {"schedule": "constant", "initial": 0.01, "warmup_steps": 2}}
            ),
            10,
        ),
        loss=registry.build_loss(loss),
        metrics=registry.build_metrics(names, loss, CLASSES),
    )
    x = RNG.normal(size=(40, 4)).astype("float32")
    model.fit(x, LABELS, epochs=1, batch_size=16, verbose=0)
    scores = model.evaluate(x, LABELS, verbose=0, return_dict=True)
    assert set(scores) == {"loss", *names}

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert loaded.optimizer.get_config()["learning_rate"]["class_name"] == "LinearWarmup"
    reloaded = loaded.evaluate(x, LABELS, verbose=0, return_dict=True)
    assert reloaded == pytest.approx(scores, rel=1e-5)


def test_perplexity_survives_a_safe_mode_save_and_load(tmp_path):
    inputs = keras.Input((5,), dtype="int32")
    x = keras.layers.Embedding(7, 4)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(7)(x))
    loss = LossConfig(name="sparse_categorical_crossentropy", from_logits=True)
    model.compile(
        "sgd",
        registry.build_loss(loss),
        metrics=registry.build_metrics(["accuracy", "perplexity"], loss, CORPUS),
    )
    tokens = RNG.integers(0, 7, size=(8, 5))
    scores = model.evaluate(tokens, tokens, verbose=0, return_dict=True)
    assert scores["perplexity"] == pytest.approx(math.exp(scores["loss"]), rel=1e-5)
    model.save(tmp_path / "lm.keras")
    loaded = keras.models.load_model(tmp_path / "lm.keras", safe_mode=True)
    assert loaded.evaluate(tokens, tokens, verbose=0, return_dict=True) == pytest.approx(scores)


def test_custom_objects_name_every_registered_class():
    objects = registry.custom_objects()
    assert objects["bigmodel>Perplexity"] is keras_metrics.Perplexity
    assert objects["LinearWarmup"] is registry.LinearWarmup
    assert "bigmodel>TokenAndPositionEmbedding" in objects


def test_classification_metrics_need_a_classification_loss():
    spec = DataSpec(task="regression", input_shape=(4,))
    with pytest.raises(ConfigError, match="metrics: accuracy, f1 need a classification loss"):
        registry.build_metrics(["accuracy", "f1", "rmse"], LossConfig(name="mse"), spec)


def test_scores_reset_between_epochs():
    (metric,) = registry.build_metrics(["recall"], SPARSE, CLASSES)
    metric.update_state(LABELS, PROBS)
    metric.reset_state()
    assert float(metric.result()) == 0.0
    assert metric_value(metric, LABELS[:5], PROBS[:5], batches=1) == pytest.approx(
        skm.recall_score(LABELS[:5], PROBS[:5].argmax(1), average="macro")
    )


def test_scores_are_exact_under_a_distribution_strategy():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        inputs = keras.Input((3,))
        model = keras.Model(inputs, keras.layers.Activation("softmax")(inputs))
        model.compile(
            loss="sparse_categorical_crossentropy",
            metrics=registry.build_metrics(["f1", "auc", "perplexity"], SPARSE, CLASSES),
        )
    scores = model.evaluate(LOGITS, LABELS, batch_size=7, verbose=0, return_dict=True)
    expected = skm.f1_score(LABELS, LOGITS.argmax(1), average="macro")
    assert scores["f1"] == pytest.approx(expected, rel=1e-6)
    assert scores["perplexity"] == pytest.approx(math.exp(scores["loss"]), rel=1e-5)
    auc = skm.roc_auc_score(LABELS, PROBS, multi_class="ovr", average="macro")
    assert scores["auc"] == pytest.approx(auc, abs=0.02)


@pytest.mark.slow
def test_binary_run_scores_are_the_mean_of_evaluates_per_class_table(runner, write_config):
    from bigmodel_cli.cli import app
    from tests.helpers import run_dir_of, train

    config = write_config(
        {
            "name": "binary-scores",
            "seed": 3,
            "data": {"source": "breast_cancer", "batch_size": 32, "test_split": 0.3},
            "model": {"type": "mlp", "dense": [8]},
            "loss": "binary_crossentropy",
            "metrics": ["precision", "recall", "f1"],
            "train": {"epochs": 2},
        }
    )
    run = run_dir_of(train(runner, config))
    result = runner.invoke(app, ["evaluate", str(run), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rows = report["per_class"].values()
    assert len(rows) == 2
    for name in ("precision", "recall", "f1"):
        mean = sum(row[name] for row in rows) / 2
        assert report["metrics"][name] == pytest.approx(mean, abs=1e-6), name

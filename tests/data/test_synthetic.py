"""Synthetic data: every task follows a learnable rule and is seeded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bigmodel_cli.data import (
    load_data,
)
from bigmodel_cli.errors import DataError
from bigmodel_cli.spec import Arrays
from tests.helpers.data import MODELS, make_cfg, problems  # noqa: F401

# === Synthetic ===============================================================


def synthetic(task: str, seed: int = 42, model: str = "mlp", **data):
    cfg = make_cfg(
        {"source": "synthetic", "task": task, "normalize": False, "test_split": 0.25, **data},
        model,
        seed=seed,
    )
    return load_data(cfg, Path("."))


def fit_score(train: Arrays, test: Arrays, features=lambda x: x.reshape(len(x), -1)) -> float:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=300).fit(features(train.x), train.y)
    return model.score(features(test.x), test.y)


def test_synthetic_classification_learnable_and_seeded():
    bundle = synthetic("classification")
    assert bundle.spec.input_shape == (20,) and bundle.spec.num_classes == 3
    assert len(bundle.train) + len(bundle.validation) + len(bundle.test) == 2000
    assert fit_score(bundle.train, bundle.test) > 0.7  # chance is 1/3
    assert np.array_equal(synthetic("classification").train.x, bundle.train.x)
    assert not np.array_equal(synthetic("classification", seed=1).train.x, bundle.train.x)


def test_synthetic_regression_learnable_and_seeded():
    from sklearn.linear_model import Ridge

    bundle = synthetic("regression", features=8)
    assert bundle.spec.task == "regression" and bundle.spec.input_shape == (8,)
    model = Ridge().fit(bundle.train.x, bundle.train.y[:, 0])
    assert model.score(bundle.test.x, bundle.test.y[:, 0]) > 0.5  # R^2; 0 is the mean
    assert np.array_equal(synthetic("regression", features=8).train.y, bundle.train.y)
    assert not np.array_equal(synthetic("regression", seed=1, features=8).train.y, bundle.train.y)


def test_synthetic_image_learnable_and_seeded():
    bundle = synthetic("image", model="cnn", examples=600, noise=0.5)
    assert bundle.spec.input_shape == (16, 16, 1) and bundle.spec.num_classes == 4
    assert fit_score(bundle.train, bundle.test) > 0.6  # chance is 1/4
    shape = synthetic("image", model="cnn", examples=10, image_shape=[8, 12, 3]).spec.input_shape
    assert shape == (8, 12, 3)
    same = synthetic("image", model="cnn", examples=600, noise=0.5)
    assert np.array_equal(same.train.x, bundle.train.x)
    other = synthetic("image", seed=1, model="cnn", examples=600, noise=0.5)
    assert not np.array_equal(other.train.x, bundle.train.x)


def test_synthetic_token_sequence_learnable_and_seeded():
    bundle = synthetic("sequence", model="rnn", vocab_size=30, examples=600, noise=0.5)
    spec = bundle.spec
    assert (spec.input_dtype, spec.vocab_size, spec.input_shape, spec.num_classes) == (
        "int32",
        30,
        (32,),
        2,
    )
    counts = lambda x: np.stack([np.bincount(row, minlength=30) for row in x])  # noqa: E731
    assert fit_score(bundle.train, bundle.test, counts) > 0.75
    again = synthetic("sequence", model="rnn", vocab_size=30, examples=600, noise=0.5)
    assert np.array_equal(again.train.x, bundle.train.x)


def test_synthetic_float_sequence_learnable_and_seeded():
    bundle = synthetic("sequence", model="rnn", examples=600, classes=3, features=2, noise=0.5)
    assert bundle.spec.input_shape == (32, 2) and bundle.spec.input_dtype == "float32"
    spectrum = lambda x: np.abs(np.fft.rfft(x, axis=1)).reshape(len(x), -1)  # noqa: E731
    assert fit_score(bundle.train, bundle.test, spectrum) > 0.7  # chance is 1/3
    other = synthetic("sequence", seed=1, model="rnn", examples=600, classes=3, features=2)
    assert not np.array_equal(other.train.x, bundle.train.x)


def test_synthetic_language_model_predictable_and_seeded():
    bundle = synthetic("language_model", model="lm")
    spec = bundle.spec
    assert (spec.task, spec.input_shape, spec.vocab_size, spec.num_classes) == (
        "language_model",
        (64,),
        64,
        64,
    )
    train, test = bundle.train, bundle.test
    assert train.y.shape == train.x.shape
    assert np.array_equal(train.x[:, 1:], train.y[:, :-1])  # y is x shifted by one
    bigrams = np.zeros((64, 64))
    np.add.at(bigrams, (train.x.ravel(), train.y.ravel()), 1)
    accuracy = (bigrams.argmax(axis=1)[test.x] == test.y).mean()
    assert accuracy > 0.3  # chance is 1/64
    assert np.array_equal(synthetic("language_model", model="lm").train.x, train.x)
    assert not np.array_equal(synthetic("language_model", seed=1, model="lm").train.x, train.x)


def test_synthetic_keys_a_task_does_not_use_are_errors():
    with pytest.raises(DataError) as err:
        synthetic("classification", image_shape=[8, 8, 1], vocab_size=10)
    assert "data.image_shape: synthetic task 'classification' does not use" in problems(err)
    assert "data.vocab_size:" in problems(err)
    with pytest.raises(DataError, match="data.vocab_size: 3 tokens cannot give each of 4"):
        synthetic("sequence", model="rnn", vocab_size=3, classes=4)

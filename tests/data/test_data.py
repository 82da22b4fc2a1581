"""Data loading: sources, task inference, splits, normalization, layout, tf.data pipelines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bigmodel_cli.config import Config
from bigmodel_cli.data import (
    Normalization,
    bundle_normalization,
    describe,
    load_data,
    make_dataset,
    split_indices,
)
from bigmodel_cli.errors import DataError
from tests.helpers.data import MODELS, make_cfg, problems  # noqa: F401

# === Built-in sources ========================================================


@pytest.mark.parametrize(
    ("source", "model", "shape", "task", "classes"),
    [
        ("digits", "mlp", (64,), "classification", 10),
        ("digits", "cnn", (8, 8, 1), "classification", 10),
        ("digits", "rnn", (8, 8), "classification", 10),
        ("digits", "sequential", (8, 8, 1), "classification", 10),
        ("iris", "mlp", (4,), "classification", 3),
        ("iris", "cnn", (4, 1), "classification", 3),
        ("iris", "rnn", (4, 1), "classification", 3),
        ("wine", "mlp", (13,), "classification", 3),
        ("breast_cancer", "mlp", (30,), "classification", 2),
        ("diabetes", "mlp", (10,), "regression", None),
        ("diabetes", "rnn", (10, 1), "regression", None),
    ],
)
def test_builtin_sources_load_with_spec_and_layout(source, model, shape, task, classes):
    bundle = load_data(make_cfg({"source": source}, model), Path("."))
    spec = bundle.spec
    assert (spec.task, spec.input_shape, spec.num_classes) == (task, shape, classes)
    assert spec.input_dtype == "float32"
    for part in (bundle.train, bundle.validation, bundle.test):
        assert part.x.shape[1:] == shape and part.x.dtype == np.float32
        if task == "classification":
            assert part.y.dtype == np.int64 and part.y.ndim == 1
            assert part.y.min() >= 0 and part.y.max() < classes
        else:
            assert part.y.dtype == np.float32 and part.y.shape == (len(part), 1)
    if source == "iris":
        assert spec.class_names == ("setosa", "versicolor", "virginica")


def test_digits_sizes_follow_default_splits():
    bundle = load_data(make_cfg({"source": "digits"}, "cnn"), Path("."))
    assert (len(bundle.train), len(bundle.validation), len(bundle.test)) == (1437, 180, 180)
    summary = describe(bundle)
    json.dumps(summary)  # environment.json must be able to hold it
    assert summary["examples"] == {"train": 1437, "validation": 180, "test": 180}
    assert summary["spec"]["input_shape"] == (8, 8, 1)
    assert summary["normalization"]["per"] == "channel"


def test_loading_does_not_import_tensorflow():
    code = (
        "import sys; from pathlib import Path; from bigmodel_cli.config import Config; "
        "from bigmodel_cli.data import load_data; "
        "load_data(Config.model_validate({'data': {'source': 'synthetic'}, "
        "'model': {'type': 'mlp'}}), Path('.')); "
        "assert 'tensorflow' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# === Splits ==================================================================


def test_split_indices_disjoint_cover_and_seeded():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    train, val, test = split_indices(100, labels, 0.2, 0.1, seed=7)
    assert (len(train), len(val), len(test)) == (70, 20, 10)
    joined = np.concatenate([train, val, test])
    assert sorted(joined) == list(range(100))  # disjoint and covering
    again = split_indices(100, labels, 0.2, 0.1, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again, strict=True))
    other = split_indices(100, labels, 0.2, 0.1, seed=8)
    assert not np.array_equal(test, other[2])
    # Stratified: each split keeps the 5:3:2 class balance.
    assert list(np.bincount(labels[test])) == [5, 3, 2]
    assert list(np.bincount(labels[val])) == [10, 6, 4]


def test_split_indices_unstratified_and_limit():
    train, val, test = split_indices(100, None, 0.25, 0.15, seed=1, limit=40)
    assert (len(train), len(val), len(test)) == (24, 10, 6)
    assert len(set(np.concatenate([train, val, test]))) == 40


def test_split_tiny_class_falls_back_gracefully():
    labels = np.array([0] * 30 + [1])  # one lonely example of class 1
    train, val, test = split_indices(31, labels, 0.1, 0.1, seed=0)
    assert len(train) + len(val) + len(test) == 31 and (len(val), len(test)) == (3, 3)


def test_zero_fractions_give_no_split():
    cfg = make_cfg({"source": "iris", "validation_split": 0, "test_split": 0})
    bundle = load_data(cfg, Path("."))
    assert bundle.validation is None and bundle.test is None and len(bundle.train) == 150


def test_split_that_rounds_to_nothing_names_the_key():
    cfg = make_cfg({"source": "iris", "limit": 4, "test_split": 0.1, "validation_split": 0.2})
    with pytest.raises(DataError) as err:
        load_data(cfg, Path("."))
    assert "data.test_split: 0.1 of 4 examples rounds to 0" in problems(err)


def test_split_leaving_no_training_example_is_an_error():
    with pytest.raises(DataError, match="leave none for training"):
        split_indices(2, None, 0.4, 0.4, seed=0)


def test_load_data_splits_are_deterministic_by_seed():
    first = load_data(make_cfg({"source": "wine"}), Path("."))
    second = load_data(make_cfg({"source": "wine"}), Path("."))
    other = load_data(make_cfg({"source": "wine"}, seed=3), Path("."))
    assert np.array_equal(first.test.x, second.test.x)
    assert not np.array_equal(first.test.x, other.test.x)


# === Normalization ===========================================================


def test_normalization_uses_training_split_only():
    raw = load_data(make_cfg({"source": "wine", "normalize": False}), Path("."))
    norm = load_data(make_cfg({"source": "wine"}), Path("."))
    assert bundle_normalization(raw) is None
    stats = bundle_normalization(norm)
    assert stats.per == "feature" and len(stats.mean) == 13
    np.testing.assert_allclose(stats.mean, raw.train.x.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(norm.train.x.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(norm.train.x.std(axis=0), 1, atol=1e-4)
    expected = (raw.validation.x - np.asarray(stats.mean)) / np.asarray(stats.std)
    np.testing.assert_allclose(norm.validation.x, expected, atol=1e-4)


def test_normalization_per_channel_for_images_whatever_the_layout():
    flat = load_data(make_cfg({"source": "digits"}, "mlp"), Path("."))
    stats = bundle_normalization(flat)
    assert stats.per == "channel" and len(stats.mean) == 1
    assert abs(flat.train.x.mean()) < 1e-4 and abs(flat.train.x.std() - 1) < 1e-4
    # A run's statistics round-trip through JSON and can be imposed on other data.
    restored = Normalization.from_json(json.loads(json.dumps(stats.to_json())))
    again = load_data(make_cfg({"source": "digits"}, "cnn"), Path("."), normalization=restored)
    np.testing.assert_allclose(again.test.x.reshape(len(again.test), -1), flat.test.x)


def test_constant_feature_keeps_std_one(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("a,b,label\n" + "".join(f"{i},5,{i % 2}\n" for i in range(20)))
    cfg = make_cfg({"source": "csv", "path": str(path), "target": "label"})
    stats = bundle_normalization(load_data(cfg, tmp_path))
    assert stats.std[1] == 1.0


# === Layout and model/data fit ================================================


def test_input_shape_reshapes_and_mismatch_names_the_key():
    cfg = Config.model_validate(
        {"data": {"source": "digits"}, "model": {**MODELS["mlp"], "input_shape": [8, 8]}}
    )
    assert load_data(cfg, Path(".")).spec.input_shape == (8, 8)
    bad = Config.model_validate(
        {"data": {"source": "digits"}, "model": {**MODELS["mlp"], "input_shape": [10, 10, 1]}}
    )
    with pytest.raises(DataError) as err:
        load_data(bad, Path("."))
    assert "model.input_shape: [10, 10, 1] holds 100 values" in problems(err)
    assert "[8, 8, 1] = 64 values" in problems(err)


def test_layout_and_split_problems_are_reported_together():
    cfg = Config.model_validate(
        {
            "data": {"source": "iris", "limit": 4, "test_split": 0.1},
            "model": {**MODELS["rnn"], "input_shape": [5], "embedding_dim": 8},
        }
    )
    with pytest.raises(DataError) as err:
        load_data(cfg, Path("."))
    assert [p.split(":")[0] for p in err.value.problems] == [
        "model.embedding_dim",
        "model.input_shape",
        "data.test_split",
        "data.validation_split",
    ]


def test_tokens_need_a_model_that_embeds_them():
    with pytest.raises(DataError, match="model.type: 'mlp' cannot read integer token"):
        load_data(make_cfg({"source": "synthetic", "task": "language_model"}), Path("."))
    with pytest.raises(DataError, match="model.task: 'language_model' needs token sequences"):
        load_data(make_cfg({"source": "iris"}, "lm"), Path("."))


# === tf.data =================================================================


def first_batch(cfg: Config, split: str = "train", training: bool = True):
    bundle = load_data(cfg, Path("."))
    ds = make_dataset(bundle.split(split), cfg, bundle.spec, training=training)
    x, y = next(iter(ds))
    return bundle, ds, x.numpy(), y.numpy()


def test_dataset_sparse_labels_batches_and_reshuffles():
    cfg = make_cfg({"source": "iris", "batch_size": 16}, "cnn")
    bundle, ds, x, y = first_batch(cfg)
    assert x.shape == (16, 4, 1) and x.dtype == np.float32
    assert y.shape == (16,) and y.dtype == np.int32
    sizes = [len(b[1]) for b in ds]
    assert sum(sizes) == len(bundle.train) and sizes[0] == 16
    epoch1, epoch2 = (np.concatenate([b[1].numpy() for b in ds]) for _ in range(2))
    assert sorted(epoch1) == sorted(bundle.train.y) and not np.array_equal(epoch1, epoch2)
    # Evaluation keeps the split's order.
    evaluation = make_dataset(bundle.validation, cfg, bundle.spec, training=False)
    np.testing.assert_array_equal(np.concatenate([b[0] for b in evaluation]), bundle.validation.x)


def test_dataset_one_hot_for_categorical_crossentropy():
    cfg = make_cfg({"source": "wine", "batch_size": 8}, loss="categorical_crossentropy")
    _, _, _, y = first_batch(cfg, "validation", training=False)
    assert y.shape == (8, 3) and y.dtype == np.float32 and np.all(y.sum(axis=1) == 1)


def test_dataset_binary_and_regression_labels():
    binary = make_cfg({"source": "breast_cancer", "batch_size": 8}, loss="binary_crossentropy")
    _, _, _, y = first_batch(binary)
    assert y.shape == (8, 1) and y.dtype == np.float32 and set(np.unique(y)) <= {0.0, 1.0}
    _, _, _, y = first_batch(make_cfg({"source": "diabetes", "batch_size": 8}))
    assert y.shape == (8, 1) and y.dtype == np.float32


def test_dataset_tokens_are_int32():
    cfg = make_cfg({"source": "synthetic", "task": "language_model", "batch_size": 4}, "lm")
    _, _, x, y = first_batch(cfg)
    assert x.shape == (4, 64) and x.dtype == np.int32 and y.shape == (4, 64)


@pytest.mark.parametrize("seed", [0, 42])
def test_the_training_stream_restarts_anywhere_with_the_same_batches(seed):
    """Epochs are seeded permutations: starting the stream at (epoch, batch) gives the
    batches the whole stream has there (seed 0 included: TensorFlow's seed handling once
    broke on it), each epoch is a new order, and an epoch holds every example once."""
    cfg = make_cfg({"source": "iris", "batch_size": 16}, seed=seed)
    bundle = load_data(cfg, Path("."))
    n = len(bundle.train)
    per_epoch = -(-n // 16)
    whole = make_dataset(bundle.train, cfg, bundle.spec, training=True, start=(0, 0))
    expected = [x.numpy() for x, _ in whole.take(3 * per_epoch)]
    later = make_dataset(bundle.train, cfg, bundle.spec, training=True, start=(1, 3))
    for offset, (x, _) in enumerate(later.take(per_epoch)):
        np.testing.assert_array_equal(x.numpy(), expected[per_epoch + 3 + offset])
    first, second = (np.concatenate(expected[e * per_epoch:(e + 1) * per_epoch])
                     for e in (0, 1))  # fmt: skip
    assert len(first) == n and not np.array_equal(first, second)
    assert np.array_equal(np.sort(first, axis=0), np.sort(second, axis=0))

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
from bigmodel_cli.spec import Arrays

MODELS = {
    "mlp": {"type": "mlp", "dense": [4]},
    "cnn": {"type": "cnn", "conv": [{"filters": 4}]},
    "rnn": {"type": "rnn", "units": [4]},
    "transformer": {"type": "transformer", "d_model": 8, "num_heads": 2},
    "lm": {"type": "transformer", "task": "language_model", "d_model": 8, "num_heads": 2},
    "sequential": {"type": "sequential", "layers": [{"type": "Flatten"}]},
}


def make_cfg(data: dict, model: str = "mlp", **top) -> Config:
    return Config.model_validate({"data": data, "model": MODELS[model], **top})


def problems(excinfo) -> str:
    return "\n".join(excinfo.value.problems)


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


# === csv =====================================================================


def write(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def csv_cfg(path, **data) -> Config:
    return make_cfg({"source": "csv", "path": str(path), "target": "label", **data})


def test_csv_string_labels_sorted_class_names(tmp_path):
    rows = "".join(f"{i};{i * 2};{['dog', 'cat', 'emu'][i % 3]}\n" for i in range(30))
    write(tmp_path, "a;b;label\n" + rows)
    # Relative path: resolved against base_dir, the config file's folder.
    cfg = make_cfg(
        {
            "source": "csv",
            "path": "data.csv",
            "target": "label",
            "delimiter": ";",
            "features": ["b"],
            "normalize": False,
        }
    )
    bundle = load_data(cfg, tmp_path)
    assert bundle.spec.class_names == ("cat", "dog", "emu")
    assert bundle.spec.input_shape == (1,) and bundle.spec.num_classes == 3
    x, y = bundle.train.x[:, 0], bundle.train.y
    names = np.array(bundle.spec.class_names)[y]
    expected = np.array(["dog", "cat", "emu"])[(x / 2).astype(int) % 3]
    assert list(names) == list(expected)


@pytest.mark.parametrize(
    ("targets", "loss", "task", "names"),
    [
        ([3, 7, 3, 7] * 5, None, "classification", ("3", "7")),  # few integers: classes
        ([0.5 * i for i in range(20)], None, "regression", None),  # fractional: regression
        (list(range(60)), None, "regression", None),  # more than 50 distinct integers
        ([3, 7, 3, 7] * 5, "mse", "regression", None),  # the loss decides
        ([10, 2, 2, 10] * 5, "sparse_categorical_crossentropy", "classification", ("2", "10")),
    ],
)
def test_csv_task_inference(tmp_path, targets, loss, task, names):
    path = write(tmp_path, "x,label\n" + "".join(f"{i},{t}\n" for i, t in enumerate(targets)))
    data = {"source": "csv", "path": str(path), "target": "label"}
    cfg = make_cfg({**data, "validation_split": 0, "test_split": 0}, loss=loss)
    bundle = load_data(cfg, tmp_path)
    assert bundle.spec.task == task and bundle.spec.class_names == names
    if task == "regression":
        assert bundle.train.y.dtype == np.float32 and bundle.train.y.shape[1] == 1


def test_csv_negative_class_labels_are_refused(tmp_path):
    path = write(tmp_path, "x,label\n1,-1\n2,1\n3,-1\n4,1\n")
    with pytest.raises(DataError) as err:
        load_data(csv_cfg(path, validation_split=0, test_split=0), tmp_path)
    assert f"{path} line 2, column 'label': class labels must be integers >= 0" in problems(err)
    assert "loss: mse" in problems(err)


def test_csv_missing_file(tmp_path):
    with pytest.raises(DataError) as err:
        load_data(csv_cfg(tmp_path / "nope.csv"), tmp_path)
    assert problems(err) == f"data.path: {tmp_path / 'nope.csv'}: no such file"


def test_csv_missing_target_lists_columns(tmp_path):
    path = write(tmp_path, "a,b,c\n1,2,3\n")
    with pytest.raises(DataError) as err:
        load_data(csv_cfg(path), tmp_path)
    assert problems(err) == f"data.target: column 'label' not in {path}; columns are a, b, c"


def test_csv_missing_feature_column(tmp_path):
    path = write(tmp_path, "a,label\n1,2\n")
    with pytest.raises(DataError, match="data.features: column 'zz' not in"):
        load_data(csv_cfg(path, features=["a", "zz"]), tmp_path)


def test_csv_bad_cells_name_line_and_column(tmp_path):
    path = write(tmp_path, "age,height,label\n1,2,a\n3,4,b\nabc,5,a\n6,,b\n")
    with pytest.raises(DataError) as err:
        load_data(csv_cfg(path), tmp_path)
    assert err.value.problems == [
        f"{path} line 4, column 'age': 'abc' is not a finite number",
        f"{path} line 5, column 'height': empty cell",
    ]


def test_csv_empty_target_cell(tmp_path):
    path = write(tmp_path, "a,label\n1,x\n2,\n")
    with pytest.raises(DataError, match="line 3, column 'label': empty cell"):
        load_data(csv_cfg(path), tmp_path)


def test_csv_header_only_and_empty_file(tmp_path):
    path = write(tmp_path, "a,label\n")
    with pytest.raises(DataError, match="has a header but no data rows"):
        load_data(csv_cfg(path), tmp_path)
    empty = write(tmp_path, "", "empty.csv")
    with pytest.raises(DataError, match="empty; expected a header row"):
        load_data(csv_cfg(empty), tmp_path)


def test_csv_wrong_number_of_fields(tmp_path):
    path = write(tmp_path, "a,b,label\n1,2,x\n1,2\n")
    with pytest.raises(DataError, match=r"line 3: 2 fields, expected 3"):
        load_data(csv_cfg(path), tmp_path)


def test_csv_regression_loss_with_string_target(tmp_path):
    path = write(tmp_path, "a,label\n1,x\n2,y\n")
    cfg = make_cfg({"source": "csv", "path": str(path), "target": "label"}, loss="mse")
    with pytest.raises(DataError, match="line 2, column 'label': 'x' is not a number"):
        load_data(cfg, tmp_path)


# === npz =====================================================================


def npz_cfg(path, model="mlp", **data) -> Config:
    return make_cfg({"source": "npz", "path": str(path), **data}, model)


def test_npz_x_y(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x=rng.normal(size=(100, 6, 6, 1)), y=rng.integers(0, 3, 100))
    cnn = load_data(npz_cfg(path, "cnn"), tmp_path)
    assert cnn.spec.input_shape == (6, 6, 1) and cnn.spec.num_classes == 3
    assert (len(cnn.train), len(cnn.validation), len(cnn.test)) == (80, 10, 10)
    assert load_data(npz_cfg(path, "mlp"), tmp_path).spec.input_shape == (36,)


def test_npz_own_test_split(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    y_test = np.eye(2)[rng.integers(0, 2, 25)]  # one-hot labels
    np.savez(
        path,
        x_train=rng.normal(size=(100, 3)),
        y_train=np.eye(2)[rng.integers(0, 2, 100)],
        x_test=rng.normal(size=(25, 3)),
        y_test=y_test,
    )
    bundle = load_data(npz_cfg(path, normalize=False), tmp_path)
    assert len(bundle.test) == 25 and len(bundle.validation) == 10 and len(bundle.train) == 90
    assert list(bundle.test.y) == list(y_test.argmax(axis=1))
    assert any("test_split is not applied" in note for note in bundle.notes)
    assert any("one-hot" in note for note in bundle.notes)


def test_npz_integer_sequences_are_tokens_for_rnn_only(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "t.npz"
    np.savez(path, x=rng.integers(0, 30, (60, 12)), y=rng.integers(0, 2, 60))
    rnn = load_data(npz_cfg(path, "rnn"), tmp_path)
    assert rnn.spec.input_dtype == "int32" and rnn.spec.vocab_size == int(
        np.load(path)["x"].max() + 1
    )
    assert rnn.train.x.dtype == np.int32 and rnn.spec.input_shape == (12,)
    assert bundle_normalization(rnn) is None  # token ids are never normalized
    mlp = load_data(npz_cfg(path, "mlp"), tmp_path)
    assert mlp.spec.input_dtype == "float32" and mlp.spec.vocab_size is None


def test_npz_language_model(tmp_path):
    tokens = np.random.default_rng(0).integers(0, 40, (50, 9))
    path = tmp_path / "lm.npz"
    np.savez(path, x=tokens[:, :-1], y=tokens[:, 1:])
    spec = load_data(npz_cfg(path, "lm"), tmp_path).spec
    assert (spec.task, spec.vocab_size, spec.num_classes, spec.input_shape) == (
        "language_model",
        40,
        40,
        (8,),
    )


def test_npz_object_array_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, x=np.array([{"a": 1}, None], dtype=object), y=np.array([0, 1]))
    with pytest.raises(DataError) as err:
        load_data(npz_cfg(path), tmp_path)
    assert "holds Python objects" in problems(err) and "never unpickles" in problems(err)


def test_npz_wrong_keys_and_not_npz(tmp_path):
    path = tmp_path / "k.npz"
    np.savez(path, inputs=np.zeros((3, 2)), y=np.zeros(3))
    with pytest.raises(DataError, match="holds arrays inputs, y; expected exactly x, y"):
        load_data(npz_cfg(path), tmp_path)
    junk = write(tmp_path, "not a zip", "junk.npz")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_data(npz_cfg(junk), tmp_path)


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

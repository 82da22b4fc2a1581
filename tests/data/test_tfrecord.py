"""`data.source: tfrecord`: records written here, read back, trained on; bad files and
specs exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_iris

from bigmodel_cli.cli import app
from bigmodel_cli.data import load_data
from bigmodel_cli.errors import DataError
from tests.helpers import no_traceback
from tests.helpers.data import make_cfg, problems


def _feature(value) -> tf.train.Feature:
    if isinstance(value, bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
    value = np.asarray(value)
    if value.dtype.kind == "f":
        return tf.train.Feature(float_list=tf.train.FloatList(value=value.ravel()))
    return tf.train.Feature(int64_list=tf.train.Int64List(value=value.ravel()))


def write_records(path: Path, rows: list[dict]) -> Path:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for row in rows:
            features = {name: _feature(value) for name, value in row.items()}
            example = tf.train.Example(features=tf.train.Features(feature=features))
            writer.write(example.SerializeToString())
    return path


def iris_records(tmp_path: Path, shards: int = 2) -> list[Path]:
    x, y = load_iris(return_X_y=True)
    rows = [
        {"measurements": xi.astype(np.float32), "species": int(yi)}
        for xi, yi in zip(x, y, strict=True)
    ]
    return [write_records(tmp_path / f"iris-{i}.tfrecord", rows[i::shards]) for i in range(shards)]


IRIS_SPEC = {
    "measurements": {"dtype": "float32", "shape": [4]},
    "species": {"dtype": "int64"},
}


def tfrecord_cfg(paths, spec=IRIS_SPEC, target="species", model="mlp", **data):
    return make_cfg(
        {"source": "tfrecord", "paths": paths, "feature_spec": spec, "target": target, **data},
        model,
    )


def test_glob_of_shards_reads_every_record(tmp_path):
    iris_records(tmp_path, shards=3)
    bundle = load_data(tfrecord_cfg(["iris-*.tfrecord"]), tmp_path)
    sizes = len(bundle.train) + len(bundle.validation) + len(bundle.test)
    assert sizes == 150
    assert bundle.spec.task == "classification" and bundle.spec.num_classes == 3
    assert bundle.spec.input_shape == (4,)


def test_string_labels_become_sorted_classes(tmp_path):
    x, y = load_iris(return_X_y=True)
    names = [b"setosa", b"versicolor", b"virginica"]
    rows = [{"m": xi.astype(np.float32), "name": names[yi]} for xi, yi in zip(x, y, strict=True)]
    write_records(tmp_path / "iris.tfrecord", rows)
    spec = {"m": {"dtype": "float32", "shape": [4]}, "name": {"dtype": "string"}}
    bundle = load_data(tfrecord_cfg(["iris.tfrecord"], spec, "name"), tmp_path)
    assert bundle.spec.class_names == ("setosa", "versicolor", "virginica")


def test_encoded_images_are_decoded_to_the_spec_shape(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):
        image = rng.integers(0, 255, (10, 12, 1), dtype=np.uint8)
        rows.append({"png": tf.io.encode_png(image).numpy(), "label": i % 2})
    write_records(tmp_path / "images.tfrecord", rows)
    spec = {"png": {"dtype": "image", "shape": [8, 8, 1]}, "label": {"dtype": "int64"}}
    bundle = load_data(tfrecord_cfg(["images.tfrecord"], spec, "label", model="cnn"), tmp_path)
    assert bundle.spec.input_shape == (8, 8, 1)


def test_records_that_do_not_fit_the_spec_name_it(tmp_path):
    iris_records(tmp_path, shards=1)
    wrong = {**IRIS_SPEC, "measurements": {"dtype": "float32", "shape": [5]}}
    with pytest.raises(DataError) as excinfo:
        load_data(tfrecord_cfg(["iris-0.tfrecord"], wrong), tmp_path)
    assert "data.feature_spec" in problems(excinfo)


def test_a_file_that_is_not_a_tfrecord_is_refused(tmp_path):
    (tmp_path / "junk.tfrecord").write_bytes(b"\x00not a record file at all" * 10)
    with pytest.raises(DataError) as excinfo:
        load_data(tfrecord_cfg(["junk.tfrecord"]), tmp_path)
    assert "TFRecord" in problems(excinfo) and "junk.tfrecord" in problems(excinfo)


def test_spec_needs_the_target_and_one_input(write_config, runner, tmp_path):
    iris_records(tmp_path, shards=1)
    config = write_config(
        {
            "data": {
                "source": "tfrecord",
                "paths": "iris-0.tfrecord",
                "feature_spec": IRIS_SPEC,
                "target": "label",
            },
            "model": {"type": "mlp"},
        }
    )
    result = runner.invoke(app, ["train", str(config)])
    assert result.exit_code == 2 and no_traceback(result.output)
    assert "data.target" in result.output
    assert not (tmp_path / "runs").exists()


def test_train_and_evaluate_from_tfrecords(write_config, runner, tmp_path):
    iris_records(tmp_path, shards=2)
    config = write_config(
        {
            "data": {
                "source": "tfrecord",
                "paths": ["iris-*.tfrecord"],
                "feature_spec": IRIS_SPEC,
                "target": "species",
                "validation_split": 0.2,
                "test_split": 0.2,
                "batch_size": 16,
            },
            "model": {"type": "mlp", "dense": [32]},
            "optimizer": {"name": "adam", "learning_rate": 0.01},
            "train": {"epochs": 30},
        }
    )
    result = runner.invoke(app, ["train", str(config)])
    assert result.exit_code == 0, result.output
    run = Path(result.stdout.strip().splitlines()[-1])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["accuracy"] > 0.8  # chance is 1/3
    scored = runner.invoke(app, ["evaluate", str(run), "--json"])
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout)["metrics"]["accuracy"] == pytest.approx(
        summary["test"]["accuracy"], abs=1e-6
    )

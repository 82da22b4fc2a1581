"""csv and npz sources: happy paths and every kind of bad file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sklearn

from bigmodel_cli.config import Config
from bigmodel_cli.data import (
    bundle_normalization,
    load_data,
)
from bigmodel_cli.errors import DataError
from tests.helpers.data import MODELS, make_cfg, problems  # noqa: F401

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


# === csv without a header row ================================================

SKLEARN_DATA = Path(sklearn.__file__).parent / "datasets" / "data"
IRIS_CSV, WINE_CSV = SKLEARN_DATA / "iris.csv", SKLEARN_DATA / "wine_data.csv"


def test_csv_without_header_names_columns_by_position(tmp_path):
    rows = "".join(f"{i / 2},{i % 3},{['dog', 'cat', 'emu'][i % 3]}\n" for i in range(30))
    path = write(tmp_path, rows)
    for target in (2, -1, "column_2"):
        bundle = load_data(csv_cfg(path, header=False, target=target), tmp_path)
        assert bundle.spec.feature_names == ("column_0", "column_1")
        assert bundle.spec.class_names == ("cat", "dog", "emu")
        assert len(bundle.train.x) + len(bundle.validation.x) + len(bundle.test.x) == 30
    bundle = load_data(csv_cfg(path, header=False, target=0, features=["column_1"]), tmp_path)
    assert bundle.spec.feature_names == ("column_1",) and bundle.spec.task == "regression"


def test_csv_target_by_position_with_a_header(tmp_path):
    path = write(tmp_path, "a,b,kind\n" + "".join(f"{i},{i},{i % 2}\n" for i in range(20)))
    bundle = load_data(csv_cfg(path, target=-1), tmp_path)
    assert bundle.spec.feature_names == ("a", "b") and bundle.spec.num_classes == 2


def test_csv_target_position_out_of_range(tmp_path):
    path = write(tmp_path, "1,2,0\n3,4,1\n")
    with pytest.raises(DataError) as err:
        load_data(csv_cfg(path, header=False, target=3), tmp_path)
    assert problems(err) == (
        f"data.target: column index 3, but {path} has 3 columns (0 to 2, or -1 for the last)"
    )
    with pytest.raises(DataError, match=r"\(data.header is false\); or give the column's"):
        load_data(csv_cfg(path, header=False), tmp_path)


def test_a_header_of_numbers_is_pointed_out(tmp_path):
    path = write(tmp_path, "".join(f"{i}.5,{i * 3 + 1},{i % 2}\n" for i in range(20)))
    bundle = load_data(csv_cfg(path, target=-1), tmp_path)  # reads, but says so
    assert any("looks like data, not a header: set data.header: false" in n for n in bundle.notes)
    with pytest.raises(DataError) as err:
        load_data(csv_cfg(path), tmp_path)  # target 'label' is not among 0.5, 1, 0
    assert "looks like data, not a header" in problems(err)
    repeated = write(tmp_path, "1,1,0\n2,2,1\n", "repeated.csv")
    with pytest.raises(DataError, match="header repeats column.*\n.*looks like data"):
        load_data(csv_cfg(repeated, target=-1), tmp_path)
    assert not any("looks like" in n for n in load_data(csv_cfg(path, header=False, target=-1),
                                                          tmp_path).notes)  # fmt: skip


def test_sklearn_iris_csv_header_is_pointed_out():
    with pytest.raises(DataError) as err:
        load_data(csv_cfg(IRIS_CSV, target="species"), SKLEARN_DATA)
    assert err.value.problems[0].startswith("data.target: column 'species' not in")
    assert err.value.problems[1] == (
        f"{IRIS_CSV} line 1: column names 150, 4 are numbers; if the first line "
        "(`150,4,setosa,versicolor,virginica`) is not a header, set data.header: false, and "
        "data.skip_rows: 1 if it is not data either (as in scikit-learn's own csv files)"
    )
    with pytest.raises(DataError) as err:
        load_data(csv_cfg(IRIS_CSV, header=False, target=-1), SKLEARN_DATA)
    assert err.value.problems[-1] == (
        f"{IRIS_CSV} line 1: only the first row (`150,4,setosa,versicolor,virginica`) is "
        "unlike the others; if it is not data (as in scikit-learn's own csv files), set "
        "data.skip_rows: 1 to skip it"
    )


def test_sklearn_wine_csv_gets_one_message_not_one_per_row():
    with pytest.raises(DataError) as err:
        load_data(csv_cfg(WINE_CSV, target=-1), SKLEARN_DATA)
    assert err.value.problems == [
        f"{WINE_CSV}: all 178 rows have 14 fields, but the header (line 1: "
        "`178,13,class_0,class_1,class_2`) has 5: the first line may not be a header. If it "
        "is a line to skip (as in scikit-learn's own csv files), set data.skip_rows: 1 and "
        "data.header: false; if it is data, set data.header: false"
    ]
    with pytest.raises(DataError) as err:
        load_data(csv_cfg(WINE_CSV, header=False, target=-1), SKLEARN_DATA)
    assert err.value.problems[0] == f"{WINE_CSV} line 1: 5 fields, expected 14 (delimiter ',')"
    assert "set data.skip_rows: 1 to skip it" in err.value.problems[1]


@pytest.mark.parametrize(
    ("path", "features", "classes"), [(IRIS_CSV, 4, 3), (WINE_CSV, 13, 3)], ids=["iris", "wine"]
)
def test_sklearn_csv_files_read_with_skip_rows_and_no_header(path, features, classes):
    bundle = load_data(csv_cfg(path, header=False, skip_rows=1, target=-1), SKLEARN_DATA)
    assert bundle.spec.input_shape == (features,) and bundle.spec.num_classes == classes
    assert bundle.spec.class_names == ("0", "1", "2") and not bundle.notes[:-1]


def test_skip_rows_past_the_end_is_an_empty_file(tmp_path):
    path = write(tmp_path, "a,label\n1,x\n")
    with pytest.raises(DataError, match="empty; expected a header row"):
        load_data(csv_cfg(path, skip_rows=2**31 - 1), tmp_path)  # and does not loop 2**31 times


def test_header_keys_are_csv_only_and_target_may_be_0():
    from bigmodel_cli.config.load import ConfigError, config_from_mapping

    model = {"type": "mlp"}
    cfg = config_from_mapping(
        {"model": model, "data": {"source": "csv", "path": "a.csv", "target": 0}}
    )
    assert cfg.data.target == 0
    with pytest.raises(ConfigError, match="data.header: data.source='npz' does not use"):
        config_from_mapping(
            {"model": model, "data": {"source": "npz", "path": "x", "header": False}}
        )
    with pytest.raises(ConfigError, match="data.target: tfrecord needs `target`, the name"):
        spec = {"x": {"dtype": "float32"}, "y": {"dtype": "int64"}}
        data = {"source": "tfrecord", "paths": "a", "feature_spec": spec, "target": 1}
        config_from_mapping({"model": model, "data": data})


@pytest.mark.slow
@pytest.mark.parametrize("path", [IRIS_CSV, WINE_CSV], ids=["iris", "wine"])
def test_an_mlp_learns_sklearn_csv_files_and_predicts_them(path, tmp_path):
    """scikit-learn's own files, read as they are (a counts line, no header): an MLP beats
    chance (1/3) by far, and predict reads the same file with the run's settings."""
    import json

    import yaml
    from typer.testing import CliRunner

    from bigmodel_cli.cli import app

    config = tmp_path / "config.yaml"
    data = {"source": "csv", "path": str(path), "header": False, "skip_rows": 1, "target": -1,
            "batch_size": 16}  # fmt: skip
    config.write_text(yaml.safe_dump({
        "name": path.stem, "data": data, "model": {"type": "mlp", "dense": [16]},
        "optimizer": {"learning_rate": 0.01}, "train": {"epochs": 40},
        "output": {"dir": str(tmp_path / "runs")},
    }))  # fmt: skip
    runner = CliRunner()
    result = runner.invoke(app, ["train", str(config), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["test"]["accuracy"] > 0.8, summary["test"]
    assert summary["data"]["spec"]["feature_names"][0] == "column_0"

    run = next((tmp_path / "runs" / path.stem).iterdir())
    result = runner.invoke(app, ["predict", str(run), str(path)])
    assert result.exit_code == 0, result.output
    predicted = [int(json.loads(line)["class"]) for line in result.stdout.splitlines()]
    labels = [int(row.rsplit(",", 1)[1]) for row in path.read_text().splitlines()[1:]]
    assert len(predicted) == len(labels)
    assert np.mean(np.array(predicted) == np.array(labels)) > 0.8


def test_a_csv_too_large_for_memory_exits_2_before_reading_it_saying_how_to_convert(
    tmp_path, monkeypatch
):
    from bigmodel_cli.data import limits

    rows = "".join(f"{i * 0.5},{i % 7},{i % 3}\n" for i in range(300_000))  # ~4 MB
    path = write(tmp_path, "a,b,label\n" + rows)
    cfg = csv_cfg(path, target="label")
    assert len(load_data(cfg, tmp_path).train) > 200_000  # reads with the memory there is
    # ~900,000 cells take ~100 MB while read: more than 80% of 64 MB.
    monkeypatch.setattr(limits, "available_memory", lambda: 64 * 2**20)
    with pytest.raises(DataError) as excinfo:
        load_data(cfg, tmp_path)
    message = problems(excinfo)
    assert str(path) in message and "in memory" in message and "np.savez" in message

"""`bigmodel predict`: new examples from npz, csv and image files, one JSON line each."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_digits
from typer.testing import CliRunner

from bigmodel_cli.cli import app
from tests.helpers import CONFIGS, no_traceback


def train(config: Path, tmp: Path, *overrides: str) -> Path:
    args = ["train", str(config), "--set", f"output.dir={tmp / 'runs'}"]
    for override in overrides:
        args += ["--set", override]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    return train(CONFIGS / "digits_mlp.yaml", tmp_path_factory.mktemp("digits"), "train.epochs=5")


def predict(*args) -> tuple[int, list[dict], str]:
    result = CliRunner().invoke(app, ["predict", *map(str, args)])
    assert no_traceback(result.output), result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result.exit_code, lines, result.output


def test_npz_rows_get_a_class_and_probabilities(digits_run, tmp_path):
    digits = load_digits()
    np.savez(tmp_path / "new.npz", x=digits.images[:200])
    code, lines, output = predict(digits_run, tmp_path / "new.npz")
    assert code == 0, output
    assert len(lines) == 200
    assert lines[0]["input"].endswith("new.npz[0]")
    assert set(lines[0]["probabilities"]) == {str(d) for d in range(10)}
    assert sum(lines[0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    predicted = np.array([int(line["class"]) for line in lines])
    # The training normalization is applied: raw 0..16 pixels are classified well.
    assert (predicted == digits.target[:200]).mean() > 0.8  # chance is 0.1


def test_csv_rows_match_the_same_examples_as_npz(digits_run, tmp_path):
    digits = load_digits()
    np.savez(tmp_path / "new.npz", x=digits.images[:20])
    header = ",".join(f"p{i}" for i in range(64))
    rows = "\n".join(",".join(str(v) for v in row) for row in digits.data[:20])
    (tmp_path / "new.csv").write_text(header + "\n" + rows + "\n")
    _, from_npz, _ = predict(digits_run, tmp_path / "new.npz")
    code, from_csv, output = predict(digits_run, tmp_path / "new.csv")
    assert code == 0, output
    assert [r["class"] for r in from_csv] == [r["class"] for r in from_npz]
    assert from_csv[0]["input"].endswith("new.csv:2")  # the line number in the file


def test_regression_runs_predict_values(tmp_path):
    run = train(CONFIGS / "diabetes_regression.yaml", tmp_path, "train.epochs=2")
    np.savez(tmp_path / "patients.npz", x=load_diabetes().data[:5])
    code, lines, output = predict(run, tmp_path / "patients.npz")
    assert code == 0, output
    assert len(lines) == 5 and all(isinstance(line["value"], float) for line in lines)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.npz", "no such file"),
        (lambda d: (d / "notes.doc").write_text("x") and d / "notes.doc", "unknown input type"),
        (lambda d: np.savez(d / "wide.npz", x=np.zeros((3, 65))) or d / "wide.npz", "64"),
        (lambda d: (d / "t.txt").write_text("hello") and d / "t.txt", "text_dir"),
    ],
    ids=["missing", "unknown-type", "wrong-width", "text-for-an-image-model"],
)
def test_bad_inputs_exit_2_with_a_message(digits_run, tmp_path, make, message):
    code, lines, output = predict(digits_run, make(tmp_path))
    assert code == 2 and not lines
    assert message in output


def test_not_a_run_directory_exits_2(tmp_path):
    code, _, output = predict(tmp_path, tmp_path / "x.npz")
    assert code == 2 and "not a run directory" in output


def test_a_failed_run_says_it_failed(tmp_path):
    """A run whose loss became NaN: its summary.json says status failed (and why)."""
    args = ["train", str(CONFIGS / "diabetes_regression.yaml"), "--set", f"output.dir={tmp_path}"]
    for override in ("optimizer={name: sgd, learning_rate: 100}", "data.normalize=false"):
        args += ["--set", override]
    assert CliRunner().invoke(app, args).exit_code == 1
    (run,) = [p.parent for p in tmp_path.rglob("summary.json")]
    np.savez(tmp_path / "patients.npz", x=load_diabetes().data[:5])
    code, lines, output = predict(run, tmp_path / "patients.npz")
    assert code == 2 and not lines
    text = " ".join(output.split())
    assert "training failed, so the run has no model to use" in text and "NaN" in text


# === Runs trained on files (written here) =====================================


def train_config(tmp: Path, config: dict) -> Path:
    import yaml

    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump({"seed": 1, **config}, sort_keys=False))
    return train(path, tmp)


def write_csv(path: Path, header: list[str], rows, *, bom: bool = False, blank: bool = False):
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    text = ("\n\n" if blank else "\n").join(lines) + "\n"  # blank: an empty line between rows
    path.write_text(text, encoding="utf-8-sig" if bom else "utf-8")
    return path


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory) -> Path:
    """Trained on columns a, b (y depends on a only: swapping a and b changes outputs)."""
    tmp = tmp_path_factory.mktemp("csv")
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=120), rng.normal(10, 5, size=120)
    write_csv(tmp / "train.csv", ["a", "b", "y"], zip(a, b, (a > 0).astype(int), strict=True))
    config = {
        "name": "columns",
        "data": {"source": "csv", "path": str(tmp / "train.csv"), "target": "y"},
        "model": {"type": "mlp", "dense": [8]},
        "train": {"epochs": 2},
    }
    return train_config(tmp, config)


CSV_ROWS = [(1.5, 3.0), (-2.0, 20.0), (0.3, -4.0)]  # (a, b)


def test_csv_columns_are_read_by_name_in_the_training_order(csv_run, tmp_path):
    summary = json.loads((csv_run / "summary.json").read_text())
    assert summary["data"]["spec"]["feature_names"] == ["a", "b"]
    ordered = write_csv(tmp_path / "ab.csv", ["a", "b"], CSV_ROWS)
    swapped = write_csv(tmp_path / "ba.csv", ["y", "b", "a"], [(0, b, a) for a, b in CSV_ROWS])
    code, by_order, output = predict(csv_run, ordered)
    assert code == 0, output
    code, by_name, output = predict(csv_run, swapped)
    assert code == 0, output
    assert [r["probabilities"] for r in by_name] == [r["probabilities"] for r in by_order]


def test_csv_with_a_bom_and_blank_lines_reads_as_in_training(csv_run, tmp_path):
    plain = write_csv(tmp_path / "plain.csv", ["a", "b"], CSV_ROWS)
    odd = write_csv(tmp_path / "odd.csv", ["a", "b"], CSV_ROWS, bom=True, blank=True)
    _, expected, _ = predict(csv_run, plain)
    code, lines, output = predict(csv_run, odd)
    assert code == 0, output
    assert [r["probabilities"] for r in lines] == [r["probabilities"] for r in expected]
    assert [r["input"].rsplit(":", 1)[1] for r in lines] == ["3", "5", "7"]  # file lines


def test_an_older_csv_run_without_feature_names(csv_run, tmp_path):
    """No recorded order: only a config listing data.features says which column is which."""
    import shutil

    import yaml

    old = tmp_path / "old"
    shutil.copytree(csv_run, old)
    summary = json.loads((old / "summary.json").read_text())
    del summary["data"]["spec"]["feature_names"]
    (old / "summary.json").write_text(json.dumps(summary))
    swapped = write_csv(tmp_path / "ba.csv", ["b", "a"], [(b, a) for a, b in CSV_ROWS])
    code, lines, output = predict(old, swapped)
    assert code == 2 and not lines
    assert "column order" in output and "data.features" in output

    config = yaml.safe_load((old / "config.yaml").read_text())
    config["data"]["features"] = ["a", "b"]
    (old / "config.yaml").write_text(yaml.safe_dump(config))
    _, expected, _ = predict(csv_run, swapped)
    code, lines, output = predict(old, swapped)
    assert code == 0, output
    assert [r["probabilities"] for r in lines] == [r["probabilities"] for r in expected]


def write_png(path: Path, image: np.ndarray) -> Path:
    import tensorflow as tf

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_png(image).numpy())
    return path


@pytest.fixture(scope="module")
def image_rnn_run(tmp_path_factory) -> Path:
    """image_dir read by an RNN (rows as steps, (6, 18)) without normalization."""
    tmp = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name, level in (("dark", 40), ("light", 200)):
        for i in range(10):
            image = np.clip(rng.normal(level, 20, (6, 6, 3)), 0, 255).astype(np.uint8)
            write_png(tmp / "images" / name / f"{i}.png", image)
    config = {
        "name": "image-rnn",
        "data": {"source": "image_dir", "path": str(tmp / "images"), "image_size": [6, 6],
                 "normalize": False, "batch_size": 8},
        "model": {"type": "rnn", "units": [4]},
        "train": {"epochs": 1},
    }  # fmt: skip
    return train_config(tmp, config)


def test_images_for_an_image_dir_rnn_decode_to_the_training_images(image_rnn_run, tmp_path):
    image = np.random.default_rng(1).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    png = write_png(tmp_path / "new.png", image)
    np.savez(tmp_path / "same.npz", x=image[None])  # the decoded image itself, 0..255
    code, lines, output = predict(image_rnn_run, png, tmp_path / "same.npz")
    assert code == 0, output
    assert lines[0]["input"] == str(png)
    assert lines[0]["probabilities"] == lines[1]["probabilities"]


def test_results_follow_the_order_of_the_inputs(image_rnn_run, tmp_path):
    rng = np.random.default_rng(2)
    first = write_png(tmp_path / "first.png", rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
    last = write_png(tmp_path / "last.png", rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
    np.savez(tmp_path / "mid.npz", x=rng.integers(0, 256, (2, 6, 6, 3)))
    code, lines, output = predict(image_rnn_run, first, tmp_path / "mid.npz", last)
    assert code == 0, output
    inputs = [line["input"] for line in lines]
    assert inputs == [str(first), f"{tmp_path / 'mid.npz'}[0]", f"{tmp_path / 'mid.npz'}[1]",
                      str(last)]  # fmt: skip


def test_images_are_refused_by_a_run_trained_on_arrays(digits_run, tmp_path):
    """The builtin digits are 0..16 arrays: a decoded 0..255 image would be misread."""
    png = write_png(tmp_path / "digit.png", np.zeros((8, 8, 1), np.uint8))
    code, lines, output = predict(digits_run, png)
    assert code == 2 and not lines
    assert "only for runs trained on image files" in output and "'digits'" in output


def test_image_shape_comes_from_the_training_decoding():
    from bigmodel_cli.config import load as config_load
    from bigmodel_cli.inference.open_run import TrainedRun
    from bigmodel_cli.inference.predict import image_shape
    from bigmodel_cli.spec import DataSpec

    def shape_of(data: dict, model: dict):
        cfg = config_load.config_from_mapping({"name": "t", "data": data, "model": model})
        return image_shape(TrainedRun(None, cfg, DataSpec("classification", (1,)), None, None))

    rnn = {"type": "rnn", "units": [4]}
    folder = {"source": "image_dir", "path": "x", "image_size": [5, 7], "color_mode": "rgb"}
    assert shape_of(folder, rnn) == (5, 7, 3)  # not the model's (5, 21) rows
    records = {"source": "tfrecord", "paths": ["d.tfrecord"], "target": "y"}
    image = {"img": {"dtype": "image", "shape": [4, 4, 1]}, "y": {"dtype": "int64"}}
    floats = {"x": {"dtype": "float32", "shape": [4, 4, 1]}, "y": {"dtype": "int64"}}
    assert shape_of({**records, "feature_spec": image}, rnn) == (4, 4, 1)
    assert shape_of({**records, "feature_spec": floats}, rnn) is None
    assert shape_of({"source": "synthetic", "task": "image"}, rnn) is None


@pytest.fixture(scope="module")
def token_run(tmp_path_factory) -> Path:
    """An RNN reading 8 token ids from a vocabulary of 20."""
    tmp = tmp_path_factory.mktemp("tokens")
    config = {
        "name": "tokens",
        "data": {"source": "synthetic", "task": "sequence", "examples": 64,
                 "sequence_length": 8, "vocab_size": 20, "batch_size": 16},
        "model": {"type": "rnn", "units": [4], "embedding_dim": 4},
        "train": {"epochs": 1},
    }  # fmt: skip
    return train_config(tmp, config)


def test_token_ids_in_range_are_predicted(token_run, tmp_path):
    ids = np.arange(16).reshape(2, 8) % 20
    np.savez(tmp_path / "ids.npz", x=ids)
    write_csv(tmp_path / "ids.csv", [f"t{i}" for i in range(8)], ids.astype(float))
    code, lines, output = predict(token_run, tmp_path / "ids.npz", tmp_path / "ids.csv")
    assert code == 0, output
    assert [r["probabilities"] for r in lines[:2]] == [r["probabilities"] for r in lines[2:]]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ([1, 2, 3], "has 3 values; the model takes 8"),
        ([1, 2, 3, 4, 5, 6, 7, 20], "token id 20 (value 8 of the example) is out of range"),
        ([-1, 2, 3, 4, 5, 6, 7, 8], "token id -1"),
        ([1.5, 2, 3, 4, 5, 6, 7, 8], "whole numbers; value 1 of the example is 1.5"),
    ],
    ids=["width", "too-large", "negative", "fraction"],
)
def test_bad_token_ids_exit_2_naming_the_file(token_run, tmp_path, row, message):
    bad = write_csv(tmp_path / "bad.csv", [f"t{i}" for i in range(len(row))], [row])
    np.savez(tmp_path / "bad.npz", x=np.asarray([row]))
    for path in (bad, tmp_path / "bad.npz"):
        code, lines, output = predict(token_run, path)
        assert code == 2 and not lines, output
        assert path.name in output and message in output, output


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: np.save(d / "a.npy", np.zeros((2, 64))) or (d / "a.npy").rename(d / "a.npz"),
         "a single .npy array"),
        (lambda d: np.savez(d / "s.npz", x=np.float32(3)) or d / "s.npz", "x is a single value"),
        (lambda d: (d / "sub").mkdir() or d / "sub", "is a directory"),
    ],
    ids=["npy-renamed", "scalar-x", "directory"],
)  # fmt: skip
def test_unreadable_inputs_exit_2_with_a_message(digits_run, tmp_path, make, message):
    code, lines, output = predict(digits_run, make(tmp_path))
    assert code == 2 and not lines
    assert message in output


def test_text_files_drop_a_bom_as_training_does(tmp_path):
    from bigmodel_cli.config import load as config_load
    from bigmodel_cli.data.sources.text_dir import learn_vocabulary
    from bigmodel_cli.inference.open_run import TrainedRun
    from bigmodel_cli.inference.predict import read_inputs
    from bigmodel_cli.spec import DataSpec

    data = {"source": "text_dir", "path": "x", "sequence_length": 12, "tokenizer": "character"}
    model = {"type": "rnn", "units": [4], "embedding_dim": 4}
    cfg = config_load.config_from_mapping({"name": "t", "data": data, "model": model})
    vocabulary = learn_vocabulary(["hello world"], cfg)
    spec = DataSpec("classification", (12,), "int32", 2, vocab_size=vocabulary.size)
    trained = TrainedRun(None, cfg, spec, None, vocabulary.to_json())
    (tmp_path / "bom.txt").write_text("hello", encoding="utf-8-sig")
    (tmp_path / "plain.txt").write_text("hello", encoding="utf-8")
    chunks = read_inputs(trained, [tmp_path / "bom.txt", tmp_path / "plain.txt"])
    with_bom, plain = np.concatenate([x for x, _ in chunks])
    np.testing.assert_array_equal(with_bom, plain)

"""`bigmodel export` on a digits CNN: the SavedModel answers as `bigmodel predict` does
(from a process that never imports bigmodel), TFLite files as LiteRT runs them, int8
small and as accurate, export.json, --max-metric-drop, and every bad input exits 2."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits
from typer.testing import CliRunner

from bigmodel_cli.cli import app
from tests.helpers import CONFIGS, no_traceback, run_dir_of, train_into

pytestmark = pytest.mark.slow  # the module trains a CNN (a few seconds) for its fixtures


def bigmodel(*args) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert no_traceback(result.output), result.output
    return result.exit_code, result.stdout, result.stderr


def export(run: Path, *args) -> dict:
    code, stdout, stderr = bigmodel("export", run, *args, "--json")
    assert code == 0, stderr
    return json.loads(stdout)


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory) -> Path:
    """The shipped digits CNN, 15 epochs (about 97% test accuracy)."""
    tmp = tmp_path_factory.mktemp("cnn")
    return run_dir_of(
        train_into(CliRunner(), CONFIGS / "digits_cnn.yaml", tmp, "--set", "train.epochs=15")
    )


@pytest.fixture(scope="module")
def digits_npz(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """Raw digits (pixels 0..16, as trained) in the model's layout, and their labels."""
    digits = load_digits()
    x = digits.images[..., None].astype(np.float32)  # (n, 8, 8, 1)
    path = tmp_path_factory.mktemp("inputs") / "digits.npz"
    np.savez(path, x=x)
    return path, x, digits.target


@pytest.fixture(scope="module")
def predicted(cnn_run, digits_npz) -> np.ndarray:
    """`bigmodel predict`'s probabilities for every digit."""
    code, stdout, stderr = bigmodel("predict", cnn_run, digits_npz[0])
    assert code == 0, stderr
    lines = [json.loads(line) for line in stdout.splitlines()]
    return np.array([[line["probabilities"][str(c)] for c in range(10)] for line in lines])


@pytest.fixture(scope="module")
def exports(cnn_run) -> dict[str, dict]:
    """The CNN exported in every form (each a --json result)."""
    made = {"savedmodel": export(cnn_run, "--format", "savedmodel")}
    for quantize in ("none", "float16", "int8"):
        made[quantize] = export(cnn_run, "--format", "tflite", "--quantize", quantize)
    made["dynamic"] = export(
        cnn_run, "--format", "tflite", "--quantize", "dynamic", "--max-metric-drop", "0.05"
    )
    return made


FRESH_PROCESS = """
import json, sys
import numpy as np
import tensorflow as tf

loaded = tf.saved_model.load(sys.argv[1])
serve = loaded.signatures["serving_default"]
x = np.load(sys.argv[2])["x"]
out = serve(inputs=tf.constant(x))
np.save(sys.argv[3], out["probabilities"].numpy())
print(json.dumps({"bigmodel": sorted(m for m in sys.modules if m.startswith("bigmodel")),
                  "outputs": sorted(out)}))
"""


def test_savedmodel_answers_as_predict_in_a_process_without_bigmodel(
    exports, digits_npz, predicted, tmp_path
):
    saved = Path(exports["savedmodel"]["path"])
    assert (saved / "saved_model.pb").is_file()
    script = tmp_path / "serve.py"
    script.write_text(textwrap.dedent(FRESH_PROCESS))
    result = subprocess.run(
        [sys.executable, str(script), str(saved), str(digits_npz[0]), str(tmp_path / "p.npy")],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the repository: bigmodel_cli is not importable by accident
        env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"bigmodel": [], "outputs": ["probabilities"]}
    probabilities = np.load(tmp_path / "p.npy")
    assert probabilities.shape == predicted.shape == (1797, 10)
    # predict rounds to 6 decimals (at most 5e-7 of the difference).
    np.testing.assert_allclose(probabilities, predicted, atol=1e-5, rtol=0)


def _litert(path: str, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path).get_signature_runner("serving_default")
    return runner(inputs=x)["probabilities"]


def test_float_tflite_answers_as_predict(exports, digits_npz, predicted):
    made = exports["none"]
    assert made["file"] == "export/model.tflite" and made["quantize"] == "none"
    np.testing.assert_allclose(_litert(made["path"], digits_npz[1]), predicted, atol=1e-4, rtol=0)


def test_int8_tflite_is_as_accurate_at_under_30_percent_of_the_float_size(
    exports, digits_npz, predicted
):
    made, float_file = exports["int8"], exports["none"]
    assert made["file"] == "export/model_int8.tflite" and made["quantize"] == "int8"
    assert made["note"] is None and made["calibration_examples"] == 200
    size = Path(made["path"]).stat().st_size
    assert size == made["bytes"]
    assert size <= 0.30 * Path(float_file["path"]).stat().st_size
    _, x, labels = digits_npz
    int8_accuracy = (_litert(made["path"], x).argmax(1) == labels).mean()
    keras_accuracy = (predicted.argmax(1) == labels).mean()
    assert abs(int8_accuracy - keras_accuracy) <= 0.01, (int8_accuracy, keras_accuracy)
    # And on the held-out split, as export.json scored it.
    metrics = made["metrics"]
    assert abs(metrics["exported"]["accuracy"] - metrics["keras"]["accuracy"]) <= 0.01


def test_each_quantization_is_smaller_and_scored(exports):
    sizes = {name: made["bytes"] for name, made in exports.items()}
    assert sizes["dynamic"] < sizes["float16"] < sizes["none"]
    for name in ("dynamic", "float16"):
        assert exports[name]["quantize"] == name
        assert exports[name]["file"] == f"export/model_{name}.tflite"


def test_export_json_records_every_file_next_to_the_keras_model(cnn_run, exports):
    saved = json.loads((cnn_run / "export" / "export.json").read_text())["exports"]
    assert sorted(saved) == sorted(
        ["saved_model", "model.tflite", "model_dynamic.tflite", "model_float16.tflite",
         "model_int8.tflite"]
    )  # fmt: skip
    entry = saved["model_int8.tflite"]
    assert entry == exports["int8"]
    summary = json.loads((cnn_run / "summary.json").read_text())
    keras = entry["metrics"]["keras"]
    # The Keras column is the trained model's test score (summary.json's, same split).
    assert entry["split"] == "test" and entry["examples"] == 180
    assert keras["accuracy"] == pytest.approx(summary["test"]["accuracy"], abs=1e-6)
    assert keras["loss"] == pytest.approx(summary["test"]["loss"], abs=1e-4)  # data term
    difference = entry["metrics"]["difference"]
    exported = entry["metrics"]["exported"]
    for name in keras:
        assert difference[name] == pytest.approx(exported[name] - keras[name])
    assert entry["bytes"] > 0 and entry["examples_per_second"]["exported"] > 0
    assert entry["examples_per_second"]["keras"] > 0
    assert entry["inputs"] == {"name": "inputs", "dtype": "float32", "shape": [None, 8, 8, 1]}
    assert entry["outputs"] == ["probabilities"]
    assert entry["normalization"] == "inside the exported graph"
    assert entry["checked_metric"] == "accuracy" and entry["passed"] is True
    # The SavedModel and the float file score as the Keras model does.
    for name in ("saved_model", "model.tflite"):
        assert saved[name]["metrics"]["exported"]["accuracy"] == keras["accuracy"]
        assert abs(saved[name]["metrics"]["difference"]["loss"]) < 1e-5


def test_max_metric_drop_passes_a_file_within_it(exports):
    made = exports["dynamic"]
    assert made["max_metric_drop"] == 0.05 and made["passed"] is True
    assert made["metric_drop"] <= 0.05
    # (A file scoring worse than allowed exits 1: tests/export/test_model_types.py.)

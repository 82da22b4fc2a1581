"""`bigmodel export` on every model.type and task: a regression MLP, a binary classifier
with logits, an LSTM, a Transformer classifier and a Transformer language model. Each
is trained for an epoch or two on small data; what is checked is that the exported
files answer as the Keras model does, not how well the models learned."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bigmodel_cli.cli import app
from tests.helpers import CONFIGS, no_traceback, run_dir_of, train_into

pytestmark = pytest.mark.slow  # each test trains a small model


def train(tmp: Path, config: str, *overrides: str) -> Path:
    args = [arg for override in overrides for arg in ("--set", override)]
    return run_dir_of(train_into(CliRunner(), CONFIGS / config, tmp, *args))


def export(run: Path, *args) -> tuple[int, dict, str]:
    result = CliRunner().invoke(app, ["export", str(run), *args, "--json"])
    assert no_traceback(result.output), result.output
    body = json.loads(result.stdout) if result.stdout.strip() else {}
    return result.exit_code, body, result.stderr


def assert_same_answers(made: dict, tolerance: float = 1e-4) -> None:
    """The exported file scores as the Keras model on the test split, metric by metric."""
    for name, difference in made["metrics"]["difference"].items():
        keras = made["metrics"]["keras"][name]
        assert abs(difference) <= tolerance * max(1.0, abs(keras)), (name, made["metrics"])


def test_a_regression_mlp_returns_values(tmp_path):
    run = train(tmp_path, "diabetes_regression.yaml", "train.epochs=2")
    code, made, stderr = export(run, "--format", "tflite")
    assert code == 0, stderr
    assert made["outputs"] == ["value"] and made["checked_metric"] == "mae"
    assert made["inputs"]["shape"] == [None, 10]  # raw features, normalized inside
    assert_same_answers(made)


def test_a_binary_classifier_with_logits_keeps_small_features_in_int8(tmp_path):
    """breast_cancer's features span 0.001..4000: one int8 scale for all raw inputs
    would zero the small ones, so int8 files normalize in float32 first."""
    run = train(
        tmp_path, "digits_mlp.yaml", "data.source=breast_cancer", "metrics=[accuracy]",
        "loss={name: binary_crossentropy, from_logits: true}", "train.epochs=5",
    )  # fmt: skip
    code, made, stderr = export(run, "--format", "tflite", "--quantize", "int8")
    assert code == 0, stderr
    assert made["outputs"] == ["probabilities", "logits"]
    assert made["quantize"] == "int8"
    metrics = made["metrics"]
    assert abs(metrics["difference"]["accuracy"]) <= 0.02, metrics  # one of 57 examples
    assert metrics["exported"]["accuracy"] > 0.85


def test_an_lstm_exports_one_example_per_call_to_tflite(tmp_path):
    run = train(
        tmp_path, "rnn_sequences.yaml", "data.examples=200", "data.sequence_length=12",
        "train.epochs=1", "model.units=[8]", "model.bidirectional=false",
    )  # fmt: skip
    code, made, stderr = export(run, "--format", "tflite")
    assert code == 0, stderr
    assert made["inputs"]["shape"] == [None, 12, 1]
    assert made["batch"] == 1 and "reset_all_variables()" in made["note"]
    assert "1 example per call" in " ".join(stderr.split())
    assert_same_answers(made)  # every example from the zero state, as in Keras


@pytest.mark.heavy  # 10 s of Transformer tracing: `make test-heavy`; the LM below is a transformer
def test_a_transformer_classifier_exports_to_tflite(tmp_path):
    run = train(
        tmp_path, "transformer_classifier.yaml", "data.examples=200", "train.epochs=1",
        "data.sequence_length=16",
        "model.d_model=16", "model.num_layers=1", "model.ff_dim=16",
    )  # fmt: skip
    code, made, stderr = export(run, "--format", "tflite")  # (SavedModel: the LM's test)
    assert code == 0, stderr
    assert made["inputs"] == {"name": "inputs", "dtype": "int32", "shape": [None, 16]}
    assert_same_answers(made)


@pytest.fixture(scope="module")
def language_model(tmp_path_factory) -> Path:
    return train(
        tmp_path_factory.mktemp("lm"), "transformer_lm.yaml", "data.examples=200",
        "train.epochs=2", "model.d_model=32", "model.num_layers=1", "metrics=[perplexity]",
    )  # fmt: skip


def test_a_language_model_exports_next_token_logits(language_model):
    for fmt in ("savedmodel", "tflite"):
        code, made, stderr = export(language_model, "--format", fmt)
        assert code == 0, stderr
        assert made["outputs"] == ["logits"]
        assert made["inputs"] == {"name": "inputs", "dtype": "int32", "shape": [None, 64]}
        assert_same_answers(made)
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=made["path"]).get_signature_runner("serving_default")
    tokens = np.arange(128, dtype=np.int32).reshape(2, 64) % 64
    assert runner(inputs=tokens)["logits"].shape == (2, 64, 64)  # every position's scores


def test_max_metric_drop_exits_1_when_the_file_scores_worse(language_model):
    """int8 noise raises this model's perplexity (lower is better): with no drop allowed,
    the export fails, and the file and its scores are still recorded."""
    code, made, stderr = export(
        language_model, "--format", "tflite", "--quantize", "int8", "--max-metric-drop", "0"
    )
    assert made["checked_metric"] == "perplexity"
    assert made["metric_drop"] > 0, made["metrics"]
    assert code == 1
    assert made["passed"] is False and Path(made["path"]).is_file()
    text = " ".join(stderr.split())
    assert "export failed" in text and "perplexity is" in text and "--max-metric-drop 0" in text
    recorded = json.loads((language_model / "export" / "export.json").read_text())
    assert recorded["exports"]["model_int8.tflite"]["passed"] is False

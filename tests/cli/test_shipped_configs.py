"""The shipped configs learn what they promise, and `smoke` trains every one of them:
each test here trains whole configs, so they sit in a file of their own, which the
test processes (pytest-xdist, one file each) can run beside the rest."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from bigmodel_cli.cli import app
from tests.helpers import CONFIGS, run_dir_of
from tests.helpers import train_into as train


@pytest.mark.slow
def test_digits_cnn_reaches_99_percent(runner, tmp_path):
    """The `make run` promise: the default config gets >= 99% test accuracy."""
    run = run_dir_of(train(runner, CONFIGS / "digits_cnn.yaml", tmp_path))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["accuracy"] >= 0.99, summary["test"]
    report = json.loads(runner.invoke(app, ["evaluate", str(run), "--json"]).stdout)
    assert report["metrics"]["accuracy"] == pytest.approx(summary["test"]["accuracy"], abs=1e-6)


@pytest.mark.slow
def test_diabetes_regression_beats_the_mean(runner, tmp_path):
    run = run_dir_of(train(runner, CONFIGS / "diabetes_regression.yaml", tmp_path))
    summary = json.loads((run / "summary.json").read_text())
    # Predicting the mean of the diabetes targets gives MAE ~ 65; a fitted model ~ 45.
    assert summary["test"]["mae"] < 55, summary["test"]


@pytest.mark.slow
def test_linear_regression_learns_y_equals_2x(runner, tmp_path):
    import tf_keras as keras

    run = run_dir_of(train(runner, CONFIGS / "examples" / "linear_regression_y_2x.yaml", tmp_path))
    model = keras.models.load_model(run / "model.keras", compile=False, safe_mode=True)
    kernel, bias = model.layers[-1].get_weights()
    assert kernel.item() == pytest.approx(2.0, abs=0.01)
    assert bias.item() == pytest.approx(0.0, abs=0.01)
    assert np.allclose(model.predict(np.array([[1.5]]), verbose=0), 3.0, atol=0.02)


@pytest.mark.slow
@pytest.mark.parametrize(
    "config,metric,floor,epochs",
    [
        ("rnn_sequences.yaml", "accuracy", 0.6, 5),  # 4 classes: chance 0.25
        ("transformer_classifier.yaml", "accuracy", 0.6, 3),  # 4 classes: chance 0.25
        ("transformer_lm.yaml", "accuracy", 0.2, 3),  # 64 tokens: chance 0.016
    ],
)
def test_each_architecture_learns(runner, tmp_path, config, metric, floor, epochs):
    """A few of the config's epochs already beat chance by far (measured: 1.0, 1.0 and
    0.54 after these epochs; the configs train 15, 10 and 8)."""
    run = run_dir_of(train(runner, CONFIGS / config, tmp_path, "--set", f"train.epochs={epochs}"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"][metric] > floor, summary["test"]


@pytest.mark.slow
def test_smoke_runs_every_shipped_config(runner):
    result = runner.invoke(app, ["smoke", str(CONFIGS)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith(("ok", "FAIL"))]
    assert len(lines) == len(list(CONFIGS.rglob("*.yaml")))
    assert all(line.startswith("ok") for line in lines), result.stdout
    # Smoke shrinks the data, never the model: each config trains the model `validate`
    # builds from all of its data.
    for line in lines:
        path, params = re.fullmatch(r"ok +(\S+) .*, ([\d,]+) params", line).groups()
        built = runner.invoke(app, ["validate", path, "--json"])
        assert json.loads(built.stdout)["params"] == int(params.replace(",", "")), line

"""Every bad `bigmodel export` input exits 2 with one line per problem, naming the option
or the run directory, without a traceback and before TensorFlow does any work."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bigmodel_cli.cli import app
from tests.helpers import CONFIGS, no_traceback


def export(*args) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["export", *map(str, args)])
    assert no_traceback(result.output), result.output
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture
def unfinished(tmp_path) -> Path:
    """A run directory as training leaves it before summary.json: config.yaml, no model."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text((CONFIGS / "digits_mlp.yaml").read_text())
    return run


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--format", "onnx"], ["--format 'onnx': unknown value", "savedmodel, tflite"]),
        (["--format", "tflit"], ["Did you mean 'tflite'?"]),
        (["--format", "tflite", "--quantize", "int4"], ["--quantize 'int4': unknown value"]),
        (
            ["--format", "savedmodel", "--quantize", "int8"],
            ["--quantize int8: quantization is for --format tflite"],
        ),
        (
            ["--format", "tflite", "--quantize", "int8", "--calibration-examples", "0"],
            ["--calibration-examples 0: give a number of training examples of at least 1"],
        ),
        (
            ["--format", "tflite", "--calibration-examples", "50"],
            ["--calibration-examples 50: only --quantize int8 is calibrated"],
        ),
        (
            ["--format", "tflite", "--max-metric-drop", "-1"],
            ["--max-metric-drop -1.0: give how much worse"],
        ),
        (  # every problem at once
            ["--format", "onnx", "--quantize", "int4"],
            ["--format 'onnx'", "--quantize 'int4'"],
        ),
    ],
    ids=[
        "unknown-format", "format-typo", "unknown-quantize", "quantized-savedmodel",
        "no-calibration-examples", "calibration-without-int8", "negative-drop", "all-at-once",
    ],
)  # fmt: skip
def test_bad_options_exit_2_naming_the_option(unfinished, args, expected):
    code, output = export(unfinished, *args)
    assert code == 2, output
    for phrase in expected:
        assert phrase in output


def test_not_a_run_directory_exits_2(tmp_path):
    code, output = export(tmp_path, "--format", "savedmodel")
    assert code == 2 and "not a run directory" in output and str(tmp_path) in output


def test_an_unfinished_run_exits_2(unfinished):
    code, output = export(unfinished, "--format", "tflite")
    assert code == 2
    assert "the run has not finished (no summary.json)" in output
    assert f"bigmodel train --resume {unfinished}" in output
    assert not (unfinished / "export").exists()


def test_a_failed_run_exits_2(unfinished):
    (unfinished / "summary.json").write_text('{"status": "failed", "error": "loss became NaN"}')
    code, output = export(unfinished, "--format", "savedmodel")
    assert code == 2
    assert "training failed, so the run has no model to use" in output and "NaN" in output


def test_format_is_required(unfinished):
    code, output = export(unfinished)
    assert code == 2 and "--format" in output

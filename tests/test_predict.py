"""`bigmodel predict`: new examples from npz, csv and image files, one JSON line each."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import CONFIGS, no_traceback
from sklearn.datasets import load_diabetes, load_digits
from typer.testing import CliRunner

from bigmodel_cli.cli import app


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

"""End to end through the CLI: train, evaluate, validate, smoke, on real (small) runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from bigmodel_cli.cli import app
from tests.helpers import CONFIGS, no_traceback, run_dir_of
from tests.helpers import train_into as train

QUICK = ["--set", "train.epochs=3"]


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory) -> Path:
    from typer.testing import CliRunner

    tmp = tmp_path_factory.mktemp("mlp")
    result = train(CliRunner(), CONFIGS / "digits_mlp.yaml", tmp, *QUICK)
    return run_dir_of(result)


def test_train_writes_the_whole_run_directory(mlp_run: Path):
    for name in (
        "config.yaml",
        "environment.json",
        "metrics.csv",
        "model.keras",
        "summary.json",
        "checkpoints/best.keras",
        "checkpoints/last.keras",
    ):
        assert (mlp_run / name).is_file(), name
    assert list((mlp_run / "tensorboard").rglob("events.out.tfevents.*"))
    summary = json.loads((mlp_run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_run"] == 3
    assert summary["test"]["accuracy"] > 0.8  # chance is 0.1
    assert summary["params"] == 64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10
    assert summary["examples_per_second"] > 0
    env = json.loads((mlp_run / "environment.json").read_text())
    assert env["replicas"] == 1 and env["strategy"] and env["tensorflow"].startswith("2.21")


def test_metrics_csv_has_one_row_per_epoch(mlp_run: Path):
    with open(mlp_run / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    for column in (
        "loss",
        "accuracy",
        "f1",
        "val_loss",
        "val_accuracy",
        "lr",
        "seconds",
        "examples_per_second",
    ):
        assert column in rows[0], column
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    assert float(rows[0]["lr"]) == pytest.approx(1e-3)


def test_resolved_config_reloads_to_the_same_config(mlp_run: Path):
    from bigmodel_cli.config.load import load_config

    reloaded = load_config(mlp_run / "config.yaml")
    assert reloaded.train.epochs == 3
    assert reloaded == load_config(
        CONFIGS / "digits_mlp.yaml", ["train.epochs=3", f"output.dir={reloaded.output.dir}"]
    )


def test_evaluate_reports_the_summary_test_metrics(runner, mlp_run: Path):
    result = runner.invoke(app, ["evaluate", str(mlp_run), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    summary = json.loads((mlp_run / "summary.json").read_text())
    assert report["split"] == "test"
    assert report["metrics"]["accuracy"] == pytest.approx(summary["test"]["accuracy"], abs=1e-6)
    assert report["examples"] == sum(sum(row) for row in report["confusion_matrix"])
    assert set(report["per_class"]) == {str(d) for d in range(10)}
    assert json.loads((mlp_run / "eval.json").read_text()) == report


def test_evaluate_prints_tables_and_other_splits(runner, mlp_run: Path):
    result = runner.invoke(app, ["evaluate", str(mlp_run), "--split", "validation"])
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.stdout and "confusion matrix" in result.stdout
    bad = runner.invoke(app, ["evaluate", str(mlp_run), "--split", "dev"])
    assert bad.exit_code == 2 and "--split" in bad.stderr


def test_evaluate_on_a_folder_that_is_not_a_run(runner, tmp_path):
    result = runner.invoke(app, ["evaluate", str(tmp_path)])
    assert result.exit_code == 2 and "not a run directory" in result.stderr


def test_train_json_prints_only_the_summary(runner, tmp_path):
    result = train(
        runner, CONFIGS / "digits_mlp.yaml", tmp_path, "--json", "--set", "train.epochs=1"
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    on_disk = json.loads((Path(summary["run_dir"]) / "summary.json").read_text())
    assert summary == on_disk


def test_runs_never_overwrite(runner, tmp_path, mlp_run: Path):
    first = run_dir_of(
        train(runner, CONFIGS / "digits_mlp.yaml", tmp_path, "--set", "train.epochs=1")
    )
    second = run_dir_of(
        train(runner, CONFIGS / "digits_mlp.yaml", tmp_path, "--set", "train.epochs=1")
    )
    assert first != second and first.parent == second.parent
    taken = train(runner, CONFIGS / "digits_mlp.yaml", tmp_path, "--run-dir", str(first))
    assert taken.exit_code == 2 and "not empty" in taken.stderr


def test_resuming_a_finished_run_changes_nothing(runner, mlp_run: Path):
    before = {p: p.stat().st_mtime_ns for p in mlp_run.rglob("*") if p.is_file()}
    result = runner.invoke(app, ["train", "--resume", str(mlp_run)])
    assert result.exit_code == 0, result.output
    assert "already finished" in result.stderr
    assert {p: p.stat().st_mtime_ns for p in mlp_run.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize(
    "override,key",
    [
        ("optimizer.name=adamm", "optimizer.name"),
        ("model.dense=[-3]", "model.dense.0"),
        ("data.path=x.csv", "data.path"),
        ("train.early_stopping.monitor=val_f2", "train.early_stopping.monitor"),
    ],
)
def test_bad_input_exits_2_and_creates_no_run(runner, tmp_path, override, key):
    result = train(runner, CONFIGS / "digits_mlp.yaml", tmp_path, "--set", override)
    assert result.exit_code == 2, result.output
    assert key in result.stderr
    assert not (tmp_path / "runs").exists()


def test_missing_data_file_exits_2_and_creates_no_run(runner, tmp_path, write_config):
    path = write_config(
        {
            "name": "csv",
            "data": {"source": "csv", "path": "missing.csv", "target": "y"},
            "model": {"type": "mlp"},
        }
    )
    result = runner.invoke(app, ["train", str(path)])
    assert result.exit_code == 2 and "missing.csv" in result.stderr
    assert no_traceback(result.output)
    assert not (tmp_path / "runs").exists()


def test_nan_loss_exits_1_with_advice_and_keeps_only_finite_checkpoints(runner, tmp_path):
    import numpy as np
    import tf_keras as keras

    result = train(
        runner,
        CONFIGS / "diabetes_regression.yaml",
        tmp_path,
        "--set",
        "optimizer={name: sgd, learning_rate: 100}",
        "--set",
        "data.normalize=false",
        "--set",
        "train.epochs=5",
    )
    assert result.exit_code == 1, result.output
    assert "NaN" in result.stderr and "learning_rate" in result.stderr
    checkpoints = list((tmp_path / "runs").rglob("*.keras"))
    for path in checkpoints:
        weights = keras.models.load_model(path, compile=False, safe_mode=True).get_weights()
        assert all(np.isfinite(w).all() for w in weights), path


def test_regression_run_evaluates(runner, tmp_path):
    run = run_dir_of(
        train(runner, CONFIGS / "diabetes_regression.yaml", tmp_path, "--set", "train.epochs=2")
    )
    result = runner.invoke(app, ["evaluate", str(run), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    summary = json.loads((run / "summary.json").read_text())
    assert report["metrics"]["mae"] == pytest.approx(summary["test"]["mae"], rel=1e-6)
    assert "per_class" not in report


def test_sequential_names_keras_cannot_resolve_exit_2(runner, tmp_path, write_config):
    path = write_config(
        {
            "name": "seq",
            "data": {"source": "iris"},
            "model": {
                "type": "sequential",
                "layers": [
                    {"type": "Dense", "units": 8, "kernel_regularizer": "l9"},
                    {"type": "Dense", "units": 3, "activation": "softmaxx"},
                ],
            },
        }
    )
    result = runner.invoke(app, ["train", str(path)])
    assert result.exit_code == 2, result.output
    assert "model.layers.0: Dense: kernel_regularizer" in result.stderr
    assert "model.layers.1: Dense: activation" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_validate_builds_and_reports_size(runner):
    result = runner.invoke(
        app, ["validate", str(CONFIGS / "examples" / "dense_sgd_100_features.yaml"), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["params"] == report["trainable_params"] == 21_834
    assert report["input_shape"] == [100] and report["output_shape"] == [10]
    assert report["flops_per_example"] >= 2 * (100 * 128 + 128 * 64 + 64 * 10)


def test_validate_table(runner):
    result = runner.invoke(app, ["validate", str(CONFIGS / "digits_cnn.yaml")])
    assert result.exit_code == 0, result.output
    assert "Conv2D" in result.stdout and "FLOPs per example" in result.stdout


def test_smoke_reports_a_failing_config(runner, write_config, tmp_path):
    good = write_config(
        {"name": "good", "data": {"source": "iris"}, "model": {"type": "mlp"}}, "good.yaml"
    )
    write_config({"name": "bad", "model": {"type": "mlp"}, "optimizer": {"name": "x"}}, "bad.yaml")
    result = runner.invoke(app, ["smoke", str(good.parent)])
    assert result.exit_code == 1
    assert "FAIL" in result.stdout and "optimizer.name" in result.stdout
    assert "1 passed, 1 failed" in result.stdout

"""Run directories written by earlier versions of bigmodel still evaluate, predict and
resume. Each fixture is a real, tiny run, interrupted by SIGTERM, committed as it was
written by bigmodel 0.1 (commit 2065634): `run-0.1-completed` finished;
`run-0.1-keras-backup` stopped by SIGTERM, its backup tf_keras's BackupAndRestore files
with a manifest of their digests, its callback state in checkpoints/state.json.
`run-0.2-completed` and `run-0.2-interrupted` were written by the flat layout before
bigmodel_cli became packages (commit 9d77bea): the same config, the second stopped by
SIGTERM at epoch 2, step 4 of 5, its backup bigmodel's own (manifest.json, the
interrupted epoch's metric totals in carry-9.npz, early stopping's best weights), with
`BIGMODEL_KILL_AT=backup_committed:8:TERM ... --set train.checkpoint.every_steps=1`.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bigmodel_cli.cli import app
from tests.helpers import (
    FIXTURES,  # noqa: E402
    no_traceback,
)

COMPLETED_RUNS = ["run-0.1-completed", "run-0.2-completed"]
INTERRUPTED_RUNS = ["run-0.1-keras-backup", "run-0.2-interrupted"]


def copy_of(name: str, tmp_path: Path) -> Path:
    copy = tmp_path / name
    shutil.copytree(FIXTURES / name, copy)
    return copy


@pytest.fixture(params=COMPLETED_RUNS + INTERRUPTED_RUNS)
def old_run(request, tmp_path) -> Path:
    return copy_of(request.param, tmp_path)


def test_an_old_run_evaluates(runner, old_run):
    result = runner.invoke(app, ["evaluate", str(old_run), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["examples"] > 0 and 0.0 <= report["metrics"]["accuracy"] <= 1.0


def predicts(runner, run: Path, tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    inputs = tmp_path / "digits.npz"
    np.savez(inputs, x=load_digits().data[:5].astype(np.float32))
    result = runner.invoke(app, ["predict", str(run), str(inputs)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 5 and all(len(line["probabilities"]) == 10 for line in lines)


@pytest.mark.parametrize("name", COMPLETED_RUNS)
def test_an_old_completed_run_predicts_and_is_not_trained_again(runner, tmp_path, name):
    run = copy_of(name, tmp_path)
    predicts(runner, run, tmp_path)
    again = runner.invoke(app, ["train", "--resume", str(run)])
    assert again.exit_code == 0 and "already finished" in again.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", INTERRUPTED_RUNS)
def test_an_old_interrupted_run_resumes_finishes_and_predicts(runner, tmp_path, name):
    old_run = copy_of(name, tmp_path)
    with open(old_run / "metrics.csv", newline="") as handle:
        done = len(list(csv.DictReader(handle)))
    result = runner.invoke(app, ["train", "--resume", str(old_run), "--json"])
    assert result.exit_code == 0, result.output
    assert no_traceback(result.output)
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed" and summary["resumed_from"] == str(old_run)
    with open(old_run / "metrics.csv", newline="") as handle:
        epochs = [int(row["epoch"]) for row in csv.DictReader(handle)]
    assert epochs == list(range(1, summary["epochs_requested"] + 1)) and len(epochs) >= done
    assert not (old_run / "checkpoints" / "backup").exists()
    assert not (old_run / "checkpoints" / "state.json").exists()
    predicts(runner, old_run, tmp_path)

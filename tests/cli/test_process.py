"""bigmodel as a real process: stdout purity, interrupt and resume."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import CONFIGS, forkserver

BIGMODEL = [sys.executable, "-m", "bigmodel_cli.cli"]


def run_bigmodel(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*BIGMODEL, *args], capture_output=True, text=True, timeout=600, **kw)


@pytest.mark.slow
def test_json_is_the_only_thing_on_stdout(tmp_path):
    """TensorFlow writes to the process's own stdout/stderr; only a subprocess sees that."""
    result = run_bigmodel(
        "train",
        str(CONFIGS / "digits_mlp.yaml"),
        "--json",
        "--set",
        "train.epochs=1",
        "--set",
        f"output.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)  # raises if anything else is there
    assert summary["status"] == "completed"
    assert "Traceback" not in result.stderr and "cuda" not in result.stderr.lower()


def rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_ctrl_c_saves_and_resume_continues(tmp_path):
    """SIGINT after epoch 2: exit 130 with the resume command; --resume finishes the run with
    each epoch once in metrics.csv and the best value carried over."""
    epochs = 8
    process = forkserver.start(
        "train",
        str(CONFIGS / "digits_mlp.yaml"),
        "--set",
        f"train.epochs={epochs}",
        "--set",
        "train.early_stopping=null",
        "--set",
        "train.steps_per_execution=1",
        "--set",
        f"output.dir={tmp_path}",
    )
    deadline = time.monotonic() + 300
    metrics = None
    while time.monotonic() < deadline and process.poll() is None:
        found = list(tmp_path.rglob("metrics.csv"))
        if found and len(rows(found[0])) >= 2:
            metrics = found[0]
            break
        time.sleep(0.05)
    assert metrics is not None, process.communicate()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    run = metrics.parent
    assert f"bigmodel train --resume {run}" in err
    done_before = len(rows(metrics))
    assert 2 <= done_before < epochs
    manifest = run / "checkpoints" / "backup" / "chief" / "manifest.json"
    state = json.loads(manifest.read_text())["state"]  # committed with the backup

    resumed = forkserver.run("train", "--resume", str(run), "--json")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert [int(r["epoch"]) for r in rows(metrics)] == list(range(1, epochs + 1))
    assert summary["epochs_run"] == epochs and summary["resumed_from"] == str(run)
    assert summary["best"]["value"] <= state["best"]["value"]  # never forgot the best so far
    val_losses = [float(r["val_loss"]) for r in rows(metrics)]
    assert summary["best"]["value"] == pytest.approx(min(val_losses), rel=1e-6)
    assert summary["test"]["accuracy"] > 0.8


def test_module_entry_point_help():
    result = run_bigmodel("--help", env={**os.environ, "PYTHONWARNINGS": "error"})
    assert result.returncode == 0 and "train" in result.stdout

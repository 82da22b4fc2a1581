"""A kill at any instant loses nothing: one run is stopped again and again, at every
stage (the run directory just made, each backup's write, manifest and commit, a model
file half-saved, between the last epoch and summary.json, a signal mid-epoch and during
validation), resumed each time, and must end exactly as the uninterrupted run does.

The stops are exact, not timed: `BIGMODEL_KILL_AT` (bigmodel_cli/faults.py) makes the
process signal itself at a named point. The run has every awkward property at once:
steps_per_execution 4 against a backup every 5 steps, dropout, and early stopping that
restores an earlier epoch than best.keras holds.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.helpers import forkserver, kill_env, no_traceback

CONFIG = {
    "name": "kill-test",
    "seed": 7,
    "data": {"source": "digits", "batch_size": 32},
    "model": {"type": "mlp", "dense": [64, 32], "dropout": 0.2},
    "optimizer": {"name": "adam", "learning_rate": 0.01},
    "train": {
        "epochs": 6,
        "steps_per_epoch": 12,
        "steps_per_execution": 4,
        "checkpoint": {"every_steps": 5},
        "deterministic": True,
        # min_delta: early stopping restores an earlier epoch than best.keras holds.
        "early_stopping": {"monitor": "val_loss", "patience": 1, "min_delta": 0.1},
    },
}
KILLED, TERM, INT = -9, 143, 130


def bigmodel(*args: str, kill_at: str | None = None, timeout: int = 300):
    return forkserver.run(*args, env=kill_env(kill_at), timeout=timeout)


def write_config(folder: Path) -> Path:
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "output": {"dir": str(folder / "runs")}}))
    return path


def the_run(folder: Path) -> Path | None:
    runs = sorted((folder / "runs").glob("*/*"))
    return runs[0] if runs else None


def manifest(run: Path) -> dict:
    path = run / "checkpoints" / "backup" / "chief" / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {}


def epochs_logged(run: Path) -> list[int]:
    with open(run / "metrics.csv", newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def final_weights(run: Path) -> list[np.ndarray]:
    import tf_keras as keras

    from bigmodel_cli.registry import custom_objects

    model = keras.models.load_model(run / "model.keras", compile=False,
                                    custom_objects=custom_objects())  # fmt: skip
    return model.get_weights()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[dict, Path]:
    folder = tmp_path_factory.mktemp("whole")
    result = bigmodel("train", str(write_config(folder)), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["stop_reason"] == "early_stopping"
    assert summary["final_weights_epoch"] < summary["best_epoch"] <= summary["epochs_run"]
    return summary, Path(summary["run_dir"])


def stop_once(config: Path, folder: Path, point: str, expected: int) -> Path | None:
    """Start (or resume) the run with a stop at `point`; check it stopped as asked."""
    run = the_run(folder)
    args = ["train", "--resume", str(run)] if run else ["train", str(config)]
    result = bigmodel(*args, kill_at=point)
    assert result.returncode == expected, (point, result.returncode, result.stderr[-3000:])
    assert no_traceback(result.stderr), result.stderr[-3000:]
    return the_run(folder)


@pytest.mark.slow
def test_a_run_killed_at_every_stage_ends_as_the_uninterrupted_run(tmp_path, uninterrupted):
    config = write_config(tmp_path)
    # Before the run directory exists: nothing is left behind to resume.
    assert stop_once(config, tmp_path, "before_run_dir", KILLED) is None

    stops = [
        ("run_dir_created", KILLED),
        ("backup_committed:+1", KILLED),  # mid-epoch, after step 8 of epoch 1
        ("backup_write:+1", KILLED),  # before the epoch-end backup's checkpoint
        ("backup_before_manifest:+1", KILLED),  # its files written, not committed
        ("backup_committed:+1", KILLED),
        ("saved_best", KILLED),  # best.keras written, not yet renamed into place
        ("saved_last", KILLED),
        ("train_batch_end:2:TERM", TERM),  # a scheduler's preemption mid-epoch
        ("validation_batch_end:1:TERM", TERM),  # ... during the validation pass
        ("train_batch_end:1:INT", INT),  # Ctrl-C
    ]
    for point, expected in stops:
        run = the_run(tmp_path)
        if run is not None and point.endswith(":+1"):
            point = point.replace("+1", str(manifest(run).get("sequence", 0) + 1))
        run = stop_once(config, tmp_path, point, expected)
        assert not (run / "summary.json").exists(), point

    # Then at every further backup, up to the one made as training ended.
    while not manifest(run).get("finished"):
        stop_once(config, tmp_path, f"backup_committed:{manifest(run)['sequence'] + 1}", KILLED)

    # The end: training is over, the final files are not all there yet.
    for point in ("after_fit", "before_model_save", "saved_model", "before_summary"):
        stop_once(config, tmp_path, point, KILLED)
        assert not (run / "summary.json").exists(), point
    stop_once(config, tmp_path, "after_summary", KILLED)  # summary.json written, backup kept
    done = bigmodel("train", "--resume", str(run), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "already finished" in done.stderr
    assert not (run / "checkpoints" / "backup").exists()

    expected, whole = uninterrupted
    summary = json.loads((run / "summary.json").read_text())
    assert epochs_logged(run) == list(range(1, expected["epochs_run"] + 1))
    for key in ("epochs_run", "best_epoch", "stop_reason", "final_weights_epoch"):
        assert summary[key] == expected[key], key
    for key, value in expected["final"].items():
        assert summary["final"][key] == pytest.approx(value, abs=1e-5), key
    for key, value in expected["test"].items():
        assert summary["test"][key] == pytest.approx(value, abs=1e-6), key
    for mine, theirs in zip(final_weights(run), final_weights(whole), strict=True):
        np.testing.assert_allclose(mine, theirs, atol=1e-6)


def weights_of(path: Path) -> list[np.ndarray]:
    import tf_keras as keras

    from bigmodel_cli.registry import custom_objects

    return keras.models.load_model(path, compile=False, custom_objects=custom_objects()
                                   ).get_weights()  # fmt: skip


@pytest.mark.slow
def test_a_signal_mid_epoch_changes_neither_best_nor_early_stopping_nor_the_model(
    tmp_path, uninterrupted
):
    """SIGTERM in the middle of epoch 2: no validation pass, no best.keras and no
    early-stopping step come from the partial epoch, so after --resume best.keras, the
    stopping epoch and model.keras are the uninterrupted run's."""
    config = write_config(tmp_path)
    run = stop_once(config, tmp_path, "train_batch_end:5:TERM", TERM)  # epoch 2, step 8
    assert epochs_logged(run) == [1]  # the partial epoch was neither validated nor logged
    assert manifest(run)["position"] == {"epoch": 1, "step": 8}
    assert manifest(run)["state"]["early_stopping"]["wait"] == 0
    done = bigmodel("train", "--resume", str(run), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    expected, whole = uninterrupted
    for key in ("epochs_run", "best_epoch", "stop_reason", "final_weights_epoch"):
        assert summary[key] == expected[key], key
    for name in ("checkpoints/best.keras", "model.keras"):
        for mine, theirs in zip(weights_of(run / name), weights_of(whole / name), strict=True):
            np.testing.assert_allclose(mine, theirs, atol=1e-6, err_msg=name)

"""Magnitude pruning (`compress.prune`): the digits CNN pruned to 50% and 80% keeps the
dense model's accuracy within a point, the files it writes really hold that many zeros,
`evaluate` and `export` read them as plain models, a kill mid-schedule resumes where
the schedule stood, and a glob that names no prunable layer exits 2.

Three runs (dense, 50%, 80%) are shared by the module: each trains in about 10 s.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from bigmodel_cli.cli import app
from tests.helpers import CONFIGS, forkserver, kill_env, no_traceback, run_dir_of
from tests.helpers import train_into as train

PRUNED_LAYERS = ("conv_1", "conv_2", "dense_1")  # the default: all but the output layer
EPOCHS = 40
SCHEDULE = {"begin_epoch": 5, "end_epoch": 20}  # then 20 epochs at the final sparsity


def digits_cnn(folder: Path, prune: dict | None) -> Path:
    config = yaml.safe_load((CONFIGS / "digits_cnn.yaml").read_text())
    config["train"] = {"epochs": EPOCHS, "deterministic": True}
    if prune is not None:
        config["compress"] = {"prune": prune}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """{sparsity (0 for dense): (run directory, summary)}."""
    from typer.testing import CliRunner

    runner, found = CliRunner(), {}
    for sparsity in (0, 0.5, 0.8):
        folder = tmp_path_factory.mktemp(f"sparsity{sparsity}")
        prune = {"sparsity": sparsity, **SCHEDULE} if sparsity else None
        run = run_dir_of(train(runner, digits_cnn(folder, prune), folder))
        found[sparsity] = run, json.loads((run / "summary.json").read_text())
    return found


def kernels(path: Path) -> dict[str, np.ndarray]:
    import tf_keras as keras

    model = keras.models.load_model(path, compile=False, safe_mode=True)
    return {layer.name: layer.kernel.numpy() for layer in model.layers if hasattr(layer, "kernel")}


def zeros(array: np.ndarray) -> float:
    return float(np.mean(array == 0))


@pytest.mark.slow
@pytest.mark.parametrize("sparsity", [0.5, 0.8])
def test_pruning_keeps_accuracy_and_the_saved_kernels_are_that_sparse(runs, sparsity):
    dense = runs[0][1]["test"]["accuracy"]
    run, summary = runs[sparsity]
    assert summary["test"]["accuracy"] >= dense - 0.01, (summary["test"], dense)
    report = summary["compress"]["prune"]
    assert report["target_sparsity"] == sparsity
    assert sorted(report["layers"]) == sorted(PRUNED_LAYERS)
    for name in ("model.keras", "checkpoints/best.keras"):
        saved = kernels(run / name)
        for layer in PRUNED_LAYERS:  # the zeros are in the file, not only in a mask
            assert zeros(saved[layer]) == pytest.approx(sparsity, abs=0.005), (name, layer)
        assert zeros(saved["predictions"]) < 0.01  # the output layer stays dense
    saved = kernels(run / "model.keras")
    for layer, entry in report["layers"].items():
        assert entry["sparsity"] == pytest.approx(zeros(saved[layer]), abs=1e-6), layer
        assert entry["weights"] == saved[layer].size
    assert report["model_bytes"] == (run / "model.keras").stat().st_size
    # Masks are not parameters: the stripped model has the dense model's.
    assert summary["params"] == runs[0][1]["params"]
    # best.keras is chosen only among the epochs at the final sparsity.
    assert summary["best_epoch"] >= SCHEDULE["end_epoch"]


@pytest.mark.slow
def test_the_zeros_shrink_the_gzipped_file(runs):
    from bigmodel_cli.training.prune import gzip_size

    dense = gzip_size(runs[0][0] / "model.keras")
    half = runs[0.5][1]["compress"]["prune"]["model_gzip_bytes"]
    most = runs[0.8][1]["compress"]["prune"]["model_gzip_bytes"]
    assert most < half < dense, (most, half, dense)
    assert "compress" not in runs[0][1]


@pytest.mark.slow
def test_one_keras_in_the_process(runs):
    """tfmot trained on tf_keras, and Keras 3 was never imported (see tfenv.import_tfmot)."""
    assert "tensorflow_model_optimization" in sys.modules
    assert "keras" not in sys.modules, sys.modules["keras"]


@pytest.mark.slow
def test_evaluate_and_export_read_the_stripped_model(runs, runner):
    run, summary = runs[0.8]
    result = runner.invoke(app, ["evaluate", str(run), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["metrics"]["accuracy"] == pytest.approx(summary["test"]["accuracy"], abs=1e-6)
    result = runner.invoke(app, ["export", str(run), "--format", "savedmodel", "--json"])
    assert result.exit_code == 0, result.output
    entry = json.loads(result.stdout)
    assert abs(entry["metrics"]["difference"]["accuracy"]) < 1e-6, entry["metrics"]


@pytest.mark.slow
def test_a_glob_that_matches_no_prunable_layer_exits_2(runner, tmp_path):
    prune = {"layers": ["conv_*", "dense_9*", "flatten"]}
    result = train(runner, digits_cnn(tmp_path, prune), tmp_path, "--set", "train.epochs=2")
    assert result.exit_code == 2, result.output
    assert no_traceback(result.output)
    lines = [line for line in result.output.splitlines() if "compress.prune.layers" in line]
    assert len(lines) == 2, result.output  # conv_* matches; the other two are named
    assert "compress.prune.layers.1: 'dense_9*' matches no layer" in lines[0]
    assert "'flatten' matches only layers that cannot be pruned (flatten)" in lines[1]
    for name in (*PRUNED_LAYERS, "predictions"):  # what exists, to choose from
        assert name in lines[0]
    assert not (tmp_path / "runs").exists()  # refused before the run directory


# === Kill and resume mid-schedule =============================================

RESUMED = {
    "name": "prune-resume",
    "seed": 7,
    "data": {"source": "digits", "batch_size": 32},
    "model": {"type": "mlp", "dense": [64, 32], "dropout": 0.2},
    "optimizer": {"name": "adam", "learning_rate": 0.01},
    "train": {
        "epochs": 5,
        "steps_per_epoch": 12,
        "steps_per_execution": 4,
        "checkpoint": {"every_steps": 5},
        "deterministic": True,
    },
    "compress": {"prune": {"sparsity": 0.6, "begin_epoch": 1, "end_epoch": 4}},
}
# Graph calls of 4 steps: commits after step 8 and at the end of each epoch, so the 5th
# is epoch 3, step 8: mid-epoch, mid-schedule (which runs over steps 12 to 48).
KILL_AT, STEPS_DONE = "backup_committed:5", 2 * 12 + 8


def bigmodel(*args: str, kill_at: str | None = None):
    return forkserver.run(*args, env=kill_env(kill_at), timeout=300)


def resume_config(folder: Path) -> Path:
    folder.mkdir()
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump({**RESUMED, "output": {"dir": str(folder / "runs")}}))
    return path


def pruning_state(run: Path) -> dict[str, np.ndarray]:
    """The pruning variables of the run's last backup: step and mask of each layer."""
    import tensorflow as tf

    folder = run / "checkpoints" / "backup" / "chief"
    manifest = json.loads((folder / "manifest.json").read_text())
    reader = tf.train.load_checkpoint(str(folder / manifest["checkpoint"]))
    names = [n for n in reader.get_variable_to_shape_map() if "OPTIMIZER" not in n]
    return {n: reader.get_tensor(n) for n in names if "pruning_step" in n or "/mask/" in n}


@pytest.mark.slow
def test_a_run_killed_mid_schedule_resumes_it_and_ends_as_the_uninterrupted_run(tmp_path):
    whole = bigmodel("train", str(resume_config(tmp_path / "whole")), "--json")
    assert whole.returncode == 0, whole.stderr[-3000:]
    expected = json.loads(whole.stdout)

    folder = tmp_path / "killed"
    killed = bigmodel("train", str(resume_config(folder)), kill_at=KILL_AT)
    assert killed.returncode == -9, killed.stderr[-3000:]
    run = next((folder / "runs").glob("*/*"))
    state = pruning_state(run)
    steps = [int(v) for n, v in state.items() if "pruning_step" in n]
    assert steps == [STEPS_DONE, STEPS_DONE], state  # both hidden layers, mid-schedule
    masks = [v for n, v in state.items() if "/mask/" in n]
    assert masks and all(0 < 1 - m.mean() < RESUMED["compress"]["prune"]["sparsity"] for m in masks)

    done = bigmodel("train", "--resume", str(run), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    assert no_traceback(done.stderr)
    assert "pruned dense_1, dense_2 to 60.0% zeros (target 60%)" in done.stderr
    summary = json.loads(done.stdout)
    assert summary["resumed_at"] == {"epoch": 2, "batch": 8}
    mine, theirs = summary["compress"]["prune"], expected["compress"]["prune"]
    # The .keras file records when it was saved: its gzipped size may differ by a few bytes.
    assert mine.pop("model_gzip_bytes") == pytest.approx(theirs.pop("model_gzip_bytes"), abs=64)
    assert mine == theirs
    for key, value in expected["test"].items():
        assert summary["test"][key] == pytest.approx(value, abs=1e-6), key
    mine, theirs = kernels(run / "model.keras"), kernels(Path(expected["run_dir"]) / "model.keras")
    for name, kernel in theirs.items():
        np.testing.assert_allclose(mine[name], kernel, atol=1e-6, err_msg=name)
        np.testing.assert_array_equal(mine[name] == 0, kernel == 0, err_msg=name)

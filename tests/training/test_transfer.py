"""`init`: a run started from a trained one (issue 13). The parent is the shipped
configs/digits_0to6_cnn.yaml (7 classes), the child configs/digits_finetune.yaml (the
images of 7, 8 and 9: 3 classes, none seen by the parent)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from bigmodel_cli.cli import app
from tests.helpers import CONFIGS, forkserver, kill_env, no_traceback, run_dir_of
from tests.helpers import train_into as train

PARENT = CONFIGS / "digits_0to6_cnn.yaml"
CHILD = CONFIGS / "digits_finetune.yaml"
NO_SECOND_PHASE = ("--set", "init.unfreeze_after_epochs=null",
                   "--set", "init.unfreeze_learning_rate=null")  # fmt: skip


def weights_of(path: Path) -> dict[str, list[np.ndarray]]:
    import tf_keras as keras

    from bigmodel_cli.registry import custom_objects

    model = keras.models.load_model(path, compile=False, custom_objects=custom_objects())
    return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def parent(tmp_path_factory) -> Path:
    from typer.testing import CliRunner

    folder = tmp_path_factory.mktemp("parent")
    result = train(CliRunner(), PARENT, folder, "--set", "train.epochs=20")
    return run_dir_of(result)


def from_parent(parent: Path) -> tuple[str, str]:
    return ("--set", f"init.from={parent}")


@pytest.mark.slow
def test_fine_tuning_to_other_classes_keeps_frozen_layers_bit_identical(runner, tmp_path, parent):
    run = run_dir_of(train(runner, CHILD, tmp_path, *from_parent(parent), *NO_SECOND_PHASE))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["accuracy"] >= 0.95, summary["test"]
    assert summary["init"] == {
        "from": str(parent),
        "model": "best.keras",
        "copied": ["conv_1", "conv_2", "dense_1"],
        "reinitialized": ["predictions"],
        "frozen": ["conv_1", "conv_2"],
    }
    theirs = weights_of(parent / "checkpoints" / "best.keras")
    ours = weights_of(run / "model.keras")
    assert same(ours["conv_1"], theirs["conv_1"]) and same(ours["conv_2"], theirs["conv_2"])
    assert not same(ours["dense_1"], theirs["dense_1"])  # copied, then trained
    assert ours["predictions"][0].shape == (128, 3) and theirs["predictions"][0].shape == (128, 7)

    # The parent's statistics scaled the inputs, and evaluate scales them the same way.
    assert "parent run's statistics" in " ".join(summary["data"]["notes"])
    parent_summary = json.loads((parent / "summary.json").read_text())
    assert summary["data"]["normalization"] == parent_summary["data"]["normalization"]
    report = json.loads(runner.invoke(app, ["evaluate", str(run), "--json"]).stdout)
    assert report["metrics"]["accuracy"] == pytest.approx(summary["test"]["accuracy"], abs=1e-6)


@pytest.mark.slow
def test_the_second_phase_unfreezes_at_its_own_learning_rate(runner, tmp_path, parent):
    run = run_dir_of(train(runner, CHILD, tmp_path, *from_parent(parent)))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["accuracy"] >= 0.95, summary["test"]
    with open(run / "metrics.csv", newline="") as handle:
        rates = [float(row["lr"]) for row in csv.DictReader(handle)]
    # Epochs 1-10: the cosine decay from 3e-3, sized to them; 11-20: 1e-4.
    assert rates[0] == pytest.approx(3e-3, rel=0.05) and rates[9] < 1e-5
    assert rates[10:] == pytest.approx([1e-4] * 10)
    theirs = weights_of(parent / "checkpoints" / "best.keras")
    ours = weights_of(run / "model.keras")
    assert not same(ours["conv_1"], theirs["conv_1"])  # trained in the second phase


@pytest.mark.parametrize(
    "override,expected",
    [
        ("init.freeze=[conv_*, convolution]", "init.freeze: 'convolution' matches no layer"),
        ("init.reinit=[head]", "init.reinit: 'head' matches no layer"),
        (
            "init.reinit=[]",
            "init.from: layer 'predictions' has weights of shapes (128, 3), (3,) here but "
            "(128, 7), (7,) in the parent run; add it to init.reinit",
        ),
    ],
)
@pytest.mark.slow
def test_a_glob_matching_nothing_or_a_shape_mismatch_exits_2(
    runner, tmp_path, parent, override, expected
):
    result = train(runner, CHILD, tmp_path, *from_parent(parent), "--set", override)
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert not (tmp_path / "runs").exists()  # refused before any run directory


def test_a_parent_that_is_not_a_finished_run_exits_2(runner, tmp_path):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text("name: x\nmodel: {type: mlp}\n")  # no summary
    for override, expected in [
        (None, "init.from: give the run to start from: --set init.from=RUN_DIR"),
        (f"init.from={tmp_path}", "init.from: " + f"{tmp_path}: not a run directory"),
        (f"init.from={unfinished}", "did training finish?"),
    ]:
        result = train(runner, CHILD, tmp_path, *(("--set", override) if override else ()))
        assert result.exit_code == 2, result.output
        assert expected in result.output
    assert not (tmp_path / "runs").exists()


def test_init_keys_are_checked(runner, tmp_path):
    cases = [
        ("init.unfreeze_learning_rate=null", "init.unfreeze_learning_rate: required"),
        ("init.unfreeze_after_epochs=20", "init.unfreeze_after_epochs: 20: training ends"),
        ("init.reinit=[conv_*]", "init.reinit: conv_*: in both freeze and reinit"),
        ("init.form=x", "Did you mean 'from'?"),
    ]
    for override, expected in cases:
        result = runner.invoke(app, ["validate", str(CHILD), "--no-build", "--set", override])
        assert result.exit_code == 2, (override, result.output)
        assert expected in result.output, (override, result.output)


def _bigmodel(*args: str, kill_at: str | None = None):
    return forkserver.run(*args, env=kill_env(kill_at), timeout=300)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_a_run_killed_after_the_unfreezing_resumes_as_the_uninterrupted_one(tmp_path, parent):
    """Killed mid-epoch in the second phase (kill -9), then --resume: the layers are
    unfrozen again at once, the rate is the second phase's, and the run ends with the
    weights of the run that was never stopped."""
    short = ["--set", "train.epochs=4", "--set", "init.unfreeze_after_epochs=2",
             "--set", "train.steps_per_execution=1", "--set", "train.checkpoint.every_steps=4",
             "--set", "train.deterministic=true", *from_parent(parent)]  # fmt: skip

    def start(folder: Path, kill_at: str | None = None):
        return _bigmodel("train", str(CHILD), "--set", f"output.dir={folder}", *short,
                         kill_at=kill_at)  # fmt: skip

    whole = start(tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-3000:]
    # 12 batches an epoch: the 31st is in the third epoch, the first unfrozen one.
    killed = start(tmp_path / "killed", kill_at="train_batch_end:31")
    assert killed.returncode == -9, killed.stderr[-3000:]
    (run,) = (tmp_path / "killed").glob("*/*")
    resumed = _bigmodel("train", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert no_traceback(resumed.stderr)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed_at"]["epoch"] == 2 and summary["resumed_at"]["batch"] > 0
    (uninterrupted,) = (tmp_path / "whole").glob("*/*")
    theirs, ours = weights_of(uninterrupted / "model.keras"), weights_of(run / "model.keras")
    for name, weights in theirs.items():
        assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(weights, ours[name], strict=True))
    assert not same(ours["conv_1"], weights_of(parent / "checkpoints" / "best.keras")["conv_1"])


@pytest.mark.slow
def test_a_fine_tuned_run_can_be_pruned_and_its_frozen_layers_keep_the_parents_weights(
    runner, tmp_path, parent
):
    """init + compress.prune, the usual 'prune a trained model' recipe: the frozen
    convolutions are only masked (each weight left is the parent's), the rest trains."""
    result = train(runner, CHILD, tmp_path, *from_parent(parent), *NO_SECOND_PHASE,
                   "--set", "compress={prune: {sparsity: 0.5}}")  # fmt: skip
    run = run_dir_of(result)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["accuracy"] >= 0.95, summary["test"]
    assert summary["init"]["frozen"] == ["conv_1", "conv_2"]
    theirs = weights_of(parent / "checkpoints" / "best.keras")
    ours = weights_of(run / "model.keras")
    for name in ("conv_1", "conv_2"):
        kernel, kept = ours[name][0], ours[name][0] != 0
        assert abs(1 - kept.mean() - 0.5) < 0.01, name
        assert np.array_equal(kernel[kept], theirs[name][0][kept]), name
    dense = ours["dense_1"][0]
    assert not np.array_equal(dense[dense != 0], theirs["dense_1"][0][dense != 0])

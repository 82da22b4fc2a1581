"""Knowledge distillation (issue 13): the shipped digits MLP student learns from a digits
CNN teacher to at least 93% test accuracy; both loss terms are logged; only the student
is saved (model.keras, best.keras, the resume backup); a run killed mid-epoch resumes to
the uninterrupted run's weights; and a teacher that cannot teach is exit 2 before any run
directory exists, naming distill.teacher.

One teacher (the digits CNN, 10 epochs) is trained for the whole file; runs are forked
processes (tests/helpers/forkserver.py), so a kill is a real SIGKILL.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from bigmodel_cli.cli import app
from tests.helpers import CONFIGS, forkserver, kill_env, no_traceback, run_dir_of, train_into

STUDENT = CONFIGS / "digits_distill.yaml"
# Deterministic, with a backup every 10 of an epoch's 45 steps (5 per graph call), so a
# kill mid-epoch can be compared with the uninterrupted run to 1e-6.
STUDENT_ARGS = (
    "--set", "train.epochs=20", "--set", "train.deterministic=true",
    "--set", "train.checkpoint.every_steps=10", "--set", "train.steps_per_execution=5",
)  # fmt: skip
KILLED = -9


def bigmodel(*args: str, kill_at: str | None = None, cwd: Path | None = None):
    env = kill_env(kill_at)
    result = forkserver.run(*map(str, args), env=env, **({"cwd": cwd} if cwd else {}))
    assert no_traceback(result.stderr), result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("teacher")
    result = bigmodel("train", CONFIGS / "digits_cnn.yaml", "--json", "--set", "train.epochs=10",
                      "--set", f"output.dir={folder}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(json.loads(result.stdout)["run_dir"])


def student_args(teacher: Path, folder: Path) -> list[str]:
    return ["train", str(STUDENT), "--json", *STUDENT_ARGS, "--set", f"output.dir={folder}",
            "--set", f"distill.teacher={teacher}"]  # fmt: skip


@pytest.fixture(scope="module")
def student(teacher, tmp_path_factory) -> dict:
    """The uninterrupted student run, given its teacher relative to the current folder."""
    folder = tmp_path_factory.mktemp("student")
    relative = teacher.relative_to(teacher.parent.parent.parent)
    result = bigmodel(*student_args(relative, folder), cwd=teacher.parent.parent.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def rows_of(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_a_distilled_mlp_student_reaches_93_percent_and_logs_both_terms(student, teacher):
    run = Path(student["run_dir"])
    assert student["test"]["accuracy"] >= 0.93, student["test"]
    distill = student["distill"]
    assert distill["teacher"] == str(teacher)
    assert (distill["temperature"], distill["hard_label_weight"]) == (4.0, 0.5)
    assert distill["teacher_test"]["accuracy"] >= 0.93, distill
    assert distill["teacher_params"] > 20 * student["params"]  # a CNN taught a small MLP
    assert distill["same_splits"] is True  # the same seed and data: the test split is held out
    # config.yaml records the teacher absolute, so --resume works from anywhere.
    assert f"teacher: {teacher}\n" in (run / "config.yaml").read_text()
    rows = rows_of(run)
    assert len(rows) == 20
    for row in rows:  # loss = w * hard + (1 - w) * soft (this config has no L1/L2)
        for prefix in ("", "val_"):
            hard, soft = float(row[f"{prefix}hard_loss"]), float(row[f"{prefix}soft_loss"])
            assert hard > 0 and soft > 0, row
            assert float(row[f"{prefix}loss"]) == pytest.approx(0.5 * hard + 0.5 * soft, rel=1e-4)
    assert float(rows[-1]["soft_loss"]) < float(rows[0]["soft_loss"]) / 5  # it learned to match


@pytest.mark.slow
def test_only_the_student_is_saved(student):
    import tf_keras as keras

    run = Path(student["run_dir"])
    for name in ("model.keras", "checkpoints/best.keras", "checkpoints/last.keras"):
        model = keras.models.load_model(run / name, compile=False, safe_mode=True)
        assert model.count_params() == student["params"] == 2410, name
        assert {type(layer).__name__ for layer in model.layers} == {"InputLayer", "Dense"}


def backup_variables(run: Path) -> list[tuple[str, list[int]]]:
    import tensorflow as tf

    manifest = json.loads((run / "checkpoints/backup/chief/manifest.json").read_text())
    prefix = run / "checkpoints/backup/chief" / manifest["checkpoint"]
    return tf.train.list_variables(str(prefix))


@pytest.mark.slow
def test_a_student_killed_mid_epoch_resumes_to_the_uninterrupted_run(student, teacher, tmp_path):
    import tf_keras as keras

    killed = bigmodel(*student_args(teacher, tmp_path), kill_at="backup_committed:3")
    assert killed.returncode == KILLED, killed.stderr[-3000:]
    (run,) = (tmp_path / "digits-distill").iterdir()
    manifest = json.loads((run / "checkpoints/backup/chief/manifest.json").read_text())
    assert manifest["position"] == {"epoch": 0, "step": 30}
    # The backup holds the student and its optimizer, not the teacher: no convolution
    # kernel, and the student's 2,410 weights once in the model.
    variables = backup_variables(run)
    assert not [name for name, shape in variables if len(shape) == 4]
    model_weights = [s for n, s in variables if n.startswith("model/layer_with_weights")]
    assert sum(int(np.prod(s)) for s in model_weights) == 2410, variables

    resumed = bigmodel("train", "--resume", run, "--json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads(resumed.stdout)
    assert summary["resumed_at"] == {"epoch": 0, "batch": 30}
    assert summary["distill"]["teacher"] == str(teacher)
    for key, value in student["test"].items():
        assert summary["test"][key] == pytest.approx(value, abs=1e-6), key
    whole = Path(student["run_dir"])
    mine = keras.models.load_model(run / "model.keras", compile=False).get_weights()
    theirs = keras.models.load_model(whole / "model.keras", compile=False).get_weights()
    for a, b in zip(mine, theirs, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


# === Teachers that cannot teach: exit 2, naming distill.teacher ==============


def refused(runner, tmp_path: Path, *args: str) -> list[str]:
    """`train` of the student that must exit 2 before its run directory exists; the
    problems it printed."""
    output = tmp_path / "student-runs"
    result = runner.invoke(app, ["train", str(STUDENT), "--set", f"output.dir={output}", *args])
    assert result.exit_code == 2, result.output
    assert no_traceback(result.output), result.output
    assert not output.exists()
    return [line.removeprefix("error: ") for line in result.stderr.splitlines()]


def test_an_unset_teacher_a_folder_and_an_unfinished_run_exit_2(runner, tmp_path):
    unset = refused(runner, tmp_path)
    assert unset == [
        "distill.teacher: not set; name the run to learn from, e.g. bigmodel train CONFIG "
        "--set distill.teacher=RUN_DIR"
    ]
    folder = tmp_path / "not-a-run"
    folder.mkdir()
    (problem,) = refused(runner, tmp_path, "--set", f"distill.teacher={folder}")
    assert problem == (
        f"distill.teacher: {folder}: not a run directory (no config.yaml); give one made by "
        "bigmodel train"
    )
    unfinished = tmp_path / "unfinished"  # a run whose training never wrote summary.json
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text((CONFIGS / "digits_cnn.yaml").read_text())
    (problem,) = refused(runner, tmp_path, "--set", f"distill.teacher={unfinished}")
    assert problem == f"distill.teacher: {unfinished}: no summary.json; did training finish?"


@pytest.mark.slow
def test_a_teacher_of_another_task_or_other_classes_exits_2(runner, tmp_path, write_config):
    regression = run_dir_of(train_into(runner, CONFIGS / "diabetes_regression.yaml", tmp_path,
                                       "--set", "train.epochs=1"))  # fmt: skip
    problems = refused(runner, tmp_path, "--set", f"distill.teacher={regression}")
    assert problems == [
        f"distill.teacher: {regression} was trained for regression; the student's data is "
        "classification: a teacher must do the student's task",
        f"distill.teacher: {regression} reads examples of shape [10]; the student's data "
        "gives [64]: the teacher must be trained on the same data",
    ]
    iris = {"name": "iris", "data": {"source": "iris"}, "model": {"type": "mlp", "dense": [8]}}
    three = run_dir_of(train_into(runner, write_config(iris), tmp_path, "--set", "train.epochs=1"))
    problems = refused(runner, tmp_path, "--set", f"distill.teacher={three}")
    assert problems[0] == (
        f"distill.teacher: {three} predicts 3 classes; the student's data has 10"
    )


@pytest.mark.slow
def test_a_regression_student_is_refused(runner, tmp_path, teacher):
    output = tmp_path / "runs"
    result = runner.invoke(app, [
        "train", str(CONFIGS / "diabetes_regression.yaml"), "--set", f"output.dir={output}",
        "--set", "loss=null", "--set", f"distill={{teacher: {teacher}}}",
    ])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "distill: the student's data has regression targets" in result.stderr
    assert not output.exists()


def test_the_teacher_sees_its_own_normalization():
    """x_teacher = (x * std_s + mean_s - mean_t) / std_t, per channel: a student whose
    statistics differ (another seed, other data) feeds the teacher what it trained on."""
    from bigmodel_cli.training.distill import _rescaling

    raw = np.random.default_rng(0).normal(3.0, 5.0, size=(6, 4, 4, 2))
    student = {"native_shape": [4, 4, 2], "mean": [2.0, -1.0], "std": [4.0, 0.5]}
    teacher = {"native_shape": [4, 4, 2], "mean": [1.0, 3.0], "std": [2.0, 8.0]}
    native, scale, offset = _rescaling(student, teacher)
    assert native == (4, 4, 2)
    as_student = (raw - student["mean"]) / student["std"]
    as_teacher = (raw - teacher["mean"]) / teacher["std"]
    np.testing.assert_allclose(as_student * scale + offset, as_teacher, rtol=1e-6, atol=1e-6)
    assert _rescaling(student, student) is None  # the same statistics: nothing to do
    _, scale, offset = _rescaling(None, teacher)  # a student that does not normalize
    np.testing.assert_allclose(raw * scale + offset, as_teacher, rtol=1e-6, atol=1e-6)


def test_a_teacher_that_split_the_data_otherwise_is_flagged():
    """Another seed deals other test examples, which the teacher may have trained on;
    how batches are read (batch size, augmentation) deals the same ones."""
    from bigmodel_cli.config.load import load_config
    from bigmodel_cli.inference.open_run import TrainedRun
    from bigmodel_cli.training.distill import same_splits

    cfg = load_config(STUDENT)
    teacher = TrainedRun(None, load_config(CONFIGS / "digits_cnn.yaml"), None, None, None)
    assert same_splits(teacher, cfg)
    assert same_splits(teacher, load_config(STUDENT, ["data.batch_size=64"]))
    assert not same_splits(teacher, load_config(STUDENT, ["seed=1"]))
    assert not same_splits(teacher, load_config(STUDENT, ["data.test_split=0.2"]))

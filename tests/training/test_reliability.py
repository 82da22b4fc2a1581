"""Runs that survive kills and signals, one trainer per run, files that cannot be swapped."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bigmodel_cli.cli import app
from tests.helpers import CONFIGS, REPO, forkserver, no_traceback

BIGMODEL = [sys.executable, "-m", "bigmodel_cli.cli"]
# A recurrent model: ~25 steps per epoch that take long enough to be killed in between.
CONFIG = CONFIGS / "rnn_sequences.yaml"
EPOCHS = 4
COMMON = [
    "--set",
    f"train.epochs={EPOCHS}",
    "--set",
    "train.early_stopping=null",
    "--set",
    "train.steps_per_execution=1",
    "--set",
    "data.examples=1200",
    # Dropout: the resumed run must continue the random masks, not start them afresh.
    "--set",
    "model.dropout=0.2",
]


def start(out: Path, *overrides: str) -> forkserver.Process:
    return forkserver.start("train", str(CONFIG), *COMMON, "--set", f"output.dir={out}", *overrides)


def finish(*args: str) -> dict:
    result = forkserver.run(*args, "--json", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def rows(run: Path) -> list[dict]:
    path = run / "metrics.csv"
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def backups(run: Path) -> int:
    """How many backups were committed (the manifest's sequence), 0 before the first."""
    path = run / "checkpoints" / "backup" / "chief" / "manifest.json"
    try:
        return int(json.loads(path.read_text()).get("sequence", 0))
    except (OSError, ValueError):
        return 0  # not there yet, or being replaced this instant


def wait_for(process: forkserver.Process, out: Path, ready) -> Path:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        runs = [p.parent for p in out.glob("*/*/config.yaml")]  # OUT/NAME/STAMP/
        if runs and ready(runs[0]):
            return runs[0]
        time.sleep(0.02)
    raise AssertionError(f"never ready; exit {process.poll()}: {process.communicate()[1][-2000:]}")


def resume_position(run: Path) -> tuple[int, int]:
    from bigmodel_cli.training.backup import read_commit

    position = read_commit(run / "checkpoints" / "backup").position
    return position.epoch, position.step


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("whole")
    return finish(
        "train",
        str(CONFIG),
        *COMMON,
        "--set",
        f"output.dir={out}",
        "--set",
        "train.deterministic=true",
    )


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path, uninterrupted):
    """Backups every 3 steps; SIGKILL right after a mid-epoch backup of epoch 2 or later."""
    # 15 steps per epoch: backups after steps 3, 6, 9, 12 and at the epoch end, so
    # backup N with N % 5 in 1..4 is mid-epoch. A kill can still land just after the next
    # boundary backup; then try again in a fresh folder.
    for attempt in range(3):
        out = tmp_path / f"attempt-{attempt}"
        process = start(
            out, "--set", "train.checkpoint.every_steps=3", "--set", "train.deterministic=true"
        )
        run = wait_for(process, out, lambda r: len(rows(r)) >= 1 and backups(r) % 5 in (1, 2, 3))
        process.kill()
        process.wait()
        epoch, step = resume_position(run)
        if step != 0:
            break
    assert step != 0, "never killed mid-epoch"
    resumed_at = {"epoch": epoch, "batch": step}
    assert len(rows(run)) < EPOCHS
    summary = finish("train", "--resume", str(run))
    assert [int(r["epoch"]) for r in rows(run)] == list(range(1, EPOCHS + 1))
    assert summary["resumed_from"] == str(run) and summary["epochs_run"] == EPOCHS
    assert summary["resumed_at"] == resumed_at
    # The same batches in the same order, the same optimizer state: the only difference a
    # resume may make is float rounding in the interrupted epoch's running averages.
    assert summary["final"]["val_loss"] == pytest.approx(
        uninterrupted["final"]["val_loss"], rel=1e-4
    ), (epoch, step)


@pytest.mark.slow
def test_sigkill_on_an_epoch_boundary_resumes_exactly(tmp_path, uninterrupted):
    """Only epoch-end backups: any kill resumes from an epoch boundary; with
    train.deterministic the result equals the uninterrupted run to 1e-6."""
    process = start(tmp_path, "--set", "train.deterministic=true")
    run = wait_for(process, tmp_path, lambda r: backups(r) >= 1)
    process.kill()
    process.wait()
    assert resume_position(run)[1] == 0  # an epoch boundary
    summary = finish("train", "--resume", str(run))
    assert [int(r["epoch"]) for r in rows(run)] == list(range(1, EPOCHS + 1))
    assert summary["final"]["val_loss"] == pytest.approx(
        uninterrupted["final"]["val_loss"], abs=1e-6
    )
    assert summary["test"]["accuracy"] == pytest.approx(uninterrupted["test"]["accuracy"], abs=1e-6)


@pytest.mark.slow
def test_resume_position_is_exact_with_several_steps_per_execution(tmp_path, uninterrupted):
    """With steps_per_execution 5 (of 15 steps an epoch), Keras itself would record the
    first step of the last execution; the backup must record the step it ends on."""
    process = start(tmp_path, "--set", "train.steps_per_execution=5")
    run = wait_for(process, tmp_path, lambda r: backups(r) >= 1)
    process.kill()
    process.wait()
    epoch, step = resume_position(run)
    assert step == 0 and epoch >= 1  # an epoch-end backup resumes at the next epoch
    summary = finish("train", "--resume", str(run))
    assert summary["resumed_at"] == {"epoch": epoch, "batch": 0}
    assert [int(r["epoch"]) for r in rows(run)] == list(range(1, EPOCHS + 1))
    assert summary["final"]["val_loss"] == pytest.approx(
        uninterrupted["final"]["val_loss"], rel=1e-4
    )


@pytest.mark.slow
def test_sigterm_saves_prints_the_resume_command_and_exits_143(tmp_path):
    process = start(tmp_path)
    run = wait_for(process, tmp_path, lambda r: len(rows(r)) >= 1)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 143, err[-3000:]
    assert f"bigmodel train --resume {run}" in err and no_traceback(err)
    assert backups(run) >= 1 and not (run / "summary.json").exists()
    assert not (run / ".lock").exists()

    # A backup whose files were changed is refused (on a copy; the run itself resumes below).
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(run, damaged)
    data_file = next((damaged / "checkpoints" / "backup" / "chief").glob("ckpt-*.data-*"))
    data_file.write_bytes(data_file.read_bytes()[:-8] + b"\0" * 8)
    refused = forkserver.run("train", "--resume", str(damaged), timeout=300)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "does not match manifest.json" in refused.stderr and no_traceback(refused.stderr)

    summary = finish("train", "--resume", str(run))
    assert [int(r["epoch"]) for r in rows(run)] == list(range(1, EPOCHS + 1))
    assert summary["status"] == "completed"


# === Locks, digests, atomic saves ============================================


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("small")
    summary = finish(
        "train",
        str(CONFIGS / "digits_mlp.yaml"),
        "--set",
        "train.epochs=2",
        "--set",
        f"output.dir={out}",
    )
    return Path(summary["run_dir"])


def test_a_run_in_use_is_refused(runner, small_run):
    lock = small_run / ".lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    try:
        (small_run / "summary.json").rename(small_run / "summary.moved")  # "unfinished"
        result = runner.invoke(app, ["train", "--resume", str(small_run)])
        assert result.exit_code == 2
        assert f"in use by process {os.getpid()}" in result.stderr
    finally:
        lock.unlink(missing_ok=True)
        (small_run / "summary.moved").rename(small_run / "summary.json")


def test_a_stale_lock_is_reported_and_taken_over(tmp_path):
    from bigmodel_cli import run_dir

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = run_dir.RunDir(tmp_path)
    (tmp_path / ".lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    notes: list[str] = []
    with run_dir.locked(run, notes.append):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert notes and f"process {dead.pid}" in notes[0] and "stale" in notes[0]
    assert not (tmp_path / ".lock").exists()


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "no digest"])
def test_a_damaged_model_file_is_refused(runner, small_run, tmp_path, damage):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(small_run, copy)
    best = copy / "checkpoints" / "best.keras"
    if damage == "flip a byte":
        data = bytearray(best.read_bytes())
        data[len(data) // 2] ^= 0xFF
        best.write_bytes(bytes(data))
    elif damage == "truncate":
        best.write_bytes(best.read_bytes()[:1000])
    else:
        (copy / "checkpoints" / "best.keras.sha256").unlink()
    result = runner.invoke(app, ["evaluate", str(copy)])
    assert result.exit_code == 2, result.output
    assert "best.keras" in result.stderr and no_traceback(result.output)


SAVE_LOOP = """
import sys
from pathlib import Path
import tf_keras as keras
from bigmodel_cli.training.callbacks.checkpoints import save_model_atomically
model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(512), keras.layers.Dense(10)])
path = Path(sys.argv[1])
save_model_atomically(model, path)
print("saved", flush=True)
while True:
    save_model_atomically(model, path)
"""


@pytest.mark.slow
def test_a_kill_during_saves_leaves_a_loadable_model(tmp_path):
    import tf_keras as keras

    path = tmp_path / "model.keras"
    for delay in (0.05, 0.13, 0.31):
        saver = subprocess.Popen(
            [sys.executable, "-c", SAVE_LOOP, str(path)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        assert saver.stdout.readline().strip() == "saved"
        time.sleep(delay)
        saver.kill()
        saver.wait()
        model = keras.models.load_model(path, compile=False, safe_mode=True)
        assert model.count_params() == 64 * 512 + 512 + 512 * 10 + 10
        leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".model.keras.")]
        for stale in leftovers:  # a killed save leaves at most its temporary file
            stale.unlink()


# === Bad data, caught before the first step ==================================


@pytest.mark.parametrize(
    "overrides,key",
    [
        (["data.batch_size=2000"], "data.batch_size"),
        (["model.outputs=3"], "model.outputs"),
        (["model.input_shape=[7, 7, 1]"], "model.input_shape"),
        (["data.limit=4"], "data.test_split"),
    ],
    ids=["smaller than a batch", "labels beyond outputs", "shape mismatch", "too few to split"],
)
def test_data_that_cannot_train_exits_2_before_the_run(runner, tmp_path, overrides, key):
    args = ["train", str(CONFIGS / "digits_cnn.yaml"), "--set", f"output.dir={tmp_path}"]
    for override in overrides:
        args += ["--set", override]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert f"{key}:" in result.stderr and no_traceback(result.output)
    assert not any(tmp_path.iterdir())


def test_regression_targets_with_a_classification_loss(runner, tmp_path):
    data = tmp_path / "prices.csv"
    data.write_text("size,price\n" + "".join(f"{i},{i * 1.5 + 0.25}\n" for i in range(60)))
    config = tmp_path / "config.yaml"
    config.write_text(
        f"data: {{source: csv, path: {data}, target: price}}\n"
        "model: {type: mlp}\nloss: sparse_categorical_crossentropy\n"
        f"output: {{dir: {tmp_path / 'runs'}}}\n"
    )
    result = runner.invoke(app, ["train", str(config)])
    assert result.exit_code == 2, result.output
    assert "price" in result.stderr and no_traceback(result.output)
    assert not (tmp_path / "runs").exists()

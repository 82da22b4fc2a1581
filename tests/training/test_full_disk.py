"""A full disk mid-run is a message, the work done is kept, and `--resume` finishes the run
once space is freed, with the result of a run that never met a full disk.

Real ENOSPC, in real processes: the run directory is on a small tmpfs (skipped where
mounting is not permitted). The disk fills at exact moments: `BIGMODEL_KILL_AT=NAME:N:STOP`
pauses the run at a named point (bigmodel_cli/faults.py), the test fills the tmpfs (or
shrinks it to what is used), and lets the run go on into the full disk.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import forkserver, kill_env, no_traceback
from tests.helpers.disk import fill, free, mount_tmpfs, remount, unmount

CONFIG = {
    "name": "full-disk",
    "seed": 3,
    "data": {"source": "digits", "batch_size": 32, "limit": 600},
    "model": {"type": "mlp", "dense": [32], "dropout": 0.1},
    "optimizer": {"name": "adam", "learning_rate": 0.01},
    "train": {
        "epochs": 3,
        "steps_per_execution": 1,  # 15 steps an epoch, one per graph call
        "checkpoint": {"every_steps": 5},
        "deterministic": True,
    },
}
pytestmark = pytest.mark.slow


def write_config(folder: Path, output: Path) -> Path:
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "output": {"dir": str(output)}}))
    return path


def environment(stop_at: str | None = None) -> dict:
    return kill_env(f"{stop_at}:STOP" if stop_at else None)


def bigmodel(*args: str) -> subprocess.CompletedProcess:
    return forkserver.run(*args, env=environment())


def wait_until_stopped(process: forkserver.Process) -> None:
    """Until the run has stopped itself at its point (state T), or has ended."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        with open(f"/proc/{process.pid}/stat") as handle:
            if handle.read().rsplit(")", 1)[1].split()[0] == "T":
                return
        time.sleep(0.05)
    _, stderr = process.communicate()
    pytest.fail(f"the run never reached its stop point (exit {process.poll()}): {stderr[-2000:]}")


def run_into_full_disk(config: Path, disk: Path, stop_at: str, action) -> tuple[int, str]:
    """Train until `stop_at`, do `action(disk)` (fill it, shrink it), go on."""
    process = forkserver.start("train", str(config), env=environment(stop_at))
    try:
        wait_until_stopped(process)
        action(disk)
        os.kill(process.pid, signal.SIGCONT)
        _, stderr = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, stderr


def used_bytes(disk: Path) -> int:
    stats = os.statvfs(disk)
    return (stats.f_blocks - stats.f_bfree) * stats.f_frsize


def the_run(disk: Path) -> Path:
    runs = sorted((disk / "runs").glob("*/*"))
    assert len(runs) == 1, runs
    return runs[0]


def assert_intact(run: Path) -> int:
    """What the full disk left: a verified backup, the models saved before (each with its
    digest, loadable), no temporary file; returns the backup's sequence number."""
    import tf_keras as keras

    from bigmodel_cli import run_dir
    from bigmodel_cli.training import backup

    commit = backup.read_commit(run / "checkpoints" / "backup", config=run / "config.yaml")
    assert commit is not None and commit.checkpoint is not None
    for path in (run / "checkpoints" / "best.keras", run / "checkpoints" / "last.keras"):
        if path.exists() or run_dir.digest_path(path).exists():  # saved before the disk filled
            run_dir.verify_digest(path)
            keras.models.load_model(path, compile=False, safe_mode=True)
    leftovers = [p for p in run.rglob("*") if p.name.startswith(".") or p.name.endswith("_temp")]
    assert not leftovers, leftovers
    return commit.sequence


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("whole")
    result = bigmodel("train", str(write_config(folder, folder / "runs")), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


@pytest.fixture
def disk(tmp_path):
    folder = tmp_path / "disk"
    mount_tmpfs(folder, "64m")
    yield folder
    unmount(folder)


def assert_resumes_to_the_uninterrupted_result(run: Path, expected: dict) -> None:
    done = bigmodel("train", "--resume", str(run), "--json")
    assert done.returncode == 0 and no_traceback(done.stderr), done.stderr[-3000:]
    summary = json.loads(done.stdout)
    with open(run / "metrics.csv") as handle:
        epochs = [line.split(",")[0] for line in handle.read().splitlines()[1:]]
    assert epochs == [str(e) for e in range(1, expected["epochs_run"] + 1)]
    assert summary["epochs_run"] == expected["epochs_run"]
    assert summary["final"]["val_loss"] == pytest.approx(expected["final"]["val_loss"], abs=1e-4)
    assert summary["test"]["accuracy"] == pytest.approx(expected["test"]["accuracy"], abs=1e-3)


def test_a_disk_full_before_the_run_leaves_nothing(tmp_path, disk):
    config = write_config(tmp_path, disk / "runs")
    fill(disk)
    result = bigmodel("train", str(config))
    assert result.returncode == 2 and no_traceback(result.stderr), result.stderr[-3000:]
    assert "cannot write (No space left on device); nothing is kept" in result.stderr
    assert not list((disk / "runs").glob("*/*")), "a run directory was left behind"


@pytest.mark.parametrize(
    "stop_at,shrink,kept",
    [
        # The tmpfs made just big enough for what the run wrote by its second backup: the
        # epoch's end (last.keras, best.keras, the third backup) no longer fits.
        pytest.param("backup_committed:2", True, "Kept: the backup after epoch 1, step 10",
                     id="a disk just big enough for two backups"),
        # Filled at step 7 of epoch 2: the backup due at step 10 meets the full disk.
        pytest.param("train_batch_end:22", False, "Kept: the backup after epoch 2, step 5",
                     id="filled mid-epoch"),
        # Filled once training is over: model.keras cannot be written.
        pytest.param("after_fit:1", False, "Kept: the backup of the finished training",
                     id="filled as training ends"),
    ],
)  # fmt: skip
def test_a_full_disk_mid_run_keeps_the_work_and_resumes(
    tmp_path, disk, uninterrupted, stop_at, shrink, kept
):
    config = write_config(tmp_path, disk / "runs")
    sequence_at_stop = []

    def full(folder: Path) -> None:
        manifest = next(folder.glob("runs/*/*/checkpoints/backup/chief/manifest.json"))
        sequence_at_stop.append(json.loads(manifest.read_text())["sequence"])
        if shrink:
            remount(folder, f"size={used_bytes(folder) + 8192}")
        else:
            fill(folder)

    code, stderr = run_into_full_disk(config, disk, stop_at, full)
    assert code == 1 and no_traceback(stderr), stderr[-3000:]
    message = " ".join(stderr.split())
    assert "cannot write (No space left on device)" in message, message[-2000:]
    assert kept in message and "then resume with: bigmodel train --resume" in message
    run = the_run(disk)
    assert not (run / "summary.json").exists()
    # The last commit made before the disk filled is there and verifies.
    assert assert_intact(run) >= sequence_at_stop[0]

    free(disk)
    remount(disk, "size=64m")
    assert_resumes_to_the_uninterrupted_result(run, uninterrupted)

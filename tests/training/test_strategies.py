"""Every strategy that runs on a CPU trains, backs up, stops on SIGTERM and resumes to the
result of an uninterrupted run: one_device on /cpu:0, mirrored on two logical CPUs, and
multi_worker on two local processes (tf_keras's own BackupAndRestore refuses one_device,
which `auto` picks on a machine with one GPU)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.helpers import CONFIGS, forkserver, kill_env, no_traceback
from tests.helpers.cluster import free_port, tf_config

COMMON = [
    "--set", "train.epochs=3",
    "--set", "train.early_stopping=null",
    "--set", "train.steps_per_execution=2",
    "--set", "train.deterministic=true",
    "--set", "data.limit=1000",  # a training split of 800: 25 full batches of 32
    "--set", "model.dropout=0.2",
]  # fmt: skip


def bigmodel(*args: str, kill_at: str | None = None, env: dict | None = None):
    env = kill_env(kill_at, **(env or {}))
    # The CPU split into two logical devices first (for mirrored).
    return forkserver.run(*args, env=env, logical_cpus=2)


def metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
@pytest.mark.parametrize(
    "strategy",
    [
        ["--set", "distribute.strategy=one_device", "--set", "distribute.devices=[/cpu:0]"],
        ["--set", "distribute.strategy=mirrored"],
    ],
    ids=["one_device", "mirrored"],
)
def test_sigterm_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path, strategy):
    config = str(CONFIGS / "digits_mlp.yaml")
    whole = bigmodel("train", config, *COMMON, *strategy, "--set",
                     f"output.dir={tmp_path / 'whole'}", "--json")  # fmt: skip
    assert whole.returncode == 0, whole.stderr[-3000:]
    expected = json.loads(whole.stdout)

    # SIGTERM during the graph call that ends at step 16 of epoch 2 (25 steps an epoch).
    out = tmp_path / "stopped"
    stopped = bigmodel("train", config, *COMMON, *strategy, "--set", f"output.dir={out}",
                       kill_at="train_batch_end:21:TERM")  # fmt: skip
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert no_traceback(stopped.stderr)
    run = next(out.glob("*/*/config.yaml")).parent
    assert f"bigmodel train --resume {run}" in stopped.stderr
    assert not (run / "summary.json").exists()
    assert len(metrics(run)) == 1  # the interrupted epoch 2 was neither validated nor logged

    resumed = bigmodel("train", "--resume", str(run), "--json")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming at epoch 2, step 16 of 25" in resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["strategy"] == expected["strategy"] == strategy[1].split("=")[1]
    assert summary["replicas"] == expected["replicas"]
    assert summary["resumed_at"] == {"epoch": 1, "batch": 16}
    assert [int(r["epoch"]) for r in metrics(run)] == [1, 2, 3]
    # The interrupted epoch's training metrics cover the whole epoch, as uninterrupted.
    for mine, theirs in zip(metrics(run), metrics(Path(expected["run_dir"])), strict=True):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert float(mine[key]) == pytest.approx(float(theirs[key]), abs=1e-5), key
    assert summary["test"]["accuracy"] == pytest.approx(expected["test"]["accuracy"], abs=1e-6)
    assert not (run / "checkpoints" / "backup").exists()  # removed once the run completed


@pytest.mark.multiprocess
def test_two_workers_stopped_by_sigterm_resume_and_finish(tmp_path):
    out = tmp_path / "runs"

    def workers(*args: str, kill_at: str | None = None) -> list[forkserver.Process]:
        ports = [free_port(), free_port()]
        started = []
        for index in (0, 1):
            env = kill_env(kill_at, TF_CONFIG=tf_config(ports, index))
            started.append(forkserver.start(*args, env=env))
        return started

    # A scheduler preempting the job signals every worker; here both at the same step.
    first = workers("train", str(CONFIGS / "digits_mlp.yaml"), *COMMON, "--set",
                    "distribute.strategy=multi_worker", "--set", f"output.dir={out}",
                    kill_at="train_batch_end:18:TERM")  # fmt: skip
    for worker in first:
        _, err = worker.communicate(timeout=600)
        assert worker.returncode == 143, err[-3000:]
        assert no_traceback(err)
    run = next(out.glob("*/*/config.yaml")).parent
    second = workers("train", "--resume", str(run), "--json")
    outputs = [w.communicate(timeout=600) for w in second]
    for worker, (_, err) in zip(second, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:]
    summary = json.loads(outputs[0][0])
    assert summary["resumed_at"] == {"epoch": 1, "batch": 10}  # calls 14-18: epoch 2
    assert [int(r["epoch"]) for r in metrics(run)] == [1, 2, 3]
    assert summary["test"]["accuracy"] > 0.8

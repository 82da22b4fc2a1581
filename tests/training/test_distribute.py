"""tf.distribute: strategy choice, TF_CONFIG checks, mirrored == default, two real workers."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bigmodel_cli.cli import app
from bigmodel_cli.config import DistributeConfig
from bigmodel_cli.distribution import _check_tf_config, resolve_strategy_name
from bigmodel_cli.errors import UserError
from bigmodel_cli.rendezvous import wait_for_cluster
from tests.helpers import CONFIGS, REPO, forkserver, no_traceback
from tests.helpers.cluster import free_port, tf_config

# === Choosing a strategy ======================================================


@pytest.mark.parametrize(
    "env,gpus,expected",
    [
        ({}, 0, "default"),
        ({}, 1, "one_device"),
        ({}, 4, "mirrored"),
        ({"TF_CONFIG": tf_config([1111, 2222], 0)}, 0, "multi_worker"),
        ({"TF_CONFIG": tf_config([1111], 0)}, 2, "mirrored"),  # one worker: local devices
        ({"TPU_NAME": "my-tpu"}, 0, "tpu"),
    ],
)
def test_auto_picks_the_strategy_for_the_machine(monkeypatch, env, gpus, expected):
    for key in ("TF_CONFIG", "TPU_NAME", "COLAB_TPU_ADDR"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert resolve_strategy_name(DistributeConfig(), gpus) == expected


def test_explicit_strategy_is_kept():
    assert resolve_strategy_name(DistributeConfig(strategy="mirrored"), 0) == "mirrored"


def test_tf_config_problems_are_all_reported():
    with pytest.raises(UserError) as caught:
        _check_tf_config(
            {
                "cluster": {"worker": ["nohost", "h:99999"], "ps": []},
                "task": {"type": "worker", "index": 5},
            }
        )
    text = "\n".join(caught.value.problems)
    assert "'nohost' is not host:port" in text and "'h:99999'" in text
    assert "cluster.ps must be a non-empty list" in text and "task.index 5" in text


@pytest.mark.parametrize("value", ["{bad json", '{"cluster": 3}'])
def test_malformed_tf_config_exits_2_without_a_run(runner, tmp_path, monkeypatch, value):
    monkeypatch.setenv("TF_CONFIG", value)
    result = runner.invoke(
        app, ["train", str(CONFIGS / "digits_mlp.yaml"), "--set", f"output.dir={tmp_path}"]
    )
    assert result.exit_code == 2, result.output
    assert "TF_CONFIG" in result.stderr and no_traceback(result.output)
    assert not any(tmp_path.iterdir())


# === Rendezvous ===============================================================


def test_rendezvous_returns_when_every_worker_is_up():
    ports = [free_port(), free_port()]
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            wait_for_cluster(json.loads(tf_config(ports, index)), timeout_seconds=20)
        except BaseException as err:  # noqa: BLE001 - surfaced by the assert below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in (0, 1)]
    threads[0].start()
    time.sleep(0.5)  # the second worker comes late, as real ones do
    threads[1].start()
    for thread in threads:
        thread.join(30)
    assert not errors and not any(t.is_alive() for t in threads)


def test_rendezvous_gives_up_naming_the_missing_worker():
    ports = [free_port(), free_port()]
    started = time.monotonic()
    with pytest.raises(UserError) as caught:
        wait_for_cluster(json.loads(tf_config(ports, 0)), timeout_seconds=1)
    assert time.monotonic() - started < 10
    assert f"127.0.0.1:{ports[1]}" in caught.value.problems[0]


# === Mirrored on two logical CPUs agrees with the default strategy ============

MIRRORED_SCRIPT = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from bigmodel_cli.config.load import load_config
from bigmodel_cli.training import TrainOptions, train
path, out = sys.argv[1], sys.argv[2]
results = {}
for strategy in ("mirrored", "default"):
    # limit 1600: a training split of 1280 = 40 full batches of 32, no uneven last batch
    overrides = [f"distribute.strategy={strategy}", "train.epochs=3", "model.dropout=0",
                 "data.limit=1600",
                 "train.early_stopping=null", f"output.dir={out}/{strategy}"]
    summary = train(load_config(path, overrides), TrainOptions(progress=False))
    with open(summary["run_dir"] + "/metrics.csv") as handle:
        rows = list(__import__("csv").DictReader(handle))
    results[strategy] = {"replicas": summary["replicas"],
                         "loss": [float(r["loss"]) for r in rows],
                         "val_loss": [float(r["val_loss"]) for r in rows]}
print(json.dumps(results))
"""

# Same global batch, seed, data order and initial weights, and only full batches: the
# per-replica gradients of two half batches sum to the full batch's gradient, so only the
# order of float32 sums differs (measured: 3e-7 relative after 3 epochs).
LOSS_RTOL = 1e-4


@pytest.mark.slow
def test_mirrored_on_two_devices_matches_the_default_strategy(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, str(CONFIGS / "digits_mlp.yaml"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads(result.stdout.strip().splitlines()[-1])
    assert runs["mirrored"]["replicas"] == 2 and runs["default"]["replicas"] == 1
    for key in ("loss", "val_loss"):
        assert runs["mirrored"][key] == pytest.approx(runs["default"][key], rel=LOSS_RTOL), key


# === Two workers on 127.0.0.1 =================================================


def start_worker(ports: list[int], index: int, out: Path, *overrides: str) -> forkserver.Process:
    env = {**os.environ, "TF_CONFIG": tf_config(ports, index)}
    command = [
        "train",
        str(CONFIGS / "digits_mlp.yaml"),
        "--json",
        "--set",
        "train.epochs=2",
        "--set",
        "distribute.strategy=multi_worker",
        "--set",
        f"output.dir={out}",
        *overrides,
    ]
    return forkserver.start(*command, env=env)


@pytest.mark.multiprocess
def test_two_workers_train_one_run_directory(runner, tmp_path):
    ports = [free_port(), free_port()]
    workers = [start_worker(ports, i, tmp_path / "runs") for i in (0, 1)]
    outputs = [w.communicate(timeout=600) for w in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:]
    chief, other = (json.loads(out) for out, _ in outputs)
    assert chief["replicas"] == other["replicas"] == 2
    assert chief["strategy"] == "multi_worker"
    assert other["run_dir"] is None  # only the chief keeps a run directory
    runs = [p for p in (tmp_path / "runs").rglob("summary.json")]
    assert [p.parent for p in runs] == [Path(chief["run_dir"])]
    with open(Path(chief["run_dir"]) / "metrics.csv", newline="") as handle:
        assert [int(r["epoch"]) for r in csv.DictReader(handle)] == [1, 2]
    assert chief["test"]["accuracy"] > 0.8
    report = runner.invoke(app, ["evaluate", chief["run_dir"], "--json"])
    assert report.exit_code == 0, report.output
    accuracy = json.loads(report.stdout)["metrics"]["accuracy"]
    assert accuracy == pytest.approx(chief["test"]["accuracy"], abs=1e-6)


@pytest.mark.multiprocess
def test_a_worker_whose_peer_never_comes_exits_2_in_bounded_time(tmp_path):
    ports = [free_port(), free_port()]
    started = time.monotonic()
    lonely = start_worker(ports, 0, tmp_path / "runs", "--set", "distribute.timeout_seconds=3")
    out, err = lonely.communicate(timeout=120)
    assert lonely.returncode == 2, err[-3000:]
    assert f"127.0.0.1:{ports[1]}" in err and "distribute.timeout_seconds" in err
    assert time.monotonic() - started < 60
    assert not (tmp_path / "runs").exists()


def metrics_rows(out: Path) -> list[dict]:
    found = list(out.glob("*/*/metrics.csv"))
    if not found:
        return []
    with open(found[0], newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.multiprocess
def test_a_worker_lost_mid_training_stops_the_other_cleanly_and_both_resume(tmp_path):
    """SIGKILL one of two workers after an epoch: the survivor exits 1 (no traceback, no
    hang) with the resume command; both workers resumed from the chief's run directory
    finish the run with each epoch once."""
    epochs = 6
    out = tmp_path / "runs"
    ports = [free_port(), free_port()]
    workers = [start_worker(ports, i, out, "--set", f"train.epochs={epochs}") for i in (0, 1)]
    deadline = time.monotonic() + 300
    while len(metrics_rows(out)) < 2 and time.monotonic() < deadline:
        assert workers[0].poll() is None, workers[0].communicate()[1][-3000:]
        time.sleep(0.05)
    workers[1].kill()
    killed = time.monotonic()
    _, err = workers[0].communicate(timeout=180)
    assert workers[0].returncode == 1, err[-3000:]
    assert time.monotonic() - killed < 120
    assert "a worker stopped during training" in err and "task:1" in err, err[-3000:]
    assert "Traceback" not in err
    run = next(out.glob("*/*/config.yaml")).parent
    assert f"--resume {run}" in " ".join(err.split())
    assert len(metrics_rows(out)) < epochs

    ports = [free_port(), free_port()]
    resumed = [
        forkserver.start(
            "train",
            "--resume",
            str(run),
            "--json",
            env={**os.environ, "TF_CONFIG": tf_config(ports, i)},
        )
        for i in (0, 1)
    ]
    outputs = [w.communicate(timeout=600) for w in resumed]
    for worker, (_, err) in zip(resumed, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:]
    summary = json.loads(outputs[0][0])
    assert summary["resumed_from"] == str(run) and summary["resumed_at"]["epoch"] >= 1
    assert [int(r["epoch"]) for r in metrics_rows(out)] == list(range(1, epochs + 1))
    assert summary["test"]["accuracy"] > 0.8

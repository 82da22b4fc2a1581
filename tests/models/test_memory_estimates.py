"""`validate`'s memory estimate of each shipped config is within a factor of 2 of what a
short training run of it measures (issue 10, item 5). Each run is a fresh process (a
forked one would not count the file pages TensorFlow's import touched), so this file
is the costliest of the suite and sits alone, for the test processes to balance."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bigmodel_cli.config.load import load_config
from bigmodel_cli.training.smoke import one_epoch_schedule
from tests.helpers import CONFIGS
from tests.helpers import SHIPPED_CONFIGS as ALL_SHIPPED
from tests.helpers.peak_rss import run_measured


def _trains_alone(path: Path) -> bool:
    """A config that `bigmodel train` runs as it is: not one that waits for a run to
    start from or learn from on the command line (init.from, distill.teacher)."""
    cfg = load_config(path)
    waits_for_parent = cfg.init is not None and cfg.init.from_ is None
    return not waits_for_parent and (cfg.distill is None or cfg.distill.teacher is not None)


SHIPPED_CONFIGS = [path for path in ALL_SHIPPED if _trains_alone(path)]

# === The estimate against measured peaks ========================================

BASELINE_REPORT = """
with open("/proc/self/status") as status:
    print(next(line.split()[1] for line in status if line.startswith("VmHWM")))
"""


@pytest.fixture(scope="module")
def tensorflow_baseline(tmp_path_factory) -> int:
    """Peak RSS of a process that only imports what `bigmodel train` does. First, one
    run measures this machine's peak FLOP/s into the (per test session) cache, as any
    machine's first run does once: the runs compared then measure only themselves."""
    warm_up = run_measured(
        "train", str(CONFIGS / "examples" / "linear_regression_y_2x.yaml"), "--set",
        "train.epochs=1", "--set", f"output.dir={tmp_path_factory.mktemp('warm-up')}",
    )  # fmt: skip
    assert warm_up.returncode == 0, warm_up.stderr[-3000:]
    code = (
        "import bigmodel_cli.cli, bigmodel_cli.training\n"
        "from bigmodel_cli.tfenv import import_tensorflow\nimport_tensorflow()\n"
    )
    process = subprocess.run(
        [sys.executable, "-c", code + BASELINE_REPORT], capture_output=True, text=True
    )
    assert process.returncode == 0, process.stderr
    return int(process.stdout.split()[-1]) * 1024


@pytest.mark.slow
@pytest.mark.multiprocess
def test_estimates_are_within_2x_of_measured_peaks(runner, tensorflow_baseline, tmp_path):
    """For each shipped config: validate's estimate vs. the peak RSS of one short training
    run above the TensorFlow baseline (the estimate counts what the config adds)."""
    from bigmodel_cli.cli import app

    estimates = {}
    for path in SHIPPED_CONFIGS:  # in this process: validate allocates no model
        shown = runner.invoke(app, ["validate", str(path), "--json"])
        assert shown.exit_code == 0, shown.output
        estimates[path] = json.loads(shown.stdout)["memory_estimate_bytes"]

    def measure(path: Path) -> int:
        schedule = [f"--set={o}" for o in one_epoch_schedule(load_config(path))]
        trained = run_measured(
            "train", str(path), "--json", "--set", "train.epochs=1", "--set",
            "train.steps_per_epoch=3", "--set", "train.validation_steps=2", "--set",
            f"output.dir={tmp_path / path.stem}", *schedule,
        )  # fmt: skip
        assert trained.returncode == 0, trained.stderr[-3000:]
        summary = json.loads(trained.stdout)
        assert summary["memory_estimate_bytes"] == estimates[path]  # train checks the same
        assert summary["peak_rss_bytes"] <= trained.peak_rss
        return trained.peak_rss - tensorflow_baseline

    with ThreadPoolExecutor(2) as pool:
        added = dict(zip(SHIPPED_CONFIGS, pool.map(measure, SHIPPED_CONFIGS), strict=True))
    report = "\n".join(
        f"{path.relative_to(CONFIGS)}: estimate {estimates[path] / 1e6:.0f} MB, "
        f"measured {added[path] / 1e6:.0f} MB"
        for path in SHIPPED_CONFIGS
    )
    for path in SHIPPED_CONFIGS:
        assert added[path] / 2 <= estimates[path] <= added[path] * 2, report

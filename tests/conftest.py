"""Shared fixtures: a CLI runner, config files written on the fly, quiet TensorFlow."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The measured peak FLOP/s is cached per machine; tests (some running two workers on the
# same cores, which halves what each measures) must not write the user's cache.
os.environ["BIGMODEL_CACHE_DIR"] = tempfile.mkdtemp(prefix="bigmodel-test-cache-")


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def write_config(tmp_path: Path):
    """Write a config mapping (or raw text) to a file; output.dir points inside tmp_path."""

    def write(content: dict | str, name: str = "config.yaml") -> Path:
        path = tmp_path / name
        if isinstance(content, dict):
            content = dict(content)
            content.setdefault("output", {"dir": str(tmp_path / "runs")})
            path.write_text(yaml.safe_dump(content, sort_keys=False))
        else:
            path.write_text(content)
        return path

    return write


# The tests that cost most (each starts many TensorFlow processes), with their serial
# seconds on 2 cores. The suite's CPU work is ~28 minutes on 2 cores and more test
# processes do not shorten it (these tests already use both cores), so CI's 20 minutes
# cannot hold them: `make test` skips them, `make test-heavy` runs them (see README, Tests).
HEAVY = {
    "tests/models/test_memory_estimates.py::test_estimates_are_within_2x_of_measured_peaks": 150,
    "tests/training/test_kill_points.py::test_a_run_killed_at_every_stage_ends_as_the_uninterrupted_run": 115,  # noqa: E501
    "tests/training/test_distribute.py::test_a_worker_lost_mid_training_stops_the_other_cleanly_and_both_resume": 80,  # noqa: E501
    "tests/cli/test_shipped_configs.py::test_smoke_runs_every_shipped_config": 76,
    "tests/cli/test_shipped_configs.py::test_each_architecture_learns[transformer_lm.yaml-accuracy-0.2]": 60,  # noqa: E501
    "tests/cli/test_shipped_configs.py::test_each_architecture_learns[transformer_classifier.yaml-accuracy-0.6]": 30,  # noqa: E501
    "tests/training/test_strategies.py::test_sigterm_mid_epoch_then_resume_matches_an_uninterrupted_run[mirrored]": 39,  # noqa: E501
    "tests/training/test_strategies.py::test_two_workers_stopped_by_sigterm_resume_and_finish": 38,
    "tests/training/test_distribute.py::test_two_workers_train_one_run_directory": 28,
    "tests/experiments/test_tune.py::test_a_killed_search_resumes_without_repeating_a_trial": 28,
    "tests/training/test_reliability.py::test_resume_position_is_exact_with_several_steps_per_execution": 28,  # noqa: E501
    "tests/data/test_text_data.py::test_character_tokenizer_trains": 22,
}


def pytest_collection_modifyitems(items):
    for item in items:
        if item.nodeid in HEAVY:
            item.add_marker(pytest.mark.heavy)

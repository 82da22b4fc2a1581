"""Helpers the tests import (not fixtures: those live in conftest.py): the repository's
paths, and training through the CLI runner."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
CONFIGS = REPO / "configs"
SHIPPED_CONFIGS = sorted(CONFIGS.rglob("*.yaml"))


FIXTURES = REPO / "tests" / "fixtures"


def no_traceback(text: str) -> bool:
    return "Traceback" not in text


def kill_env(kill_at: str | None = None, **extra: str) -> dict:
    """This environment (plus `extra`) for a CLI subprocess, with `BIGMODEL_KILL_AT` set
    to `kill_at` (faults.py's stop point) or removed: a stop point left set in the shell
    must not reach a run that asks for none."""
    env = {**os.environ, **extra}
    env.pop("BIGMODEL_KILL_AT", None)
    if kill_at:
        env["BIGMODEL_KILL_AT"] = kill_at
    return env


def train(runner, config: Path, *args: str):
    """`bigmodel train CONFIG ARGS...` through the CLI runner; never a traceback."""
    from bigmodel_cli.cli import app

    result = runner.invoke(app, ["train", str(config), *args])
    assert no_traceback(result.output), result.output
    return result


def train_into(runner, config: Path, tmp_path: Path, *args: str):
    """`train` with `output.dir` in `tmp_path`/runs."""
    return train(runner, config, "--set", f"output.dir={tmp_path / 'runs'}", *args)


def run_dir_of(result) -> Path:
    """The run directory a successful `bigmodel train` printed last."""
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1])

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

"""Bugs the config fuzzing (test_fuzz_config.py) found, each pinned as one broken config
that `validate --no-build` and `train` must refuse with a given phrase."""

from __future__ import annotations

import shutil
import time
from typing import Any

import pytest

from bigmodel_cli.cli import app
from tests.helpers.fuzz_files import flow_bomb
from tests.helpers.fuzz_runner import CASE, RUNNER, RUNS, SECONDS, BadInput, dump, run_bad_input


@pytest.fixture(scope="module", autouse=True)
def _remove_scratch():
    yield
    shutil.rmtree(CASE.parent, ignore_errors=True)


def minimal(extra: str = "", **top: Any) -> str:
    document = {"name": "t", "data": {"source": "iris"}, "model": {"type": "mlp", "dense": [4]}}
    return dump({**document, "output": {"dir": str(RUNS)}, **top}).decode() + extra


REGRESSIONS = [
    # (what, config text, a phrase the error must contain)
    ("rich markup in a key", minimal("'[/]': 1\n"), "the config does not accept `[/]`"),
    ("rich markup in a value", minimal("extra: '[bold]x[/]'\n"), "extra='[bold]x[/]'"),
    (
        "alias bomb under the alias limit",  # 48 aliases, 6**8 values in a layer argument
        minimal(
            model={
                "type": "sequential",
                "layers": [{"type": "Dense", "units": 1, "kernel_size": "@"}],
            }
        ).replace("'@'", flow_bomb(6, 8)),
        "once aliases are expanded",
    ),
    ("duplicate key", minimal("seed: 1\nseed: 2\n"), "found duplicate key 'seed'"),
    ("infinite clipnorm", minimal(optimizer={"clipnorm": float("inf")}), "optimizer.clipnorm:"),
    (
        "infinite schedule",
        minimal(optimizer={"learning_rate": {"schedule": "cosine", "initial": float("inf")}}),
        "optimizer.learning_rate.initial: input should be a finite number",
    ),
    (
        "NaN and negative piecewise rates",
        minimal(
            optimizer={
                "learning_rate": {
                    "schedule": "piecewise",
                    "boundaries": [1, 2],
                    "values": [float("nan"), -1.0, 0.1],
                }
            }
        ),
        "optimizer.learning_rate.values.1: input should be greater than or equal to 0",
    ),
    (
        "units beyond int32",
        minimal(model={"type": "mlp", "dense": [2**70]}),
        "model.dense.0: input should be less than 2147483648",
    ),
    (
        "steps beyond int32",
        minimal(train={"steps_per_epoch": 2**40}),
        "train.steps_per_epoch: input should be less than 2147483648",
    ),
    (
        "warmup beyond int32",
        minimal(
            optimizer={
                "learning_rate": {"schedule": "cosine", "initial": 0.1, "warmup_steps": 2**40}
            }
        ),
        "optimizer.learning_rate.warmup_steps:",
    ),
    ("run name over 255 bytes", minimal(name="😀" * 64), "name: a run name must fit"),
    ("run name with a newline", minimal(name="a\nb"), "name: a run name must be a plain"),
    ("NUL in output.dir", minimal(output={"dir": "runs\x00"}), "output.dir: a path cannot"),
    ("NUL in base", minimal(base="a\x00b"), "base: not a usable path"),
    ("base name too long", minimal(base="x" * 5000), "base: not a usable path"),
]


@pytest.mark.parametrize("command", ["validate", "train"])
@pytest.mark.parametrize("case", REGRESSIONS, ids=[c[0] for c in REGRESSIONS])
def test_regression(command, case):
    _, text, phrase = case
    result = run_bad_input(command, BadInput("regression", {"config.yaml": text.encode()}))
    assert phrase in result.stderr, result.stderr


@pytest.mark.parametrize("command", ["validate", "train"])
def test_a_huge_file_is_refused_without_reading_it(command, tmp_path):
    """`base:` may name any file; an 8 GiB (sparse) one is refused after reading 1 MB."""
    with open(tmp_path / "huge.yaml", "wb") as handle:
        handle.truncate(8 * 2**30)
    start = time.perf_counter()
    result = RUNNER.invoke(app, [command, str(tmp_path / "huge.yaml")])
    assert time.perf_counter() - start < SECONDS
    (tmp_path / "huge.yaml").unlink()
    assert result.exit_code == 2 and "too big for a config" in result.stderr, result.output

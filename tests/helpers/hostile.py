"""The hostile-input table's machinery: a row (Case), what a row needs set up (Setup:
folders, files, a damaged copy of a trained run, placeholders), training a run in this
process, and a read-only tmpfs holding copies of runs."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from bigmodel_cli.cli import app
from tests.helpers.disk import copy_run, remount

TINY = {
    "name": "tiny",
    "seed": 1,
    "data": {"source": "digits", "batch_size": 64, "limit": 400},
    "model": {"type": "mlp", "dense": [8]},
    "train": {"epochs": 2},
}
LM = {
    "name": "tiny-lm",
    "seed": 1,
    "data": {
        "source": "text_corpus",
        "paths": ["corpus.txt"],
        "sequence_length": 16,
        "validation_split": 0.1,
        "test_split": 0.1,
        "batch_size": 8,
    },
    "model": {
        "type": "transformer",
        "task": "language_model",
        "d_model": 8,
        "num_heads": 2,
        "num_layers": 1,
    },
    "train": {"epochs": 1, "steps_per_epoch": 4},
}


CACHES = {"KERAS_HOME": ".keras", "MPLCONFIGDIR": ".config/matplotlib", "XDG_CACHE_HOME": ".cache"}


@dataclass(frozen=True)
class Case:
    """One hostile input: the command (`{cfg}`, `{run}`, `{tmp}`, `{home}`, `{disk}`,
    `{ro}` filled in), what it must exit with, and a fragment of what it must say."""

    id: str
    args: list[str]
    exit: int
    fragment: str
    config: dict | str | None = None  # overrides of TINY, or the whole text of {cfg}
    run: str | None = None  # "finished", "interrupted" or "lm": {run} is a copy of it
    damage: Any = None  # done to the copy of the run
    files: dict[str, str] = field(default_factory=dict)  # extra files ("->x": a symlink)
    fill: tuple[str, int] | None = None  # fill {disk} before the n-th write of this file
    read_only: bool = False  # needs {ro}, a read-only file system
    slow: bool = False

    @property
    def disk(self) -> bool:
        return self.fill is not None


class Setup:
    """The folders, files and run copy of one case, with its placeholders."""

    def __init__(self, case: Case, tmp: Path, request, monkeypatch):
        self.tmp, self.home = tmp, tmp / "home"
        self.home.mkdir()
        if "~" in " ".join(case.args) + str(case.config):
            # Libraries write caches under HOME when first imported (~/.keras/keras.json,
            # ~/.cache/matplotlib): they keep their usual places, only `~` moves.
            real = Path.home()
            for name, default in CACHES.items():
                monkeypatch.setenv(name, os.environ.get(name, str(real / default)))
            monkeypatch.setenv("HOME", str(self.home))
        self.disk = None
        if case.disk:
            self.disk = request.getfixturevalue("disk") / re.sub(r"\W+", "_", case.id)
            self.disk.mkdir()
        self.ro = None
        if case.read_only:
            read_only = request.getfixturevalue("read_only")
            needs_runs = any("{ro}/finished" in a or "{ro}/interrupted" in a for a in case.args)
            self.ro = read_only.holding(request.getfixturevalue("trained") if needs_runs else {})
        self.out = (self.disk or tmp) / "runs"
        self.values = {"tmp": str(tmp), "home": str(self.home), "disk": str(self.disk),
                       "ro": str(self.ro)}  # fmt: skip
        for name, content in case.files.items():
            if content.startswith("->"):
                (tmp / name).symlink_to(content[2:])
            else:
                (tmp / name).write_text(content)
        if case.config is not None:
            self._write_config(case.config)
        if case.run is not None:
            runs = request.getfixturevalue("trained")
            run = copy_run(runs[case.run], (self.disk or tmp) / "run")
            if case.damage is not None:
                case.damage(run)
            self.values["run"] = str(run)
        np.savez(tmp / "x.npz", x=np.zeros((2, 64), np.float32))

    def _write_config(self, config: dict | str) -> None:
        if isinstance(config, str):
            text = config
        else:
            document = {**TINY, "output": {"dir": str(self.out)}}
            for key, value in config.items():
                document[key] = {**document.get(key, {}), **value}
            text = yaml.safe_dump(document, sort_keys=False)
        self.values["cfg"] = str(self.tmp / "config.yaml")
        (self.tmp / "config.yaml").write_text(self.fill_in(text))

    def fill_in(self, text: str) -> str:
        for key, value in self.values.items():
            text = text.replace("{" + key + "}", value)
        return text

    @property
    def roots(self) -> list[Path]:
        return [self.tmp] + ([self.disk] if self.disk else [])


def train_run(tmp: Path, config: dict, *args: str, stop_at: tuple[str, int] | None = None,
              expect: int = 0) -> Path:  # fmt: skip
    """Train `config` in this process; `stop_at` (a faults point, its count) interrupts it
    there, as a Ctrl-C would (exit 130, the backups so far kept)."""
    from bigmodel_cli import faults

    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump({**config, "output": {"dir": str(tmp / "runs")}}))
    point = faults.point

    def interrupt(name: str, count: int | None = None) -> None:
        if stop_at is not None and (name, count) == stop_at:
            raise KeyboardInterrupt
        point(name, count)

    faults.point = interrupt
    try:
        result = CliRunner().invoke(app, ["train", str(path), *args])
    finally:
        faults.point = point
    assert result.exit_code == expect, result.output
    return next((tmp / "runs").glob("*/*"))


class ReadOnly:
    """A read-only tmpfs holding an empty folder, an output folder with a run name in it,
    and (once a case asks) copies of the trained runs, put there while it was writable."""

    def __init__(self, root: Path):
        self.root = root
        (root / "empty").mkdir()
        (root / "runs" / "tiny").mkdir(parents=True)
        remount(root, "ro")

    def holding(self, runs: dict[str, Path]) -> Path:
        missing = {name: run for name, run in runs.items() if not (self.root / name).exists()}
        if missing:
            remount(self.root, "rw")
            for name, run in missing.items():
                copy_run(run, self.root / name)
            remount(self.root, "ro")
        return self.root


def params(cases: list[Case]) -> list:
    return [
        pytest.param(case, id=case.id, marks=[pytest.mark.slow] if case.slow else [])
        for case in cases
    ]

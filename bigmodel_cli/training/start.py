"""Where a run starts: a fresh config, or a run directory to resume from its backup.

Reading the start touches no TensorFlow: a wrong `--resume` folder, a changed
config.yaml or a damaged backup is refused before anything heavy loads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from bigmodel_cli import console, run_dir
from bigmodel_cli.config import Config
from bigmodel_cli.config import load as config_load
from bigmodel_cli.errors import UserError
from bigmodel_cli.training.backup import Commit, Position, read_commit
from bigmodel_cli.training.options import TrainOptions


@dataclass(frozen=True)
class Start:
    """Where a run starts: a fresh config, or a run directory to resume."""

    cfg: Config
    base_dir: Path  # relative data paths are relative to it
    run: run_dir.RunDir | None = None
    resumed_from: str | None = None
    commit: Commit | None = None  # the verified last backup of a resumed run
    finished: dict | None = None  # the summary of a run that already completed

    @property
    def position(self) -> Position:
        return self.commit.position if self.commit is not None else Position()

    @property
    def state(self) -> dict:
        return self.commit.state if self.commit is not None else {}

    def in_epochs_of(self, steps_per_epoch: int) -> Start:
        """This start, its backup's position counted in epochs of `steps_per_epoch`
        steps (known once the data is loaded)."""
        if self.commit is None:
            return self
        return dataclasses.replace(self, commit=self.commit.normalized(steps_per_epoch))


def read_start(cfg: Config | None, options: TrainOptions) -> Start:
    """The config to train, or the run directory `options.resume` and its last backup."""
    if options.resume is None:
        if cfg is None:
            raise UserError("missing CONFIG: bigmodel train CONFIG (or --resume RUN_DIR)")
        base_dir = options.config_path.parent if options.config_path else Path.cwd()
        return Start(cfg, base_dir)
    path = run_dir.absolute(options.resume, "--resume")
    run = run_dir.RunDir(path)
    if not run_dir.is_run_dir(path):
        raise UserError(f"--resume {options.resume}: not a run directory (no {run_dir.CONFIG})")
    cfg = config_load.config_from_mapping(config_load.read_yaml_mapping(run.config))
    previous = run_dir.read_json(run.summary) if run.summary.exists() else {}
    if previous.get("status") == "completed":
        finished = {**previous, "run_dir": str(run.root)}
        return Start(cfg, run.root, run, str(run.root), finished=finished)
    commit = read_commit(run.backup, config=run.config)
    start = Start(cfg, run.root, run, str(run.root), commit=commit)
    run_dir.check_metrics(run.metrics, start.position.epoch, run.backup)
    return start


def resume_note(start: Start, steps_per_epoch: int) -> None:
    """Say where a resumed run picks up (nothing for a fresh one)."""
    cfg = start.cfg
    if start.commit is None or start.commit.checkpoint is None:
        if start.run is not None:
            console.note(f"resuming {start.run.root}: no backup yet, starting from the first step")
        return
    position = start.position
    if start.commit.finished or start.state.get("ending") or position.epoch >= cfg.train.epochs:
        console.note("resuming: training had finished; writing the run's final files")
    elif position.step:
        console.note(
            f"resuming at epoch {position.epoch + 1}, step {position.step} of "
            f"{steps_per_epoch} (of {cfg.train.epochs} epochs)"
        )
    else:
        console.note(f"resuming at epoch {position.epoch + 1} of {cfg.train.epochs}")

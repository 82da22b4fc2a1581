"""How `bigmodel train` was asked to run, beyond the config itself."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TrainOptions:
    """How `bigmodel train` was asked to run (beyond the config itself)."""

    config_path: Path | None = None
    overrides: list[str] = field(default_factory=list)
    run_dir: Path | None = None
    resume: Path | None = None
    progress: bool = True  # progress bars and notes on stderr (off for smoke runs)
    # Off for smoke runs, whose few steps need neither: scoring the test split with the
    # saved model at the end, and checkpoints/best.keras and last.keras at each epoch
    # (model.keras and the resume backup are still written).
    score_test: bool = True
    save_checkpoints: bool = True
    command: list[str] = field(default_factory=lambda: list(sys.argv))
    # More Keras callbacks (e.g. a tuner's pruner), run after the run's own: at each
    # epoch end they see the epoch committed (metrics row, checkpoints, backup).
    callbacks: list = field(default_factory=list)

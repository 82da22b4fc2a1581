"""`bigmodel train`'s entry: read where the run starts, then run the recipe.

What needs no TensorFlow comes first (the config, the run directory to resume and its
backup, a run that already finished), so those answers are quick; TensorFlow loads
with the recipe, under the start-up deadline of strategies that wait for other machines.
"""

from __future__ import annotations

from typing import Any

from bigmodel_cli import console
from bigmodel_cli.config import Config
from bigmodel_cli.training.backup_writer import remove as remove_backup
from bigmodel_cli.training.options import TrainOptions
from bigmodel_cli.training.start import read_start


def train(cfg: Config | None, options: TrainOptions) -> dict[str, Any]:
    """Train per `cfg` (or resume `options.resume`); return the content of summary.json."""
    start = read_start(cfg, options)
    if start.finished is not None:
        # A kill between summary.json and the backup's removal leaves the backup behind.
        remove_backup(start.run.backup)
        console.note(f"{start.run.root}: this run already finished; nothing to resume.")
        return start.finished
    from bigmodel_cli import distribution

    # Strategies that wait for other machines get a bound on start-up; it is cancelled
    # once the model exists, and on every way out (a data error must not leave it armed).
    deadline = distribution.startup_deadline(start.cfg.distribute)
    try:
        from bigmodel_cli.training.recipe import run  # heavy: TensorFlow loads here

        return run(start, options, deadline)
    finally:
        if deadline is not None:
            deadline.cancel()

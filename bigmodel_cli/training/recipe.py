"""The training recipe: each step in the order it happens, each handing the next a
small record of what it decided (Runtime, Prepared, Built, Claimed, Callbacks).

Everything that can be the user's fault (config, data, model shape) is checked before
the run directory is claimed, so a mistake never leaves an empty or half-made run
behind. Under multi-worker training every worker runs this same recipe; only the chief
writes the run directory (see run_directory.py).
"""

from __future__ import annotations

import time
from typing import Any

from bigmodel_cli import console, faults
from bigmodel_cli.distribution import StartupDeadline
from bigmodel_cli.training.build import build_and_compile
from bigmodel_cli.training.build_callbacks import build_callbacks
from bigmodel_cli.training.callbacks.signals import stop_on_signals
from bigmodel_cli.training.failures import file_system_failures
from bigmodel_cli.training.fit import fit
from bigmodel_cli.training.options import TrainOptions
from bigmodel_cli.training.prepare import prepare_data
from bigmodel_cli.training.run_directory import claim_run_dir
from bigmodel_cli.training.runtime import setup_runtime
from bigmodel_cli.training.start import Start, resume_note
from bigmodel_cli.training.summary import end_note, summarize


def run(start: Start, options: TrainOptions, deadline: StartupDeadline | None) -> dict[str, Any]:
    """Train from `start`; return the content of summary.json."""
    started = time.perf_counter()
    runtime = setup_runtime(start.cfg)
    data = prepare_data(start, runtime)
    start = start.in_epochs_of(data.steps_per_epoch)
    built = build_and_compile(start.cfg, runtime, data)
    if deadline is not None:
        deadline.cancel()  # every worker has joined: the model's variables exist
    with claim_run_dir(start, options, runtime, data, built) as claimed:
        if options.progress and claimed.is_chief:
            console.note(f"run directory: {claimed.run.root}")
            resume_note(start, data.steps_per_epoch)
        callbacks = build_callbacks(start, claimed, runtime, data, built, options)
        # Signals stay handled until summary.json is written: one that comes after fit
        # lets the (finished) run complete its summary instead of dying without one.
        with stop_on_signals(callbacks.stop), file_system_failures(claimed.run, callbacks):
            fit(start, claimed, runtime, data, built, callbacks)
            faults.point("after_fit")
            summary = summarize(start, claimed, runtime, data, built, callbacks, options, started)
        if options.progress and claimed.is_chief:
            end_note(summary)
        return summary

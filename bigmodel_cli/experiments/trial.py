"""One trial of a search: an ordinary run directory under the tune directory, trained in
this process by `training.train`, the code path of `bigmodel train`.

Each epoch's value of the search's metric is reported to the pruner from a callback
that runs after the run's own (so the epoch's metrics row, checkpoints and backup are
committed first). A pruned trial leaves fit() from there: its run directory keeps its
backup, so `bigmodel train --resume` can still finish it. A loss that goes NaN/Inf
makes the trial failed, never pruned.
"""

from __future__ import annotations

import gc
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bigmodel_cli import run_dir
from bigmodel_cli.config import Config
from bigmodel_cli.errors import TrainingFailed, UserError
from bigmodel_cli.experiments.runs import read_rows
from bigmodel_cli.tfenv import import_keras, import_tensorflow


class Pruned(Exception):  # noqa: N818 - raised to leave fit() after a committed epoch
    def __init__(self, epoch: int):
        super().__init__(f"pruned after epoch {epoch}")
        self.epoch = epoch


class MetricNotLogged(Exception):  # noqa: N818
    pass


@dataclass
class Plan:
    """How to train one trial."""

    run: Path  # the trial's run directory (trial-NNN)
    metric: str
    direction: str  # minimize | maximize
    prune: bool
    cfg: Config | None = None  # None: resume the run directory
    config_path: Path | None = None
    overrides: list[str] = field(default_factory=list)
    progress: bool = False


@dataclass
class Outcome:
    status: str  # completed | pruned | failed
    value: float | None = None
    epochs: int = 0
    error: str | None = None


def run(trial: Any, plan: Plan) -> Outcome:
    """Train the trial; Interrupted and KeyboardInterrupt are left to the caller (the
    Optuna trial stays running, so a resumed search resumes this run)."""
    from bigmodel_cli.training import TrainOptions, train

    options = TrainOptions(
        config_path=plan.config_path,
        overrides=plan.overrides,
        run_dir=plan.run if plan.cfg is not None else None,
        resume=plan.run if plan.cfg is None else None,
        progress=plan.progress,
        callbacks=[_reporter(trial, plan.metric, plan.prune)],
    )
    registered = _custom_gradients()
    try:
        train(plan.cfg, options)
    except Pruned:
        return _outcome("pruned", plan)
    except (TrainingFailed, MetricNotLogged) as err:
        return _outcome("failed", plan, str(err))
    except UserError as err:  # e.g. values that only fail once the model is built
        return _outcome("failed", plan, "; ".join(err.problems))
    finally:
        _release_memory(registered)
    outcome = _outcome("completed", plan)
    if outcome.value is None:
        return _outcome("failed", plan, f"{plan.metric} was never finite")
    return outcome


def _outcome(status: str, plan: Plan, error: str | None = None) -> Outcome:
    rows = read_rows(run_dir.RunDir(plan.run).metrics)
    return Outcome(status, best_value(rows, plan.metric, plan.direction), len(rows), error)


def best_value(rows: list[dict[str, float]], metric: str, direction: str) -> float | None:
    """The best epoch's value of `metric` (the trial's value), or None."""
    values = [row[metric] for row in rows if math.isfinite(row.get(metric, math.nan))]
    if not values:
        return None
    return min(values) if direction == "minimize" else max(values)


def _gradient_registry() -> dict:
    import_tensorflow()  # loaded the one quiet way before reaching into its internals
    from tensorflow.python.framework import ops  # noqa: TID251 - not in the public API

    return getattr(getattr(ops, "_gradient_registry", None), "_registry", {})


def _custom_gradients() -> set[str]:
    return {name for name in _gradient_registry() if name.startswith("CustomGradient-")}


def _release_memory(before: set[str]) -> None:
    """Nothing of a trial may outlive it: the next one builds its model from scratch.

    Tracing a train step registers a `tf.custom_gradient` (the all-reduce of the default
    strategy) under a new name in TensorFlow's global gradient registry, never removed,
    and its closure keeps the whole traced graph alive: 12 MB per trial of a small MLP
    (tensorflow/tensorflow#97697; keras-team/tf-keras#898 proposes this same purge in
    clear_session). The trial's graphs are gone after clear_session, so are their uses.
    """
    keras = import_keras()

    keras.backend.clear_session()
    registry = _gradient_registry()
    for name in _custom_gradients() - before:
        registry.pop(name, None)
    gc.collect()


def _reporter(trial: Any, metric: str, prune: bool) -> Any:
    """A Keras callback reporting each epoch's `metric` to `trial` (an optuna.Trial)."""
    keras = import_keras()

    class Reporter(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = logs or {}
            if metric not in logs:
                raise MetricNotLogged(
                    f"tune.metric: {metric!r} is not logged by this trial; it logs "
                    f"{', '.join(sorted(logs))}"
                )
            value = float(logs[metric])
            if math.isfinite(value):
                trial.report(value, epoch + 1)
            if prune and trial.should_prune():
                raise Pruned(epoch + 1)

    return Reporter()


def write_hparams(run: Path, name: str, params: dict[str, Any]) -> None:
    """The trial's values as a TensorBoard HParams session in its `tensorboard/`, so the
    HParams dashboard of the tune directory shows the trials side by side."""
    from tensorboard.plugins.hparams import api as hp

    tf = import_tensorflow()
    folder = run_dir.RunDir(run).tensorboard
    if not folder.is_dir() or any(folder.glob("events.out.tfevents.*")):
        return  # training never started, or written when the trial first ended
    writer = tf.summary.create_file_writer(str(folder))
    with writer.as_default():
        hp.hparams(params, trial_id=name)
    writer.close()

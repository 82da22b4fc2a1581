"""Opening a trained run directory, once for evaluate, predict and generate: that it is a
run, its config.yaml, its verified vocabulary.json, what summary.json recorded of its
data, and its model. Each way a run can be unusable has one message, whichever command
meets it.

summary.json is read only by the commands that need it (predict, and evaluate with
--data): evaluate re-reads the run's own data and never looks at it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bigmodel_cli import run_dir
from bigmodel_cli.config import Config
from bigmodel_cli.config import load as config_load
from bigmodel_cli.errors import UserError
from bigmodel_cli.spec import DataSpec

TUPLE_FIELDS = ("input_shape", "class_names", "token_bytes", "feature_names")  # JSON lists


@dataclass
class TrainedRun:
    """A finished run, opened: what using its model needs from the run directory."""

    run: run_dir.RunDir | None  # None for a run assembled in memory (tests)
    cfg: Config
    spec: DataSpec | None  # as summary.json recorded it; None unless asked for
    normalization: dict | None  # the training split's statistics (summary.json), or None
    vocabulary: dict | None  # vocabulary.json, verified; None when the data is not text

    def text_vocabulary(self) -> dict:
        """The vocabulary, which a run on text must have."""
        if self.vocabulary is None:
            raise UserError(
                f"{self.run.root}: no {run_dir.VOCABULARY}; the run's token ids cannot be "
                "turned into text or back (was it trained by an older bigmodel?)"
            )
        return self.vocabulary

    def load_model(self, spec: DataSpec | None = None) -> tuple[Any, Path]:
        """The run's model for `spec` (by default the recorded one) and its file."""
        return load_run_model(self.run, self.cfg, spec or self.spec)


def run_dir_problem(path: Path) -> str | None:
    """Why `path` is not a run directory, or None."""
    if run_dir.is_run_dir(Path(path)):
        return None
    return f"{path}: not a run directory (no {run_dir.CONFIG}); give one made by bigmodel train"


def open_run(path: Path, *, recorded_data: bool = False) -> TrainedRun:
    """The run at `path`, its config and vocabulary read; with `recorded_data`, also the
    data spec and normalization summary.json holds (for inputs that are not the run's
    data: predict). A run that cannot be used raises a UserError saying why."""
    problem = run_dir_problem(path)
    if problem:
        raise UserError(problem)
    run = run_dir.RunDir(Path(path))
    cfg = config_load.config_from_mapping(config_load.read_yaml_mapping(run.config))
    spec = normalization = None
    if recorded_data:
        spec, normalization = _recorded_data(run)
    return TrainedRun(run, cfg, spec, normalization, run_dir.read_vocabulary(run))


def open_named_run(key: str, given: str | None, unset: str) -> TrainedRun:
    """The finished run a config key names (init.from, distill.teacher), opened with the
    data it was trained on: unset (`unset` says what to give), not a run, or unfinished
    is a UserError naming the key. A relative path is relative to the current directory,
    as a RUN_DIR argument is."""
    if given is None:
        raise UserError(f"{key}: {unset}")
    path = run_dir.absolute(Path(given), key)
    try:
        return open_run(path, recorded_data=True)
    except UserError as err:
        raise prefixed(err, key) from None


def prefixed(err: UserError, key: str) -> UserError:
    """`err` with each problem named by the config key that led to it."""
    return UserError([f"{key}: {problem}" for problem in err.problems])


def _summary(run: run_dir.RunDir) -> dict[str, Any]:
    if not run.summary.is_file():
        raise UserError(f"{run.root}: no {run_dir.SUMMARY}; did training finish?")
    summary = run_dir.read_json(run.summary)
    if summary.get("status") == "failed":
        raise UserError(_failed(run, summary))
    return summary


def _failed(run: run_dir.RunDir, summary: dict[str, Any]) -> str:
    error = " ".join(str(summary.get("error") or "no reason recorded").split())
    return (
        f"{run.root}: training failed, so the run has no model to use ({run_dir.SUMMARY}: "
        f"{error[:300]})"
    )


def _damaged(run: run_dir.RunDir, key: str, err: Exception | None) -> UserError:
    why = f"{type(err).__name__}: {err}" if err else "missing"
    return UserError(
        f"{run.summary}: no valid data spec or normalization: data.{key} is not what bigmodel "
        f"writes ({why}); the run's model needs the data description it was trained with: "
        "restore the file"
    )


def _recorded_data(run: run_dir.RunDir) -> tuple[DataSpec, dict | None]:
    """The data spec and normalization of a finished run's summary.json."""
    data = _summary(run).get("data")
    data = data if isinstance(data, dict) else {}
    saved = data.get("spec")
    if not saved:
        raise _damaged(run, "spec", None)
    try:
        raw = dict(saved)
        for key in TUPLE_FIELDS:
            if raw.get(key) is not None:
                raw[key] = tuple(raw[key])
        spec = DataSpec(**raw)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise _damaged(run, "spec", err) from None
    return spec, _checked_normalization(run, data.get("normalization"))


def _checked_normalization(run: run_dir.RunDir, saved: Any) -> dict | None:
    """`saved`, once it reads as a Normalization (a damaged one is named, not a traceback)."""
    if not saved:
        return None
    from bigmodel_cli.data import Normalization

    try:
        Normalization.from_json(saved)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise _damaged(run, "normalization", err) from None
    return saved


def recorded_normalization(run: run_dir.RunDir) -> dict | None:
    """The training normalization summary.json holds, if any: for scoring other data,
    which the model expects scaled like its training data."""
    summary = run_dir.read_json(run.summary) if run.summary.exists() else {}
    data = summary.get("data")
    return _checked_normalization(
        run, data.get("normalization") if isinstance(data, dict) else None
    )


def load_run_model(run: run_dir.RunDir, cfg: Config, spec: DataSpec) -> tuple[Any, Path]:
    """The run's best model (checkpoints/best.keras: best validation loss, or training loss
    without a validation split), else its final model.keras.

    The model is rebuilt from the run's own config and only the *weights* are read from
    the file, after its SHA-256 is checked: no model file can bring its own code or
    architecture.
    """
    from bigmodel_cli.tfenv import import_tensorflow

    import_tensorflow()
    from bigmodel_cli import distribution
    from bigmodel_cli.models import build_model

    for path in (run.best, run.model):
        if path.is_file():
            run_dir.verify_digest(path)
            distribution.set_precision("float32")  # weights are stored in float32
            try:
                model = build_model(cfg, spec)
                model.load_weights(path)
            except (OSError, ValueError, KeyError, TypeError, IndexError) as err:
                raise UserError(_misfit(run, path, err)) from None
            return model, path
    raise UserError(_no_model(run))


def _no_model(run: run_dir.RunDir) -> str:
    try:  # a failed run says why it has no model; its summary.json is read only here
        summary = run_dir.read_json(run.summary) if run.summary.is_file() else {}
    except UserError:
        summary = {}
    if summary.get("status") == "failed":
        return _failed(run, summary)
    return f"{run.root}: no {run_dir.MODEL} or checkpoints/{run_dir.BEST}; did training finish?"


def _misfit(run: run_dir.RunDir, path: Path, err: Exception) -> str:
    """The model config.yaml describes is not the one trained: config.yaml was edited."""
    detail = " ".join(str(err).split())
    detail = detail if len(detail) <= 200 else detail[:197] + "..."
    return (
        f"{path}: its weights do not fit the model {run.config} describes ({detail}); was "
        f"{run_dir.CONFIG} edited after training? Restore the config the run was trained with"
    )

"""`bigmodel tune`: a hyperparameter search, as an Optuna study whose trials are run
directories (see `tune_dir` for the layout).

- Everything the user wrote is checked first (the config, every `tune.space` key and
  value against the schema, that `tune.metric` is logged); only then is the tune
  directory made, so a mistake leaves nothing behind.
- The study lives in Optuna's journal file inside the tune directory. `--resume` reads
  it: finished trials are never run again, and the trial count is a total.
- Proposals are seeded per trial by (`seed`, trial number), not by one generator for the
  whole search: a resumed search proposes exactly what the uninterrupted one would.
- Ctrl-C (or SIGTERM) stops the trial under way after its backup, as `bigmodel train`
  does; the Optuna trial stays "running" and `--resume` resumes that same trial from its
  run directory's backup (same number, same values, same folder), then goes on.
- Trials run one after another in this process: TensorFlow is imported once and each
  trial's session is cleared after it.
"""

from __future__ import annotations

import gc
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bigmodel_cli import console, run_dir
from bigmodel_cli.config import Config
from bigmodel_cli.config import load as config_load
from bigmodel_cli.errors import ConfigError, Interrupted, UserError
from bigmodel_cli.experiments import report as report_lib
from bigmodel_cli.experiments import space as space_lib
from bigmodel_cli.experiments import trial as trial_lib
from bigmodel_cli.experiments import tune_dir
from bigmodel_cli.experiments.report import write_report

STUDY = "bigmodel-tune"


@dataclass
class Request:
    """How `bigmodel tune` was asked to run."""

    config_path: Path | None = None
    overrides: list[str] = field(default_factory=list)
    trials: int | None = None  # replaces tune.trials (a total, across resumes)
    resume: Path | None = None


@dataclass
class Search:
    """A checked search: its config, space, and where it is written."""

    document: dict[str, Any]  # the resolved config, tune section included
    cfg: Config
    dims: list[space_lib.Dimension]
    base_dir: Path  # relative data paths are relative to the config's folder
    config_path: Path
    folder: tune_dir.TuneDir | None = None
    target: int = 0

    @property
    def trial_document(self) -> dict[str, Any]:
        """What every trial starts from: the config without its `tune:` section."""
        return {k: v for k, v in self.document.items() if k != "tune"}

    @property
    def direction(self) -> str:
        from bigmodel_cli.training import monitor_mode

        tune = self.cfg.tune
        if tune.direction != "auto":
            return tune.direction
        return "minimize" if monitor_mode(tune.metric) == "min" else "maximize"


def tune(request: Request) -> dict[str, Any]:
    """Run (or resume) the search; returns the content of tune.json."""
    if request.resume is not None:
        return _resume(request)
    if request.config_path is None:
        raise UserError("missing CONFIG: bigmodel tune CONFIG (or --resume TUNE_DIR)")
    search = _new_search(request)
    output = Path(search.cfg.output.dir)
    search.folder = tune_dir.create(output if output.is_absolute() else Path.cwd() / output,
                                    search.cfg.name)  # fmt: skip
    with run_dir.locked(run_dir.RunDir(search.folder.root), console.note):
        study = _create_study(search)
        return _search(study, search)


# === A new search: every check before the tune directory exists ==============


def _new_search(request: Request) -> Search:
    path = request.config_path
    document = config_load.resolve_document(path, request.overrides)
    cfg = config_load.config_from_mapping(document, str(path))
    if cfg.tune is None:
        raise ConfigError(
            [
                f"tune: {path} has no tune: section; add one with at least a `space:` of keys "
                "to search (see configs/tune_digits_mlp.yaml)"
            ]  # fmt: skip
        )
    search = Search(document, cfg, space_lib.dimensions(cfg.tune), path.parent.resolve(),
                    path.resolve())  # fmt: skip
    space_lib.check(search.trial_document, search.dims)
    if cfg.distribute.strategy == "multi_worker":
        raise ConfigError(
            [
                "distribute.strategy: bigmodel tune trains its trials one by one in one "
                "process; multi_worker needs every worker to run each trial in step"
            ]  # fmt: skip
        )
    _check_metric(cfg, search.base_dir)
    search.target = _target(cfg, request.trials)
    return search


def _check_metric(cfg: Config, base_dir: Path) -> None:
    """`tune.metric` must be a column of metrics.csv, as early stopping's monitor."""
    from bigmodel_cli import data as data_lib
    from bigmodel_cli.config import defaults
    from bigmodel_cli.tfenv import import_tensorflow

    import_tensorflow()
    bundle = data_lib.load_data(cfg, base_dir)
    known = ["loss", *defaults.effective_metrics(cfg, bundle.spec)]
    if bundle.validation is not None:
        known += [f"val_{name}" for name in known]
    metric = cfg.tune.metric
    if metric not in known:
        hint = config_load.did_you_mean(metric, known)
        if metric.startswith("val_") and bundle.validation is None:
            hint = " There is no validation split: set data.validation_split > 0."
        raise ConfigError(
            [f"tune.metric: {metric!r} is not logged.{hint} Expected one of: {', '.join(known)}"]
        )


def _target(cfg: Config, trials: int | None) -> int:
    """Trials in all; a grid search has at most one per combination."""
    target = trials if trials is not None else cfg.tune.trials
    grid = cfg.tune.grid_size()
    if grid is not None and target > grid:
        console.note(f"sampler grid: {grid} combinations, so {grid} trials (not {target})")
        target = grid
    return target


# === The study ===============================================================


def _storage(folder: tune_dir.TuneDir) -> Any:
    """Optuna's journal in the tune directory. Only the holder of the tune directory's
    own lock writes it, so a journal lock left by a killed process is simply removed,
    and a line a kill cut short is dropped (it was never acknowledged)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    path = folder.journal
    Path(f"{path}.lock").unlink(missing_ok=True)
    if path.is_file():
        text = path.read_bytes()
        if text and not text.endswith(b"\n"):
            path.write_bytes(text[: text.rfind(b"\n") + 1])
    try:
        backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
        return JournalStorage(backend)
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path}: unreadable ({type(err).__name__}: {err})") from None


def _quiet_optuna() -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # bigmodel prints its own lines
    return optuna


def _pruner(cfg: Config) -> Any:
    optuna = _quiet_optuna()
    if cfg.tune.pruner == "median":
        return optuna.pruners.MedianPruner()  # Optuna's defaults
    return optuna.pruners.NopPruner()


def sampler(cfg: Config, dims: list[space_lib.Dimension], number: int) -> Any:
    """The sampler that proposes trial `number`, seeded by (seed, number)."""
    optuna = _quiet_optuna()
    kind = cfg.tune.sampler
    if kind == "grid":
        # The seed orders the grid, so it must be the same for every trial; trial N then
        # takes the N-th combination (Optuna's GridSampler), resumed or not.
        return optuna.samplers.GridSampler({d.key: d.grid_values() for d in dims}, seed=cfg.seed)
    seed = (cfg.seed * 1_000_003 + number) % 2**32
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _create_study(search: Search) -> Any:
    optuna = _quiet_optuna()
    study = optuna.create_study(
        storage=_storage(search.folder),
        study_name=STUDY,
        direction=search.direction,
        sampler=sampler(search.cfg, search.dims, 0),
        pruner=_pruner(search.cfg),
    )
    # Everything --resume needs is in the journal itself.
    study.set_user_attr("config", search.document)
    study.set_user_attr("config_path", str(search.config_path))
    study.set_user_attr("base_dir", str(search.base_dir))
    study.set_user_attr("trials", search.target)
    return study


def _resume(request: Request) -> dict[str, Any]:
    folder = tune_dir.TuneDir(request.resume.resolve())
    if not tune_dir.is_tune_dir(folder.root):
        raise UserError(f"--resume {request.resume}: not a tune directory (no {tune_dir.JOURNAL})")
    with run_dir.locked(run_dir.RunDir(folder.root), console.note):
        optuna = _quiet_optuna()
        storage = _storage(folder)
        try:
            study = optuna.load_study(study_name=STUDY, storage=storage)
        except KeyError:
            raise UserError(f"{folder.journal}: holds no bigmodel search") from None
        attrs = study.user_attrs
        document = attrs["config"]
        cfg = config_load.config_from_mapping(document, str(folder.journal))
        search = Search(document, cfg, space_lib.dimensions(cfg.tune), Path(attrs["base_dir"]),
                        Path(attrs["config_path"]), folder)  # fmt: skip
        trials = request.trials or _same_search(request, document) or attrs["trials"]
        search.target = _target(cfg, trials)
        if search.target != attrs["trials"]:
            study.set_user_attr("trials", search.target)
        study.pruner = _pruner(cfg)
        done = len(study.get_trials(deepcopy=False))
        console.note(f"resuming {folder.root}: {done} of {search.target} trials so far")
        return _search(study, search)


def _same_search(request: Request, document: dict[str, Any]) -> int | None:
    """With `--resume`, a CONFIG (and --set) may be given if it is the search's own; a
    `tune.trials` changed there is the new total, which this returns (else None)."""
    if request.config_path is None:
        if request.overrides:
            raise UserError("--set with --resume: a search resumes with its own config")
        return None
    from bigmodel_cli.experiments.compare import flatten

    raw = config_load.resolve_document(request.config_path, request.overrides)
    cfg = config_load.config_from_mapping(raw, str(request.config_path))
    given, stored = flatten(raw), flatten(document)
    differ = sorted(
        key
        for key in set(given) | set(stored)
        if key != "tune.trials" and given.get(key, "-") != stored.get(key, "-")
    )
    if differ:
        raise UserError(
            f"--resume {request.resume}: {request.config_path} differs from the search's "
            f"config in {', '.join(differ[:10])}; a search resumes with its own config "
            "(give only --resume, or start a new search)"
        )
    changed = given.get("tune.trials") != stored.get("tune.trials")
    return cfg.tune.trials if changed and cfg.tune is not None else None


# === Running trials ==========================================================


def _search(study: Any, search: Search) -> dict[str, Any]:
    """Run trials until the target; the report is rewritten after each one."""
    from bigmodel_cli.tfenv import import_tensorflow

    import_tensorflow()  # once for every trial, and quietly
    # Each trial ends with a full garbage collection (trial.py); without the freeze it
    # would walk TensorFlow's own objects every time (0.3 s), now only the trials' own.
    gc.collect()
    gc.freeze()
    write_report(study, search, "running")
    try:
        while (trial := _next_trial(study, search)) is not None:
            _run_one(study, search, *trial)
            write_report(study, search, "running")
    except (Interrupted, KeyboardInterrupt) as err:
        write_report(study, search, "interrupted")
        number = err.signal_number if isinstance(err, Interrupted) else signal.SIGINT
        raise Interrupted(
            number,
            f"{signal.Signals(number).name}: the search stopped (a trial under way keeps its "
            f"backup); resume it with: bigmodel tune --resume {search.folder.root}",
        ) from None
    finally:
        gc.unfreeze()
    return write_report(study, search, "finished")


def _next_trial(study: Any, search: Search) -> tuple[Any, dict[str, Any], bool] | None:
    """(trial, values, resumed): a trial a previous process left running first (it is
    resumed), then new ones until the target."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    left = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    if left:
        frozen = left[0]
        study.sampler = sampler(search.cfg, search.dims, frozen.number)
        # A trial of the journal, continued: optuna.Trial is how a running one is reported
        # to. Suggesting gives back the values it already has, and proposes any a stop
        # between Optuna's proposals left out.
        trial = optuna.trial.Trial(study, frozen._trial_id)
        return trial, {d.key: d.suggest(trial) for d in search.dims}, True
    if len(trials) >= search.target:
        return None
    study.sampler = sampler(search.cfg, search.dims, len(trials))
    trial = study.ask()
    return trial, {d.key: d.suggest(trial) for d in search.dims}, False


def _run_one(study: Any, search: Search, trial: Any, values: dict[str, Any], resumed: bool):
    folder = search.folder
    run = folder.trial(trial.number)
    name = tune_dir.trial_name(trial.number)
    shown = "  ".join(f"{k}={report_lib.cell(v)}" for k, v in values.items())
    console.note(f"{name} ({trial.number + 1}/{search.target}){' resumed' if resumed else ''}: "
                 f"{shown}")  # fmt: skip
    spent = float(trial.user_attrs.get("seconds", 0.0))  # a resumed trial's earlier time
    started = time.perf_counter()
    try:
        outcome = _train_trial(trial, search, run, values)
    except (Interrupted, KeyboardInterrupt):
        trial.set_user_attr("seconds", round(spent + time.perf_counter() - started, 3))
        raise
    seconds = round(spent + time.perf_counter() - started, 3)
    trial.set_user_attr("seconds", seconds)
    trial.set_user_attr("epochs", outcome.epochs)
    trial.set_user_attr("value", outcome.value)  # the best epoch's, pruned trials too
    if outcome.error:
        trial.set_user_attr("error", outcome.error)
    _tell(study, trial, outcome)
    if run_dir.is_run_dir(run):
        trial_lib.write_hparams(run, name, {k: space_lib.shown(v) for k, v in values.items()})
    value = f"{search.cfg.tune.metric} {outcome.value:.4f}, " if outcome.value is not None else ""
    error = f": {outcome.error}" if outcome.error else ""
    console.note(f"{name}: {value}{outcome.status}, {seconds:.1f} s{error}")


def _train_trial(trial: Any, search: Search, run: Path, values: dict[str, Any]):
    tune = search.cfg.tune
    overrides = space_lib.overrides(search.dims, values)
    plan = trial_lib.Plan(
        run, tune.metric, search.direction, tune.pruner != "none",
        config_path=search.config_path, overrides=overrides,
        progress=console.err.is_terminal,
    )  # fmt: skip
    if not run_dir.is_run_dir(run):
        # A new trial, or one stopped before training wrote anything worth keeping.
        shutil.rmtree(run, ignore_errors=True)
        document = config_load.apply_overrides(search.trial_document, overrides)
        try:
            plan.cfg = config_load.config_from_mapping(document)
        except ConfigError as err:  # values valid one by one, not together
            return trial_lib.Outcome("failed", error="; ".join(err.problems))
    return trial_lib.run(trial, plan)


def _tell(study: Any, trial: Any, outcome: trial_lib.Outcome) -> None:
    import optuna

    # GridSampler's after_trial calls study.stop() once the grid is covered, which only
    # works inside optimize(); samplers are only needed to propose, so tell with a plain one.
    study.sampler = optuna.samplers.RandomSampler()
    state = optuna.trial.TrialState
    if outcome.status == "completed":
        study.tell(trial, outcome.value)
    elif outcome.status == "pruned":
        study.tell(trial, state=state.PRUNED)
    else:
        study.tell(trial, state=state.FAIL)

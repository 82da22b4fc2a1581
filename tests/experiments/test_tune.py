"""bigmodel tune: the tune: section and its space are checked before anything runs; a
search writes one run directory per trial, best.yaml and tune.json; proposals are seeded;
a killed search resumes without repeating a trial; NaN trials fail, weak ones are pruned.

The searches are tiny (digits, 500 examples, 2 epochs of 4 steps, a 16-unit MLP) and
deterministic (`train.deterministic`), so values can be compared exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from bigmodel_cli.cli import app
from tests.helpers import forkserver, no_traceback

BASE = {
    "name": "tune-test",
    "seed": 5,
    "data": {"source": "digits", "batch_size": 32, "limit": 500},
    "model": {"type": "mlp", "dense": [16]},
    "optimizer": {"name": "adam", "learning_rate": 3.0e-3},
    "train": {"epochs": 2, "steps_per_epoch": 4, "deterministic": True},
}
SPACE = {
    "optimizer.learning_rate": {"log_uniform": [1.0e-3, 3.0e-2]},
    "model.dropout": {"uniform": [0.0, 0.3]},
    "model.dense": {"choice": [[16], [32, 16]]},
}
TUNE = {"trials": 3, "metric": "val_accuracy", "space": SPACE}


def write(folder: Path, tune: dict | None = None, **sections) -> Path:
    """A config file in `folder` whose runs (and tune directories) go to folder/runs."""
    document = {**BASE, **sections, "output": {"dir": str(folder / "runs")}}
    if tune is not None:
        document["tune"] = tune
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def tune(runner, *args: str):
    """`bigmodel tune ARGS... --json`: the result and tune.json's content."""
    result = runner.invoke(app, ["tune", *args, "--json"])
    assert no_traceback(result.output), result.output
    return result, (json.loads(result.stdout) if result.exit_code in (0, 1) else None)


def params(report: dict) -> list[dict]:
    return [trial["params"] for trial in report["trials"]]


# === Mistakes: exit 2 before any trial, naming the key =======================

SECTION_MISTAKES = [
    ({"space": {"model.dropout": {"unifrom": [0, 1]}}}, "tune.space.model.dropout", "uniform"),
    ({"space": {"model.dropout": {"uniform": [0.4, 0.1]}}}, "model.dropout.uniform", "below"),
    ({"space": {"optimizer.learning_rate": {"log_uniform": [0, 1]}}}, "log_uniform", "above 0"),
    ({"space": {"model.dropout": {"uniform": [0, 1], "choice": [0.1]}}}, "dropout", "exactly one"),
    ({"space": {"model.dense": {"choice": [[8], [8]]}}}, "model.dense.choice", "repeats"),
    (
        {"sampler": "grid", "space": {"model.dropout": {"uniform": [0, 0.5]}}},
        "tune.space.model.dropout",
        "continuous",
    ),
    ({"space": {}}, "tune.space", "at least 1"),
    ({"trials": 0, "space": SPACE}, "tune.trials", "greater than"),
    ({"sampler": "bayes", "space": SPACE}, "tune.sampler", "tpe"),
]


@pytest.mark.parametrize(("section", "key", "phrase"), SECTION_MISTAKES)
def test_a_malformed_tune_section_exits_2_naming_the_key(runner, tmp_path, section, key, phrase):
    result, _ = tune(runner, str(write(tmp_path, section)))
    assert result.exit_code == 2, result.output
    assert key in result.stderr and phrase in result.stderr, result.stderr
    assert not (tmp_path / "runs").exists()


def test_every_space_key_is_checked_against_the_schema_before_any_trial(runner, tmp_path):
    space = {
        "optimizer.learnin_rate": {"log_uniform": [1.0e-4, 1.0e-2]},  # no such key
        "model.dropout": {"uniform": [0.0, 1.5]},  # dropout must stay below 1
        "model.activation": {"choice": ["relu", "swoosh"]},  # not an activation
        "data.batch_size": {"integer": [0, 64]},  # 0 is below the key's own bound
        "output.dir": {"choice": ["a", "b"]},  # where trials go is not searchable
        "model.dense": {"choice": [[16], [32, 16]]},  # fine
    }
    result, _ = tune(runner, str(write(tmp_path, {"space": space})))
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    for key, phrase in [
        ("optimizer.learnin_rate", "Did you mean 'learning_rate'"),
        ("model.dropout", "high end 1.5"),
        ("model.activation", 'choice 2 "swoosh"'),
        ("data.batch_size", "low end 0"),
        ("output.dir", "cannot be searched"),
    ]:
        assert any(f"tune.space.{key}:" in line and phrase in line for line in lines), (key, lines)
    assert not any("model.dense" in line for line in lines)
    assert not (tmp_path / "runs").exists()  # no tune directory, no trial


def test_a_metric_that_is_not_logged_exits_2(runner, tmp_path):
    result, _ = tune(runner, str(write(tmp_path, {**TUNE, "metric": "val_acuracy"})))
    assert result.exit_code == 2
    assert "tune.metric" in result.stderr and "Did you mean 'val_accuracy'" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_a_config_without_a_tune_section_exits_2(runner, tmp_path):
    result, _ = tune(runner, str(write(tmp_path)))
    assert result.exit_code == 2 and "no tune: section" in result.stderr


def _new_study(folder: Path, document: dict):
    """A tune directory as a search leaves it before its first trial."""
    from bigmodel_cli.config.load import config_from_mapping
    from bigmodel_cli.experiments import search, space, tune_dir

    cfg = config_from_mapping(document)
    found = search.Search(document, cfg, space.dimensions(cfg.tune), folder, folder,
                          tune_dir.TuneDir(folder), target=3)  # fmt: skip
    return found, search._create_study(found)


def test_resume_takes_only_the_searchs_own_config_and_needs_a_tune_directory(runner, tmp_path):
    result, _ = tune(runner, "--resume", str(tmp_path))
    assert result.exit_code == 2 and "not a tune directory" in result.stderr
    folder = tmp_path / "tune-1"
    folder.mkdir()
    original = yaml.safe_load(write(tmp_path, TUNE).read_text())
    _new_study(folder, original)
    other = write(tmp_path, TUNE, optimizer={"name": "sgd", "learning_rate": 0.01})
    result, _ = tune(runner, str(other), "--resume", str(folder))
    assert result.exit_code == 2, result.output
    assert "differs from the search's config in optimizer.learning_rate, optimizer.name" in (
        result.stderr
    )
    result, _ = tune(runner, "--resume", str(folder), "--set", "seed=3")
    assert result.exit_code == 2 and "resumes with its own config" in result.stderr


# === Proposals: seeded per trial ==============================================


def _proposals(seed: int, sampler: str, numbers: range, space_: dict = SPACE) -> list[dict]:
    """What the search's sampler proposes for trials `numbers` of a fresh in-memory study."""
    import optuna

    from bigmodel_cli.config.load import config_from_mapping
    from bigmodel_cli.experiments import search, space
    from bigmodel_cli.experiments import trial as trial_lib

    tune_section = {**TUNE, "sampler": sampler, "space": space_}
    cfg = config_from_mapping({**BASE, "seed": seed, "tune": tune_section})
    dims = space.dimensions(cfg.tune)
    study = optuna.create_study(direction="maximize")
    proposed = []
    for number in numbers:
        study.sampler = search.sampler(cfg, dims, number)
        trial = study.ask()
        proposed.append({d.key: d.suggest(trial) for d in dims})
        search._tell(study, trial, trial_lib.Outcome("completed", 0.5))  # as the search tells
    return proposed


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_proposals_depend_on_the_seed_and_the_trial_number_only(sampler):
    first = _proposals(1, sampler, range(4))
    assert _proposals(1, sampler, range(4)) == first
    assert _proposals(2, sampler, range(4)) != first
    assert first[0] != first[1]
    # A resumed study asks for trial 2 with two trials done, as the uninterrupted one did.
    assert _proposals(1, sampler, range(3))[2] == first[2]
    assert isinstance(first[0]["model.dense"], list)  # a list choice comes back as a list


def test_a_trial_stopped_while_its_values_were_chosen_keeps_them_and_gets_the_rest(tmp_path):
    """Killed between Optuna's proposals: the journal holds a running trial with some of
    its values; the resumed search continues that trial with those, and proposes the rest."""
    import optuna

    from bigmodel_cli.experiments import search

    found, study = _new_study(tmp_path, {**BASE, "tune": TUNE})
    stopped = study.ask()
    rate = found.dims[0].suggest(stopped)  # the process died here
    again = optuna.load_study(study_name=search.STUDY, storage=search._storage(found.folder))
    trial, values, resumed = search._next_trial(again, found)
    assert resumed and trial.number == 0 and values["optimizer.learning_rate"] == rate
    assert set(values) == set(SPACE)
    assert again.trials[0].params["model.dense"] == json.dumps(values["model.dense"])


def test_a_grid_search_runs_each_combination_once():
    from bigmodel_cli.config.load import config_from_mapping
    from bigmodel_cli.experiments.search import _target

    space = {"model.dense": {"choice": [[8], [16]]}, "data.batch_size": {"integer": [16, 18]}}
    cfg = config_from_mapping({**BASE, "tune": {"sampler": "grid", "trials": 50, "space": space}})
    assert _target(cfg, None) == 6 and _target(cfg, 4) == 4
    combinations = [json.dumps(p, sort_keys=True) for p in _proposals(1, "grid", range(6), space)]
    assert len(set(combinations)) == 6
    assert _proposals(1, "grid", range(4), space)[3] == json.loads(combinations[3])


# === Real searches ============================================================


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """One 3-trial search (TPE, median pruner: the defaults) and its tune.json."""
    from typer.testing import CliRunner

    folder = tmp_path_factory.mktemp("search")
    result, report = tune(CliRunner(), str(write(folder, TUNE)))
    assert result.exit_code == 0, result.output
    return folder, Path(report["tune_dir"]), report


@pytest.mark.slow
def test_a_small_search_writes_its_trials_best_yaml_and_tune_json(searched):
    folder, tune_dir, report = searched
    assert tune_dir.parent == folder / "runs" / "tune-test" and tune_dir.name.startswith("tune-")
    assert [t["run_dir"] for t in report["trials"]] == ["trial-000", "trial-001", "trial-002"]
    for trial in report["trials"]:
        run = tune_dir / trial["run_dir"]
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "completed" and trial["status"] == "completed"
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert "tune" not in config
        assert config["optimizer"]["learning_rate"] == trial["params"]["optimizer.learning_rate"]
        assert config["model"]["dense"] == trial["params"]["model.dense"]
        assert 1.0e-3 <= trial["params"]["optimizer.learning_rate"] <= 3.0e-2
        assert trial["seconds"] > 0 and trial["epochs"] == 2
    values = [t["value"] for t in report["trials"]]
    assert report["best"]["value"] == max(values)  # val_accuracy: maximized
    assert report["direction"] == "maximize" and report["status"] == "finished"
    assert json.loads((tune_dir / "tune.json").read_text()) == report
    assert (tune_dir / "journal.log").is_file()


@pytest.mark.slow
def test_best_yaml_trains_to_the_reported_metric(runner, searched):
    _, tune_dir, report = searched
    best = tune_dir / "best.yaml"
    assert best.read_text().startswith(f"# bigmodel train {best}\n")
    assert "tune" not in yaml.safe_load(best.read_text())
    result = runner.invoke(app, ["train", str(best), "--json"])
    assert result.exit_code == 0, result.output
    run = Path(json.loads(result.stdout)["run_dir"])
    rows = (run / "metrics.csv").read_text().splitlines()
    column = rows[0].split(",").index("val_accuracy")
    trained = max(float(row.split(",")[column]) for row in rows[1:])
    assert trained == pytest.approx(report["best"]["value"], abs=1e-6)


@pytest.mark.slow
def test_each_epoch_is_reported_to_the_pruner_and_to_tensorboard_hparams(searched):
    import optuna
    import tensorflow as tf
    from tensorboard.plugins.hparams import plugin_data_pb2

    from bigmodel_cli.experiments.search import STUDY, _storage
    from bigmodel_cli.experiments.tune_dir import TuneDir

    _, tune_dir, report = searched
    study = optuna.load_study(study_name=STUDY, storage=_storage(TuneDir(tune_dir)))
    for trial, entry in zip(study.trials, report["trials"], strict=True):
        lines = (tune_dir / entry["run_dir"] / "metrics.csv").read_text().splitlines()
        column = lines[0].split(",").index("val_accuracy")
        logged = {int(r.split(",")[0]): float(r.split(",")[column]) for r in lines[1:]}
        assert trial.intermediate_values == pytest.approx(logged)
    events = list((tune_dir / "trial-001" / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1  # beside Keras's train/ and validation/ runs
    sessions = []
    for event in tf.compat.v1.train.summary_iterator(str(events[0])):
        for value in event.summary.value:
            if value.tag == "_hparams_/session_start_info":
                data = plugin_data_pb2.HParamsPluginData.FromString(
                    value.metadata.plugin_data.content
                )
                sessions.append(data.session_start_info)
    assert len(sessions) == 1
    hparams = sessions[0].hparams
    expected = report["trials"][1]["params"]
    assert hparams["optimizer.learning_rate"].number_value == pytest.approx(
        expected["optimizer.learning_rate"]
    )
    assert json.loads(hparams["model.dense"].string_value) == expected["model.dense"]


@pytest.mark.slow
def test_the_same_seed_proposes_the_same_values(runner, searched, tmp_path):
    _, _, first = searched
    result, again = tune(runner, str(write(tmp_path, TUNE)), "--trials", "2")
    assert result.exit_code == 0, result.output
    assert params(again) == params(first)[:2]
    assert [t["value"] for t in again["trials"]] == [t["value"] for t in first["trials"][:2]]


def _tune_process(*args: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "BIGMODEL_KILL_AT"}
    if kill_at:
        env["BIGMODEL_KILL_AT"] = kill_at
    return forkserver.run("tune", *args, env=env)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_a_killed_search_resumes_without_repeating_a_trial(searched, tmp_path):
    """Ctrl-C during trial 0's first epoch, then SIGKILL as trial 1's run directory is
    made, then a clean resume: each trial runs once, trial 0 goes on from its backup,
    and the search ends with the proposals and values of the uninterrupted one."""
    _, _, uninterrupted = searched
    stopped = _tune_process(str(write(tmp_path, TUNE)), kill_at="backup_committed:1:INT")
    assert stopped.returncode == 130, stopped.stderr
    folder = next((tmp_path / "runs" / "tune-test").glob("tune-*"))
    assert f"bigmodel tune --resume {folder}" in stopped.stderr
    report = json.loads((folder / "tune.json").read_text())
    assert [t["status"] for t in report["trials"]] == ["interrupted"]

    killed = _tune_process("--resume", str(folder), kill_at="run_dir_created:2")
    assert killed.returncode == -9, killed.stderr
    report = json.loads((folder / "tune.json").read_text())
    assert [t["status"] for t in report["trials"]] == ["completed"]  # trial 1 never reported
    first = folder / "trial-000" / "summary.json"
    finished = (first.read_bytes(), first.stat().st_mtime_ns)
    assert json.loads(finished[0])["resumed_from"] == str(folder / "trial-000")

    config = tmp_path / "config.yaml"  # the search's own config may be named again
    done = _tune_process(str(config), "--resume", str(folder))
    assert done.returncode == 0, done.stderr
    assert "trial-000 (" not in done.stderr  # finished trials are not run again
    assert "trial-001 (2/3) resumed" in done.stderr
    assert (first.read_bytes(), first.stat().st_mtime_ns) == finished
    report = json.loads((folder / "tune.json").read_text())
    assert [t["status"] for t in report["trials"]] == ["completed"] * 3
    assert params(report) == params(uninterrupted)
    assert [t["value"] for t in report["trials"]] == [t["value"] for t in uninterrupted["trials"]]
    for trial in report["trials"]:
        lines = (folder / trial["run_dir"] / "metrics.csv").read_text().splitlines()
        assert [line.split(",")[0] for line in lines[1:]] == ["1", "2"]  # each epoch once


@pytest.mark.slow
def test_a_nan_trial_is_recorded_as_failed_and_the_search_goes_on(runner, tmp_path):
    sections = {
        "data": {"source": "diabetes", "batch_size": 32, "normalize": False},
        "model": {"type": "mlp", "dense": [8]},
        "optimizer": {"name": "sgd", "learning_rate": 1.0e-3},
    }
    space = {"optimizer.learning_rate": {"choice": [1.0e-3, 100.0]}}
    path = write(tmp_path, {"sampler": "grid", "metric": "val_loss", "space": space}, **sections)
    result, report = tune(runner, str(path))
    assert result.exit_code == 0, result.output
    by_rate = {t["params"]["optimizer.learning_rate"]: t for t in report["trials"]}
    assert by_rate[1.0e-3]["status"] == "completed"
    failed = by_rate[100.0]
    assert failed["status"] == "failed" and "NaN" in failed["error"]
    assert report["counts"] == {"completed": 1, "pruned": 0, "failed": 1, "interrupted": 0}
    assert report["best"]["run_dir"] == by_rate[1.0e-3]["run_dir"]
    summary = json.loads(
        (Path(report["tune_dir"]) / failed["run_dir"] / "summary.json").read_text()
    )
    assert summary["status"] == "failed"


@pytest.mark.slow
def test_a_pruned_trial_stops_after_its_epoch_is_committed(tmp_path, monkeypatch):
    """The pruner's callback runs after the run's own: the epoch it stops at is in
    metrics.csv and in the backup, which `bigmodel train --resume` can finish from. And
    a trial leaves no custom gradient of its graphs in TensorFlow's global registry."""
    from bigmodel_cli.config.load import config_from_mapping
    from bigmodel_cli.experiments import trial as trial_lib

    registered, release = [], trial_lib._release_memory

    def release_and_count(before):
        registered.append(len(trial_lib._custom_gradients() - before))
        release(before)

    monkeypatch.setattr(trial_lib, "_release_memory", release_and_count)
    before = trial_lib._custom_gradients()

    class WeakTrial:  # what MedianPruner says of a trial below the median
        def __init__(self):
            self.reported = []

        def report(self, value, step):
            self.reported.append((step, value))

        def should_prune(self):
            return True

    cfg = config_from_mapping({**BASE, "train": {**BASE["train"], "epochs": 5}})
    run = tmp_path / "trial-000"
    weak = WeakTrial()
    plan = trial_lib.Plan(run, "val_accuracy", "maximize", prune=True, cfg=cfg)
    outcome = trial_lib.run(weak, plan)
    assert outcome.status == "pruned" and outcome.epochs == 1
    assert [step for step, _ in weak.reported] == [1]
    manifest = run / "checkpoints" / "backup" / "chief" / "manifest.json"
    assert json.loads(manifest.read_text())["position"] == {"epoch": 1, "step": 0}
    assert not (run / "summary.json").exists()
    not_pruned = trial_lib.run(weak, trial_lib.Plan(run, "val_accuracy", "maximize", prune=False))
    assert not_pruned.status == "completed" and not_pruned.epochs == 5  # resumed to the end
    assert registered and all(registered)  # training registered some; none stayed
    assert trial_lib._custom_gradients() <= before

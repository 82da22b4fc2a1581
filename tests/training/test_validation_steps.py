"""`train.validation_steps` bounds each validation pass and the test score; `evaluate
--steps N` scores the first N batches of a split (issue 12: corpora too large to score
whole)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bigmodel_cli.cli import app

DIGITS = {
    "name": "bounded",
    "seed": 3,
    "data": {"source": "digits", "batch_size": 32},
    "model": {"type": "mlp", "dense": [32]},
    "train": {"epochs": 2, "validation_steps": 2},
}


def test_validation_and_test_scores_read_only_the_first_batches(runner, write_config):
    result = runner.invoke(app, ["train", str(write_config(DIGITS)), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    run = summary["run_dir"]

    # evaluate scores what training scored: the test split's first 2 batches.
    bounded = runner.invoke(app, ["evaluate", run, "--json"])
    assert bounded.exit_code == 0, bounded.output
    report = json.loads(bounded.stdout)
    assert report["examples"] == 64
    for key, value in summary["test"].items():
        assert report["metrics"][key] == pytest.approx(value, abs=1e-6), key
    assert sum(map(sum, report["confusion_matrix"])) == 64

    one = json.loads(runner.invoke(app, ["evaluate", run, "--steps", "1", "--json"]).stdout)
    assert one["examples"] == 32
    whole = json.loads(runner.invoke(app, ["evaluate", run, "--steps", "1000", "--json"]).stdout)
    assert whole["examples"] == summary["data"]["examples"]["test"] > 64

    # The validation values in metrics.csv are those of the validation split's first 64.
    from bigmodel_cli.data import load_data
    from bigmodel_cli.inference.evaluate import load_for_scoring, score
    from bigmodel_cli.inference.open_run import open_run

    trained = open_run(Path(run))
    bundle = load_data(trained.cfg, Path(run))
    model, _ = load_for_scoring(trained.run, trained.cfg, bundle.spec)
    lines = (Path(run) / "metrics.csv").read_text().splitlines()
    column = lines[0].split(",").index("val_loss")
    logged = [float(line.split(",")[column]) for line in lines[1:]]
    unbounded = trained.cfg.model_copy(
        update={"train": trained.cfg.train.model_copy(update={"validation_steps": None})}
    )
    # The model holds the weights of one logged epoch: its bounded score is that row's.
    bounded_loss = score(model, bundle.validation, trained.cfg, bundle.spec)["loss"]
    whole_loss = score(model, bundle.validation, unbounded, bundle.spec)["loss"]
    assert any(value == pytest.approx(bounded_loss, rel=1e-5) for value in logged), logged
    assert not any(value == pytest.approx(whole_loss, rel=1e-5) for value in logged), logged


def test_steps_below_one_exit_2(runner, write_config):
    result = runner.invoke(app, ["evaluate", "nowhere", "--steps", "0"])
    assert result.exit_code == 2
    assert "--steps 0" in result.output

"""Config loading and validation: every mistake exits 2 naming the key; no TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bigmodel_cli.cli import app
from bigmodel_cli.config.load import ConfigError, load_config
from tests.helpers import REPO, SHIPPED_CONFIGS, no_traceback

MINIMAL = {"name": "t", "model": {"type": "mlp", "dense": [8]}}


def problems_of(path: Path, overrides: list[str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides or [])
    return caught.value.problems


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_validates(path: Path):
    cfg = load_config(path)
    assert cfg.name
    first = path.read_text().splitlines()[0]
    command = "tune" if cfg.tune is not None else "train"  # a search is run by `tune`
    # A config that starts from another run names the key that takes it.
    waiting = {"init.from": cfg.init and cfg.init.from_ is None,
               "distill.teacher": cfg.distill and cfg.distill.teacher is None}  # fmt: skip
    parent = "".join(f" --set {key}=RUN_DIR" for key, unset in waiting.items() if unset)
    head = f"# bigmodel {command} {path.relative_to(REPO)}{parent}"
    assert first == head, "not headed by its command"


BAD_CASES = [
    # (what is wrong, config mapping, a key that must be named, a phrase that must appear)
    ("unknown key", {**MINIMAL, "optimiser": {}}, "optimiser", "did you mean 'optimizer'"),
    ("unknown nested key", {**MINIMAL, "train": {"epoch": 3}}, "train.epoch", "epochs"),
    (
        "model key of another type",
        {**MINIMAL, "model": {"type": "rnn", "filters": 3}},
        "model.filters",
        "model.type='rnn' does not accept",
    ),
    ("wrong type", {**MINIMAL, "data": {"batch_size": "big"}}, "data.batch_size", "integer"),
    (
        "out of range",
        {**MINIMAL, "data": {"validation_split": 1.5}},
        "data.validation_split",
        "less than 1",
    ),
    ("negative", {**MINIMAL, "train": {"epochs": -2}}, "train.epochs", "greater than"),
    (
        "unknown optimizer",
        {**MINIMAL, "optimizer": {"name": "adamm"}},
        "optimizer.name",
        "did you mean 'adam'",
    ),
    (
        "optimizer arg",
        {**MINIMAL, "optimizer": {"name": "adam", "momentum": 0.9}},
        "optimizer.momentum",
        "sgd",
    ),
    ("unknown loss", {**MINIMAL, "loss": "cross_entropy"}, "loss.name", "expected one of"),
    ("unknown metric", {**MINIMAL, "metrics": ["acc"]}, "metrics.0", "accuracy"),
    (
        "unknown model type",
        {**MINIMAL, "model": {"type": "cnnn"}},
        "model.type",
        "did you mean 'cnn'",
    ),
    ("missing model type", {**MINIMAL, "model": {"dense": [3]}}, "model.type", "missing"),
    (
        "unknown layer",
        {**MINIMAL, "model": {"type": "sequential", "layers": [{"type": "Dense2", "units": 3}]}},
        "model.layers.0",
        "did you mean 'dense'",
    ),
    (
        "Lambda layer",
        {
            **MINIMAL,
            "model": {"type": "sequential", "layers": [{"type": "Lambda", "function": "x"}]},
        },
        "model.layers.0",
        "never run code",
    ),
    (
        "import path layer",
        {**MINIMAL, "model": {"type": "sequential", "layers": [{"type": "os.system"}]}},
        "model.layers.0",
        "not allowed",
    ),
    (
        "schedule without rate",
        {**MINIMAL, "optimizer": {"learning_rate": {"schedule": "cosine"}}},
        "optimizer.learning_rate.initial",
        "needs",
    ),
    (
        "heads do not divide",
        {**MINIMAL, "model": {"type": "transformer", "d_model": 10, "num_heads": 3}},
        "model.num_heads",
        "divide",
    ),
    (
        "csv without path",
        {**MINIMAL, "data": {"source": "csv", "target": "y"}},
        "data.path",
        "needs",
    ),
    (
        "synthetic key on builtin",
        {**MINIMAL, "data": {"source": "iris", "classes": 3}},
        "data.classes",
        "does not use",
    ),
    (
        "text_corpus given one path",
        {**MINIMAL, "data": {"source": "text_corpus", "path": "corpus.txt"}},
        "data.path",
        'write `paths: ["corpus.txt"]`',
    ),
    (
        "csv given paths",
        {**MINIMAL, "data": {"source": "csv", "paths": ["a.csv"], "target": "y"}},
        "data.paths",
        'write `path: "a.csv"`',
    ),
    (
        "image_dir given image_shape",
        {**MINIMAL, "data": {"source": "image_dir", "path": "d", "image_shape": [8, 8, 1]}},
        "data.image_shape",
        "write `image_size: [8, 8]`",
    ),
    (
        "text_dir given vocab_size",
        {**MINIMAL, "data": {"source": "text_dir", "path": "d", "vocab_size": 500}},
        "data.vocab_size",
        "reads `max_tokens` instead",
    ),
    ("name escapes output dir", {**MINIMAL, "name": "../evil"}, "name", "plain folder name"),
    ("section not a mapping", {**MINIMAL, "train": 5}, "train", "mapping"),
    (
        "regression loss with accuracy",
        {**MINIMAL, "loss": "mse", "metrics": ["accuracy"]},
        "metrics",
        "classification loss",
    ),
]


@pytest.mark.parametrize("case", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_each_mistake_names_its_key(write_config, case):
    _, mapping, key, phrase = case
    found = problems_of(write_config(mapping))
    assert any(p.startswith(f"{key}:") and phrase.lower() in p.lower() for p in found), found


def test_all_problems_are_reported_at_once(write_config):
    path = write_config(
        {
            "name": "t",
            "model": {"type": "mlp", "dense": ["x"]},
            "optimizer": {"name": "nope"},
            "train": {"epochs": 0},
            "extra": 1,
        }
    )
    found = problems_of(path)
    for key in ("model.dense.0", "optimizer.name", "train.epochs", "extra"):
        assert any(p.startswith(f"{key}:") for p in found), (key, found)


@pytest.mark.parametrize(
    "text,phrase",
    [
        ("model: {type: mlp\n", "malformed YAML"),
        ("", "empty"),
        ("- a\n- b\n", "expected a mapping"),
        ("just a string", "expected a mapping"),
        ("a: &a [1,2]\n" + "".join(f"b{i}: &b{i} [*a, *a]\n" for i in range(120)), "aliases"),
    ],
    ids=["malformed", "empty", "list", "scalar", "alias bomb"],
)
def test_unreadable_documents(write_config, text, phrase):
    found = problems_of(write_config(text))
    assert any(phrase in p for p in found), found


def test_non_utf8_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"name: \xff\xfe\n")
    assert any("not UTF-8" in p for p in problems_of(path))


def test_missing_file(tmp_path):
    assert any("no such file" in p for p in problems_of(tmp_path / "nope.yaml"))


def test_set_overrides_apply_and_parse_yaml(write_config):
    path = write_config(MINIMAL)
    cfg = load_config(
        path,
        [
            "optimizer.learning_rate=3.0e-4",
            "train.epochs=2",
            "model.dense=[4, 2]",
            "loss.from_logits=true",
            "loss.name=sparse_categorical_crossentropy",
        ],
    )
    assert cfg.optimizer.learning_rate == pytest.approx(3e-4)
    assert cfg.train.epochs == 2
    assert cfg.model.dense == [4, 2]
    assert cfg.loss.from_logits is True


def test_set_of_unknown_key_is_an_error(write_config):
    path = write_config(MINIMAL)
    assert any(p.startswith("train.epoch:") for p in problems_of(path, ["train.epoch=3"]))
    assert any("KEY=VALUE" in p for p in problems_of(path, ["train.epochs"]))
    assert any("not a section" in p for p in problems_of(path, ["name.x=1"]))


def test_base_merges_key_by_key(write_config):
    write_config(
        {**MINIMAL, "train": {"epochs": 7, "early_stopping": {"patience": 2}}}, "base.yaml"
    )
    child = write_config({"base": "base.yaml", "train": {"epochs": 3}}, "child.yaml")
    cfg = load_config(child)
    assert cfg.train.epochs == 3
    assert cfg.train.early_stopping.patience == 2
    assert cfg.model.dense == [8]


def test_base_cycle_is_reported(write_config):
    write_config({"base": "b.yaml"}, "a.yaml")
    write_config({"base": "a.yaml"}, "b.yaml")
    found = problems_of(Path(write_config({"base": "a.yaml"}, "c.yaml")))
    assert any("circular" in p for p in found)


def test_schema_command_prints_json_schema(runner):
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert {"data", "model", "optimizer", "train"} <= set(schema["properties"])


def test_validate_no_build_rejects_and_exits_2(runner, write_config):
    path = write_config({**MINIMAL, "optimizer": {"name": "adamm"}, "trian": {}})
    result = runner.invoke(app, ["validate", "--no-build", str(path)])
    assert result.exit_code == 2
    assert "optimizer.name" in result.stderr and "trian" in result.stderr
    assert no_traceback(result.output)


def test_help_and_no_build_do_not_import_tensorflow(write_config):
    path = write_config(MINIMAL)
    code = (
        "import sys\n"
        "from bigmodel_cli.cli import app\n"
        f"sys.argv = ['bigmodel', 'validate', '--no-build', {str(path)!r}]\n"
        "try:\n    app()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("case", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_train_refuses_each_mistake_without_a_run_dir(runner, write_config, tmp_path, case):
    _, mapping, key, _ = case
    result = runner.invoke(app, ["train", str(write_config(mapping))])
    assert result.exit_code == 2, result.output
    assert f"{key}:" in result.stderr
    assert no_traceback(result.output)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "text,phrase",
    [("model: {type: mlp\n", "malformed YAML"), (None, "no such file")],
    ids=["malformed YAML", "missing file"],
)
def test_train_refuses_unreadable_config(runner, tmp_path, text, phrase):
    path = tmp_path / "config.yaml"
    if text is not None:
        path.write_text(text)
    result = runner.invoke(app, ["train", str(path)])
    assert result.exit_code == 2 and phrase in result.stderr
    assert no_traceback(result.output)
    assert not (tmp_path / "runs").exists() and not Path("runs", "run").exists()


def test_readme_reference_matches_the_schema():
    from bigmodel_cli.config.reference import markdown

    readme = (REPO / "README.md").read_text()
    section = readme.split("<!-- reference:start -->\n")[1].split("\n<!-- reference:end -->")[0]
    assert section.strip() == markdown().strip(), "the README is stale: run make docs"


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: p.name)
def test_resolved_config_reloads(path: Path, tmp_path: Path):
    """A run's config.yaml spells out every default; it must load back to the same config
    (evaluate and --resume read it)."""
    from bigmodel_cli.config.load import dump_config

    cfg = load_config(path)
    copy = tmp_path / "config.yaml"
    copy.write_text(dump_config(cfg))
    assert load_config(copy) == cfg


def test_set_base_is_refused(write_config):
    path = write_config(MINIMAL)
    assert any(p.startswith("--set base:") for p in problems_of(path, ["base=other.yaml"]))


@pytest.mark.parametrize(
    "split,close", [("tset", "test"), ("val", "validation"), ("trian", "train")]
)
def test_evaluate_suggests_the_split_meant(runner, tmp_path, split, close):
    # The split is checked first: no run directory (nor TensorFlow) is needed to be told.
    result = runner.invoke(app, ["evaluate", str(tmp_path), "--split", split])
    assert result.exit_code == 2, result.output
    assert f"Did you mean {close!r}?" in result.stderr
    assert no_traceback(result.output)


LM = {"type": "transformer", "task": "language_model", "d_model": 16, "num_heads": 2}
SEQUENCE_DATA = {
    "text_corpus": {"source": "text_corpus", "paths": ["*.txt"]},
    "text_dir": {"source": "text_dir", "path": "texts"},
    "synthetic language_model": {"source": "synthetic", "task": "language_model"},
    "synthetic sequence": {"source": "synthetic", "task": "sequence", "vocab_size": 20},
}


@pytest.mark.parametrize("data", SEQUENCE_DATA.values(), ids=list(SEQUENCE_DATA))
def test_max_length_is_the_default_sequence_length(write_config, data):
    model = {**LM, "max_length": 48}
    if data["source"] == "text_dir" or data.get("task") == "sequence":
        model["task"] = "classify"
    cfg = load_config(write_config({**MINIMAL, "data": data, "model": model}))
    assert cfg.data.sequence_length == 48
    # Given both, each keeps its value (max_length >= sequence_length is checked with data).
    both = {**data, "sequence_length": 32}
    cfg = load_config(write_config({**MINIMAL, "data": both, "model": model}))
    assert (cfg.data.sequence_length, cfg.model.max_length) == (32, 48)


def test_max_length_leaves_other_data_alone(write_config):
    model = {**LM, "task": "classify", "max_length": 48}
    for data in ({"source": "synthetic", "task": "classification"}, {"source": "digits"}):
        cfg = load_config(write_config({**MINIMAL, "data": data, "model": model}))
        assert cfg.data.sequence_length is None


@pytest.mark.slow
def test_a_language_model_with_only_max_length_builds(runner, write_config):
    data = {"source": "synthetic", "task": "language_model", "examples": 64}
    path = write_config({**MINIMAL, "data": data, "model": {**LM, "max_length": 16}})
    result = runner.invoke(app, ["validate", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["input_shape"] == [16]


@pytest.mark.parametrize("name", ["sgd", "rmsprop", "adagrad", "adadelta", "adam", "adamw",
                                  "nadam", "adamax"])  # fmt: skip
def test_an_optimizer_without_a_learning_rate_gets_the_keras_default(name):
    import inspect

    from bigmodel_cli.config import OptimizerConfig
    from bigmodel_cli.registry import OPTIMIZERS

    keras_default = inspect.signature(OPTIMIZERS[name]).parameters["learning_rate"].default
    assert OptimizerConfig(name=name).learning_rate == keras_default
    assert OptimizerConfig(name=name, learning_rate=0.5).learning_rate == 0.5

"""`bigmodel schema` agrees with the loader, checked by a real JSON Schema validator.

Every shipped config, and every `base:` child as written, passes the schema; each typo'd
config is refused by both the schema and `bigmodel validate` (exit 2); and over random
edits of valid configs, whatever the loader accepts the schema accepts, while what only
the loader refuses is a rule across keys (a validator's message), never a key, type,
bound or name the schema could have said.
"""

from __future__ import annotations

import copy
import json
import typing
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from typer.testing import CliRunner

from bigmodel_cli import config as schema_models
from bigmodel_cli.cli import app
from bigmodel_cli.config.load import ConfigError, config_from_mapping, read_yaml_mapping
from tests.helpers import CONFIGS, SHIPPED_CONFIGS, no_traceback

RUNNER = CliRunner()


def printed_schema() -> dict[str, Any]:
    result = RUNNER.invoke(app, ["schema"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


SCHEMA = printed_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def schema_problems(document: Any) -> list[str]:
    return [
        f"{'.'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in VALIDATOR.iter_errors(document)
    ]


def loader_problems(document: dict[str, Any]) -> list[str]:
    try:
        config_from_mapping(document)
    except ConfigError as err:
        return err.problems
    return []


def test_the_schema_is_a_valid_draft_2020_12_schema():
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_shipped_config_passes_the_schema(path: Path):
    # The loader's own YAML reading (YAML 1.2 numbers, as editors read them).
    assert schema_problems(read_yaml_mapping(path)) == []


# === base: children =========================================================

CHILDREN = {
    "epochs only": ("digits_mlp.yaml", {"train": {"epochs": 3}}),
    "a model key without model.type": ("digits_mlp.yaml", {"model": {"dropout": 0.5}}),
    "another model type": (
        "digits_mlp.yaml",
        {"model": {"type": "cnn", "conv": [{"filters": 8}], "dense": []}},
    ),
    "a schedule key without schedule": (
        "transformer_lm.yaml",
        {"optimizer": {"learning_rate": {"initial": 3.0e-4}}},
    ),
    "a loss key without name": ("transformer_lm.yaml", {"loss": {"from_logits": False}}),
    "data without source": ("lm_python.yaml", {"data": {"paths": "{stdlib}/json/*.py"}}),
    "nothing but base": ("digits_cnn.yaml", {}),
}


@pytest.mark.parametrize("case", CHILDREN.values(), ids=list(CHILDREN))
def test_a_base_child_passes_the_schema_as_written(case, write_config):
    parent, overrides = case
    child = write_config({"base": str(CONFIGS / parent), **overrides})
    document = read_yaml_mapping(child)
    assert schema_problems(document) == []
    from bigmodel_cli.config.load import load_config

    load_config(child)  # and the loader accepts it once merged


def test_without_base_the_schema_requires_the_model():
    assert any("'model' is a required property" in p for p in schema_problems({"name": "x"}))
    assert schema_problems({"base": "other.yaml", "name": "x"}) == []


# === typos: refused by both =================================================

VALID = yaml.safe_load((CONFIGS / "digits_mlp.yaml").read_text())


def edited(**sections: Any) -> dict[str, Any]:
    document = copy.deepcopy(VALID)
    for section, value in sections.items():
        if isinstance(value, dict) and isinstance(document.get(section), dict):
            document[section] = {**document[section], **value}
        else:
            document[section] = value
    return document


def replaced(**sections: Any) -> dict[str, Any]:
    return {**copy.deepcopy(VALID), **sections}


SEQUENTIAL = {"type": "sequential", "layers": [{"type": "Dens", "units": 10}]}
TYPOS = {
    "unknown top-level key": replaced(trian={"epochs": 3}),
    "unknown train key": edited(train={"epocs": 3}),
    "unknown data key": edited(data={"batchsize": 3}),
    "unknown early_stopping key": edited(train={"early_stopping": {"patiense": 2}}),
    "wrong type": edited(data={"batch_size": "big"}),
    "number as a string": edited(train={"epochs": "3"}),
    "boolean as a number": edited(data={"shuffle": 1}),
    "list as a string": edited(metrics="accuracy"),
    "out of range": edited(data={"validation_split": 1.5}),
    "unknown optimizer": edited(optimizer={"name": "adamm"}),
    "unknown schedule": edited(optimizer={"learning_rate": {"schedule": "cosin"}}),
    "unknown loss": edited(loss="msee"),
    "unknown loss key": edited(loss={"name": "mse", "form_logits": True}),
    "bad model.type": replaced(model={"type": "mlpp", "dense": [8]}),
    "model.type missing": replaced(model={"dense": [8]}),
    "key of another model type": edited(model={"conv": [{"filters": 4}]}),
    "unknown layer class": replaced(model=SEQUENTIAL),
    "code in a layer": replaced(model={**SEQUENTIAL, "layers": [{"type": "Lambda"}]}),
    "a refused layer argument": replaced(
        model={**SEQUENTIAL, "layers": [{"type": "Dense", "units": 2, "dtype_policy": "x"}]}
    ),
    "a mapping as a layer argument": replaced(
        model={**SEQUENTIAL, "layers": [{"type": "Dense", "units": {"n": 2}}]}
    ),
    "a key the data source does not read": edited(data={"source": "digits", "path": "x"}),
    "text_corpus given path": edited(data={"source": "text_corpus", "path": "a.txt"}),
    "csv without target": replaced(data={"source": "csv", "path": "a.csv"}),
    "empty base": replaced(base=""),
}


@pytest.mark.parametrize("document", TYPOS.values(), ids=list(TYPOS))
def test_a_typo_is_refused_by_the_schema_and_the_loader(document, write_config):
    assert schema_problems(document), "the schema accepts it"
    result = RUNNER.invoke(app, ["validate", "--no-build", str(write_config(document))])
    assert result.exit_code == 2, result.output
    assert no_traceback(result.output)


@pytest.mark.parametrize(
    "overrides",
    [{"train": {"epocs": 3}}, {"model": {"dense": "wide"}}, {"model": {"type": "mlpp"}}],
    ids=["unknown key", "wrong type", "bad model.type"],
)
def test_a_typo_in_a_base_child_is_refused_by_both(overrides, write_config):
    child = write_config({"base": str(CONFIGS / "digits_mlp.yaml"), **overrides})
    assert schema_problems(read_yaml_mapping(child))
    result = RUNNER.invoke(app, ["validate", "--no-build", str(child)])
    assert result.exit_code == 2 and no_traceback(result.output), result.output


# === valid variants: accepted by both =======================================

VARIANTS = {
    "loss as a name": edited(loss="categorical_crossentropy"),
    "loss as a mapping": edited(loss={"name": "categorical_crossentropy", "label_smoothing": 0.1}),
    "a schedule": edited(
        optimizer={"learning_rate": {"schedule": "cosine", "initial": 1.0e-3, "decay_steps": 9}}
    ),
    "an integer learning rate": edited(optimizer={"learning_rate": 1}),
    "one paths string": edited(data={"source": "text_corpus", "paths": "*.txt"}),
    "a paths list": edited(data={"source": "tfrecord", "paths": ["a.tfrecord"], "target": "y",
                                 "feature_spec": {"x": {"dtype": "float32", "shape": [4]},
                                                  "y": {"dtype": "int64"}}}),
    "csv": edited(data={"source": "csv", "path": "a.csv", "target": "y", "delimiter": ";"}),
    "explicit nulls": edited(data={"path": None, "paths": None}, loss=None, metrics=None),
    "steps_per_execution": edited(train={"steps_per_execution": 8}),
    "sequential with list arguments": replaced(model={
        "type": "sequential", "input_shape": [8, 8, 1],
        "layers": [{"type": "Conv2D", "filters": 4, "kernel_size": [3, 3], "padding": "same"},
                   {"type": "Flatten"}, {"type": "Dense", "units": 10}],
    }),
}  # fmt: skip


@pytest.mark.parametrize("document", VARIANTS.values(), ids=list(VARIANTS))
def test_a_valid_variant_is_accepted_by_both(document):
    assert loader_problems(document) == []
    assert schema_problems(document) == []


# === agreement over random edits ============================================

BASES = [
    yaml.safe_load((CONFIGS / name).read_text())
    for name in ("digits_mlp.yaml", "digits_cnn.yaml", "transformer_lm.yaml", "rnn_sequences.yaml")
]
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([-1, 0, 1, 2, 3, 8, 64, 2**31, 10**7]),
    st.sampled_from([0.0, 1.0e-3, 0.25, 0.5, 1.5, -0.1, 200.0]),
    st.sampled_from(["", "x", "relu", "adam", "mse", "same", "auto", "cosine", "val_loss",
                     "mlp", "cnn", "csv", "text_corpus", "a.csv", "*.txt", "huber"]),
    st.sampled_from([[], [8], [8, 4], ["a"], [1.5], [{"filters": 4}], ["accuracy"]]),
    st.sampled_from([{}, {"patience": 2}, {"name": "mse"}, {"filters": 4},
                     {"schedule": "cosine", "initial": 0.01}]),
)  # fmt: skip


def _sections(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _sections(arg)]


def _choices(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    return [c for arg in typing.get_args(annotation) for c in _choices(arg)]


@st.composite
def random_edit(draw) -> dict[str, Any]:
    """A valid config with one key, at some depth, set to a random or listed value."""
    document = copy.deepcopy(draw(st.sampled_from(BASES)))
    node, section = document, schema_models.Config
    while True:
        if section is schema_models.Config and "model" in node and draw(st.booleans()):
            model = node["model"]
            node, section = model, schema_models.MODEL_CLASSES[model["type"]]
            continue
        key = draw(st.sampled_from(sorted(section.model_fields)))
        field = section.model_fields[key]
        inner = [s for s in _sections(field.annotation) if s is not schema_models.Config]
        if len(inner) == 1 and isinstance(node.get(key, {}), dict) and draw(st.booleans()):
            node = node.setdefault(key, {})
            section = inner[0]
            continue
        key = key if draw(st.integers(0, 9)) else key + "s"  # sometimes a typo
        listed = _choices(field.annotation)
        node[key] = draw(st.sampled_from(listed) if listed and draw(st.booleans()) else VALUES)
        return document


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_edit())
def test_the_schema_and_the_loader_agree(document):
    problems = schema_problems(document)
    if not loader_problems(document):
        assert problems == [], "the loader accepts what the schema refuses"
        return
    if problems:
        return
    # Only the loader refuses: that must be a rule in a validator, not a key, type,
    # bound or name the schema could have said.
    with pytest.raises(ValidationError) as caught:
        schema_models.Config.model_validate(document, strict=True)
    kinds = {error["type"] for error in caught.value.errors()}
    assert kinds == {"value_error"}, caught.value


def test_yaml_numbers_are_read_as_json_reads_them(write_config):
    """`1e-3` is a number in YAML 1.2 and in editors (PyYAML alone reads a string), and a
    whole `3.0` is the integer 3 (JSON cannot tell them apart); strings stay strings."""
    from bigmodel_cli.config.load import load_config

    path = write_config(
        "model: {type: mlp, dense: [8.0]}\noptimizer: {learning_rate: 1e-3}\ntrain: {epochs: 3.0}\n"
    )
    assert schema_problems(read_yaml_mapping(path)) == []
    cfg = load_config(path)
    assert cfg.optimizer.learning_rate == 1.0e-3
    assert cfg.train.epochs == 3 and cfg.model.dense == [8]
    assert loader_problems({"model": {"type": "mlp"}, "train": {"epochs": "3"}})


def _keywords(node: Any) -> set[str]:
    if isinstance(node, list):
        return {k for item in node for k in _keywords(item)}
    if not isinstance(node, dict):
        return set()
    inner = [v for k, v in node.items() if k != "properties"] + list(
        node.get("properties", {}).values()
    )
    return set(node) - {"properties"} | {k for v in inner for k in _keywords(v)}


def test_every_bound_is_a_json_schema_keyword():
    """pydantic writes a bound it cannot place as its own name (`le`), which validators
    ignore: every bound must come out as `maximum`, `exclusiveMinimum`, ..."""
    assert not _keywords(SCHEMA) & {"ge", "gt", "le", "lt", "min_length", "max_length"}

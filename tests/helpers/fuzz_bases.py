"""The valid configs every fuzzed input starts from (one per model type), and paths into
them: the schema section at each mapping, getting and putting values by dotted path."""

from __future__ import annotations

import copy
import typing
from typing import Any

import yaml
from hypothesis import strategies as st
from pydantic import BaseModel

from bigmodel_cli import config as schema
from tests.helpers.fuzz_runner import RUNS

# === valid bases ============================================================

BASES: dict[str, dict[str, Any]] = {
    name: {**yaml.safe_load(text), "output": {"dir": str(RUNS)}}
    for name, text in {
        "mlp": """
            name: fuzz-mlp
            seed: 7
            data: {source: iris, validation_split: 0.2, test_split: 0.1, batch_size: 16}
            model: {type: mlp, dense: [8, 4], dropout: 0.1, initializer: he_normal}
            optimizer: {name: sgd, learning_rate: 0.01, momentum: 0.9, clipnorm: 1.0}
            loss: {name: sparse_categorical_crossentropy, from_logits: false}
            regularization: {l1: 0.0, l2: 1.0e-4}
            metrics: [accuracy]
            train: {epochs: 2, early_stopping: {monitor: val_loss, patience: 1},
                    checkpoint: {every_steps: 10}}
            distribute: {strategy: default}
        """,
        "cnn": """
            name: fuzz-cnn
            data: {source: synthetic, task: image, image_shape: [8, 8, 1], classes: 3}
            model: {type: cnn, conv: [{filters: 4, kernel_size: 3, pool: 2, padding: same}],
                    global_pool: true, dense: [8], batch_norm: true}
            optimizer: {name: adam, beta_1: 0.9, learning_rate: {schedule: warmup_cosine,
                        initial: 1.0e-3, warmup_steps: 5}}
            loss: sparse_categorical_crossentropy
            train: {epochs: 1, mixed_precision: float32}
        """,
        "rnn": """
            name: fuzz-rnn
            data: {source: synthetic, task: sequence, sequence_length: 8, vocab_size: 20,
                   classes: 3}
            model: {type: rnn, cell: gru, units: [8], bidirectional: true, embedding_dim: 8}
            optimizer: {name: rmsprop, learning_rate: 0.001, rho: 0.9}
            loss: {name: categorical_crossentropy, label_smoothing: 0.1}
        """,
        "transformer": """
            name: fuzz-lm
            data: {source: synthetic, task: language_model, vocab_size: 32, sequence_length: 16}
            model: {type: transformer, task: language_model, d_model: 16, num_heads: 2,
                    num_layers: 1, ff_dim: 32, positional: learned}
            optimizer: {name: adamw, weight_decay: 0.01, learning_rate: {schedule: piecewise,
                        boundaries: [10], values: [1.0e-3, 1.0e-4]}}
            metrics: [accuracy, perplexity]
            train: {epochs: 1, early_stopping: {monitor: val_loss, mode: min}}
        """,
        "sequential": """
            name: fuzz-seq
            data: {source: diabetes}
            model: {type: sequential, input_shape: [10], layers: [
                {type: Dense, units: 8, activation: relu}, {type: Dropout, rate: 0.1},
                {type: Dense, units: 1}]}
            optimizer: {name: nadam, learning_rate: 0.002}
            loss: {name: huber, delta: 1.0}
            metrics: [mae, rmse]
            distribute: {strategy: one_device}
        """,
    }.items()
}


def base_names() -> st.SearchStrategy[str]:
    return st.sampled_from(sorted(BASES))


def fresh(name: str) -> dict[str, Any]:
    return copy.deepcopy(BASES[name])


def base_text(name: str) -> str:
    return yaml.safe_dump(BASES[name], sort_keys=False)


# === paths in a config and the schema section at each ======================


def _sections_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _sections_in(arg)]


def section_at(base: dict[str, Any], path: tuple) -> type[BaseModel] | None:
    """The schema class of the mapping at `path` (None for free-form mappings)."""
    cls: type[BaseModel] = schema.Config
    node: Any = base
    for key in path:
        if isinstance(key, int):
            node = node[key]
        elif cls is schema.Config and key == "model":
            cls, node = schema.MODEL_CLASSES[node["model"]["type"]], node["model"]
        elif key in cls.model_fields and len(_sections_in(cls.model_fields[key].annotation)) == 1:
            cls, node = _sections_in(cls.model_fields[key].annotation)[0], node.get(key, {})
        else:
            return None
    return cls


def section_paths(base: dict[str, Any]) -> list[tuple[tuple, type[BaseModel]]]:
    """Every strict section in a base (not `layers` items): (path, schema class)."""
    found = []

    def walk(node: Any, path: tuple) -> None:
        if isinstance(node, dict):
            cls = section_at(base, path)
            if cls is not None:
                found.append((path, cls))
            for key, child in node.items():
                walk(child, (*path, key))
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(child, (*path, index))

    walk(base, ())
    return found


def words(text: str) -> list[str]:
    return text.split()


def parsed(dotted: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in dotted.split("."))


def get(node: Any, path: tuple) -> Any:
    for key in path:
        node = node[key]
    return node


def put(base: dict[str, Any], path: tuple, value: Any) -> dict[str, Any]:
    """Set `path` in `base` (returned); missing sections on the way become mappings."""
    node = base
    for key in path[:-1]:
        if isinstance(node, dict) and not isinstance(node.get(key), dict | list):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value
    return base


def parent_exists(base: dict[str, Any], path: tuple) -> bool:
    try:
        parent = get(base, path[:-1])
    except (KeyError, IndexError, TypeError):
        return False
    if isinstance(parent, list):
        return isinstance(path[-1], int) and path[-1] < len(parent)
    return isinstance(parent, dict)

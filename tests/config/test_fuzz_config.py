"""Fuzzing the config loader: hundreds of broken configs, each must exit 2 with a message.

Every input starts from a valid base config (one per model type) and gets one corruption
that makes it invalid *by construction*: wrong types, unknown and misspelled keys at every
level, numbers outside the schema's bounds, wrong nesting, unknown names, hostile run
names and paths, raw bytes, non-mappings, malformed YAML, alias bombs, bad `base:` and
`--set`. `bigmodel validate --no-build` and `bigmodel train` must answer each with exit
code 2, `error:` lines, no traceback, within seconds, and without creating a run folder.

The CLI runner is module level, not the `runner` fixture: Hypothesis runs many examples
per test, and a function-scoped fixture would be shared between them.
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import signal
import tempfile
import time
import typing
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from typer.testing import CliRunner

from bigmodel_cli import config as schema
from bigmodel_cli.cli import app
from bigmodel_cli.config.allowlist import ALLOWED_LAYERS
from tests.helpers import no_traceback

RUNNER = CliRunner()
CASE = Path(tempfile.mkdtemp(prefix="bigmodel-fuzz-")) / "case"  # emptied for every input
RUNS = CASE / "runs"  # output.dir of every base config; CASE is also the working directory
TRIED: Counter[tuple[str, str]] = Counter()  # (command, kind of corruption) -> inputs run
SECONDS = 5.0  # a robustness bound (config errors answer in milliseconds), not a benchmark
MAX_INT = 2**31 - 1

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


def dump(document: Any) -> bytes:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True).encode("utf-8")


# === running one input ======================================================


@dataclass
class BadInput:
    kind: str
    files: dict[str, bytes]  # written into CASE; `config.yaml` is given to the command
    args: list[str] = field(default_factory=list)  # more arguments (--set ...)


def as_input(kind: str, document: Any, args: list[str] | None = None) -> BadInput:
    return BadInput(kind, {"config.yaml": dump(document)}, args or [])


class Hang(BaseException):
    """Raised by the watchdog; a BaseException so that no `except Exception` swallows it."""


@contextlib.contextmanager
def watchdog(seconds: float):
    """Fail instead of hanging the test session when an input makes the CLI loop."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum, frame):
        raise Hang(f"no answer within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_bad_input(command: str, bad: BadInput):
    """Run one input; assert exit 2, `error:` lines, no traceback, quick, no run folder."""
    shutil.rmtree(CASE, ignore_errors=True)
    CASE.mkdir(parents=True)
    for name, content in bad.files.items():
        (CASE / name).write_bytes(content)
    flags = ["--no-build"] if command == "validate" else []
    args = [command, *flags, str(CASE / "config.yaml"), *bad.args]
    shown = f"{bad.kind}: {args[1:]!r}\n{bad.files!r}"[:3000]
    cwd = os.getcwd()
    os.chdir(CASE)  # a relative output.dir would land here
    try:
        with watchdog(6 * SECONDS):
            start = time.perf_counter()
            result = RUNNER.invoke(app, args)
            seconds = time.perf_counter() - start
    except Hang as err:
        raise Hang(f"{err}\n{shown}") from None
    finally:
        os.chdir(cwd)
    TRIED[command, bad.kind] += 1
    shown += f"\n--- output:\n{result.output}"
    assert result.exit_code == 2, shown
    assert result.exception is None or isinstance(result.exception, SystemExit), shown
    assert any(line.startswith("error: ") for line in result.stderr.splitlines()), shown
    assert no_traceback(result.output), shown
    assert seconds < SECONDS, f"{seconds:.1f}s\n{shown}"
    assert sorted(p.name for p in CASE.iterdir()) == sorted(bad.files), shown  # no run dir
    return result


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


# === names: misspellings and hostile strings ================================

HOSTILE = [
    "", " ", "[/]", "[bold]x[/bold]", "../x", "a/b", "a\\b", "\x00", ".hidden", "a\nb", "\t",
    "\x1b[31mred", "\u202eevil", "x" * 300, "😀" * 80, "__class__", "Lambda", "os.system",
    "tf_keras.layers.Lambda", "__import__('os').system('id')", "${HOME}", "%s%n", "null",
]  # fmt: skip
hostile = st.sampled_from(HOSTILE)


@st.composite
def typo(draw, word: str) -> str:
    """A misspelling: a character dropped, doubled, swapped, replaced or added; case; plural."""
    i = draw(st.integers(0, max(len(word) - 1, 0)))
    letter = draw(st.sampled_from("abcdefghijklmnopqrstuvwxyz_-. "))
    ops = {
        "drop": word[:i] + word[i + 1 :],
        "double": word[:i] + word[i : i + 1] * 2 + word[i + 1 :],
        "swap": word[:i] + word[i + 1 : i + 2] + word[i : i + 1] + word[i + 2 :],
        "replace": word[:i] + letter + word[i + 1 :],
        "insert": word[:i] + letter + word[i:],
        "case": word.swapcase() if word.lower() != word.upper() else word + "X",
        "plural": word[:-1] if word.endswith("s") else word + "s",
        "dash": word.replace("_", "-") if "_" in word else word + "_",
    }
    return ops[draw(st.sampled_from(sorted(ops)))]


def not_in(valid: typing.Iterable[str], real: typing.Iterable[str] = ()) -> st.SearchStrategy:
    """Names outside `valid`: typos of valid (and `real`) names, random text, hostile ones."""
    valid = set(valid)
    typos = st.sampled_from(sorted(valid | set(real))).flatmap(typo)
    return st.one_of(typos, st.text(max_size=20), hostile).filter(lambda n: n not in valid)


# === corruptions of a valid base: keys ======================================


@st.composite
def misspelled_key(draw) -> BadInput:
    """An unknown key at any level: a typo of a real key, a key of another section, junk."""
    base = fresh(draw(base_names()))
    found = section_paths(base)
    path, cls = draw(st.sampled_from(found))
    everywhere = {k for _, c in found for k in c.model_fields}
    key = draw(not_in(cls.model_fields, everywhere))
    node = get(base, path)
    present = sorted(k for k in node if k in cls.model_fields)
    if present and draw(st.booleans()):  # rename a key the base has: a real misspelling
        node[key] = node.pop(draw(st.sampled_from(present)))
    else:
        node[key] = draw(st.one_of(st.integers(), hostile, st.just({})))
    return as_input("unknown key", base)


@st.composite
def moved_key(draw) -> BadInput:
    """Wrong nesting: a real key of one section written in another section that lacks it."""
    base = fresh(draw(base_names()))
    found = section_paths(base)
    source, source_cls = draw(st.sampled_from(found))
    key = draw(st.sampled_from(sorted(source_cls.model_fields)))
    inside = (*source, key)  # the moved value itself is no target: it would leave with it
    targets = [p for p, cls in found if key not in cls.model_fields and p[: len(inside)] != inside]
    assume(targets)
    get(base, draw(st.sampled_from(targets)))[key] = copy.deepcopy(get(base, source).get(key, 1))
    if key != "type" and draw(st.booleans()):
        get(base, source).pop(key, None)
    return as_input("wrong nesting", base)


# === corruptions of a valid base: values ====================================

NOT_NUMBER = st.text(alphabet="abcdefghijklmnopqrstuvwxyz _-!?", min_size=1, max_size=12)
BOOL_WORDS = {"0", "off", "f", "false", "n", "no", "1", "on", "t", "true", "y", "yes"}
NESTED = st.one_of(
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), min_size=1, max_size=2),
)
FRACTIONAL = st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not x.is_integer())
WRONG_TYPES = {  # kind -> (values of the wrong type, keys of that kind)
    "int": (st.one_of(NOT_NUMBER, NESTED, FRACTIONAL), """seed data.batch_size data.limit
        data.classes model.outputs model.num_heads model.embedding_dim model.conv.0.filters
        train.epochs train.steps_per_epoch train.early_stopping.patience
        train.checkpoint.every_steps distribute.timeout_seconds"""),
    "float": (st.one_of(NOT_NUMBER, NESTED), """data.validation_split data.test_split
        model.dropout optimizer.clipnorm optimizer.momentum optimizer.learning_rate.initial
        regularization.l1 regularization.l2 loss.label_smoothing train.early_stopping.min_delta"""),
    "bool": (st.one_of(NOT_NUMBER.filter(lambda s: s.strip().lower() not in BOOL_WORDS), NESTED,
                       st.integers().filter(lambda i: i not in (0, 1)),
                       st.floats().filter(lambda x: x not in (0.0, 1.0))),
             """data.shuffle data.normalize model.batch_norm model.global_pool model.bidirectional
             train.jit_compile train.deterministic train.early_stopping.restore_best_weights
             loss.from_logits"""),
    "str": (st.one_of(st.integers(), st.floats(), st.booleans(), NESTED),
            "name base output.dir train.early_stopping.monitor distribute.tpu"),
    "list": (st.one_of(st.integers(), st.booleans(), NOT_NUMBER, NESTED.filter(
                lambda v: isinstance(v, dict))),
             """model.dense model.conv model.units model.layers model.input_shape metrics
             data.image_shape distribute.devices"""),
    "section": (st.one_of(st.integers(), st.booleans(), NOT_NUMBER, st.lists(st.integers())),
                """data model optimizer regularization train distribute output
                train.early_stopping train.checkpoint"""),
    "number or schedule": (st.one_of(NOT_NUMBER, st.lists(st.floats(0.1, 1), max_size=2)),
                           "optimizer.learning_rate"),
}  # fmt: skip


@st.composite
def wrong_type(draw) -> BadInput:
    """A value of the wrong type: text for a number, a list for a flag, a number for a section."""
    base = fresh(draw(base_names()))
    choices = [(kind, parsed(k)) for kind, (_, keys) in WRONG_TYPES.items() for k in keys.split()]
    kind, path = draw(st.sampled_from([(k, p) for k, p in choices if parent_exists(base, p)]))
    return as_input("wrong type", put(base, path, draw(WRONG_TYPES[kind][0])))


def ints_outside(low: int | None, high: int | None) -> st.SearchStrategy:
    """Integers outside [low, high], and NaN and infinity."""
    parts = [st.sampled_from([float("nan"), float("inf")])]
    if low is not None:
        parts += [st.integers(max_value=low - 1), st.just(-(2**70))]
    if high is not None:
        parts += [st.integers(min_value=high + 1), st.sampled_from([high + 1, 2**63, 10**40])]
    return st.one_of(parts)


def floats_outside(low: float | None, high: float | None, *, low_open=False, high_open=False):
    """Floats outside the range (`low_open`: low itself is refused, as `gt=0` does), NaN, inf."""
    parts = [st.sampled_from([float("nan"), float("inf"), -float("inf")])]
    if low is not None:
        parts += [st.floats(max_value=low).filter(lambda x: x < low or (low_open and x == low))]
    if high is not None:
        parts += [st.floats(min_value=high).filter(lambda x: x > high or (high_open and x == high))]
    return st.one_of(parts)


POSITIVE = ints_outside(1, MAX_INT)
FRACTION = floats_outside(0.0, 1.0, high_open=True)
GREATER_THAN_0 = floats_outside(0.0, None, low_open=True)
RANGES = {
    "seed": ints_outside(0, MAX_INT),
    "data.batch_size": ints_outside(1, 1_000_000),
    "data.validation_split": FRACTION,
    "data.test_split": FRACTION,
    "data.examples": ints_outside(1, 10_000_000),
    "data.classes": ints_outside(2, 100_000),
    "data.sequence_length": ints_outside(1, 100_000),
    "data.vocab_size": ints_outside(1, 1_000_000),
    "data.noise": floats_outside(0.0, 10.0),
    "model.dropout": FRACTION,
    "model.num_layers": ints_outside(1, 1000),
    **{
        key: POSITIVE
        for key in words("""data.limit model.outputs model.embedding_dim model.d_model
        model.ff_dim model.conv.0.filters model.conv.0.kernel_size model.conv.0.pool
        train.steps_per_epoch train.checkpoint.every_steps""")
    },
    **{
        key: st.lists(POSITIVE, min_size=1, max_size=3)
        for key in words("""data.image_shape
        model.input_shape model.dense model.units optimizer.learning_rate.boundaries""")
    },
    "optimizer.learning_rate": floats_outside(0.0, 100.0, low_open=True),
    "optimizer.learning_rate.warmup_steps": ints_outside(0, MAX_INT),
    "optimizer.learning_rate.values": st.lists(floats_outside(0.0, None), min_size=1, max_size=3),
    **{f"optimizer.{key}": FRACTION for key in ("momentum", "beta_1", "rho")},
    **{
        key: GREATER_THAN_0
        for key in words("""optimizer.learning_rate.initial optimizer.clipnorm
        optimizer.epsilon loss.delta""")
    },
    "optimizer.weight_decay": floats_outside(0.0, None),
    "regularization.l1": floats_outside(0.0, 10.0),
    "regularization.l2": floats_outside(0.0, 10.0),
    "loss.label_smoothing": FRACTION,
    "train.epochs": ints_outside(1, 1_000_000),
    "train.early_stopping.patience": ints_outside(0, None),
    "train.early_stopping.min_delta": floats_outside(0.0, None),
    "distribute.timeout_seconds": ints_outside(1, 86_400),
}


@st.composite
def out_of_range(draw) -> BadInput:
    """Negative, zero, huge, NaN or infinite numbers where the schema forbids them."""
    base = fresh(draw(base_names()))
    key = draw(st.sampled_from([k for k in sorted(RANGES) if parent_exists(base, parsed(k))]))
    return as_input("out of range", put(base, parsed(key), draw(RANGES[key])))


def choices_at(base: dict[str, Any], path: tuple) -> tuple[str, ...]:
    """The names the schema accepts at `path` (empty when it is not a choice)."""
    if path == ("model", "type"):
        return tuple(schema.MODEL_CLASSES)
    if path[:2] == ("model", "layers"):
        return tuple(ALLOWED_LAYERS)
    if path[0] == "metrics":
        return schema.METRICS
    cls = section_at(base, path[:-1])
    if cls is None or path[-1] not in cls.model_fields:
        return ()
    annotation = cls.model_fields[path[-1]].annotation
    literals = [annotation, *typing.get_args(annotation)]
    return tuple(v for a in literals if typing.get_origin(a) is typing.Literal
                 for v in typing.get_args(a))  # fmt: skip


ENUM_KEYS = words("""optimizer.name loss.name model.type model.activation model.initializer
    model.output_activation model.cell model.positional model.task model.conv.0.padding
    model.layers.0.type data.source data.task train.mixed_precision train.early_stopping.mode
    distribute.strategy optimizer.learning_rate.schedule metrics.0""")


@st.composite
def unknown_name(draw) -> BadInput:
    """An unknown optimizer, loss, metric, activation, model or layer type (Lambda, paths)."""
    base = fresh(draw(base_names()))
    if isinstance(base.get("loss"), str):
        base["loss"] = {"name": base["loss"]}
    paths = [parsed(k) for k in ENUM_KEYS]
    path = draw(st.sampled_from([p for p in paths if parent_exists(base, p) and
                                 choices_at(base, p)]))  # fmt: skip
    name = draw(not_in(choices_at(base, path)))
    if path == ("loss", "name") and draw(st.booleans()):
        return as_input("unknown name", {**base, "loss": name})  # the `loss: NAME` spelling
    return as_input("unknown name", put(base, path, name))


@st.composite
def bad_layer(draw) -> BadInput:
    """A sequential layer that could run code, or is not a layer: refused arguments, junk."""
    base = fresh("sequential")
    layers = base["model"]["layers"]
    i = draw(st.integers(0, len(layers) - 1))
    choice = draw(st.sampled_from(["refused", "not identifier", "not plain", "not mapping"]))
    if choice == "refused":
        arg = draw(st.sampled_from(["function", "layer", "backward_layer", "cell", "dtype_policy"]))
        layers[i][arg] = draw(st.sampled_from(["os.system", "Lambda", "lambda x: x", "Dense"]))
    elif choice == "not identifier":
        key = draw(st.one_of(st.text(max_size=10), hostile).filter(lambda k: k != "type"))
        assume(not key.isidentifier())
        layers[i][key] = 1
    elif choice == "not plain":
        layers[i]["units"] = draw(st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))
    else:
        no_type = NESTED.filter(lambda v: isinstance(v, list) or "type" not in v)
        layers[i] = draw(st.one_of(st.text(max_size=10), st.integers(), no_type))
    return as_input("bad layer", base)


def optimizer_arg_of_another(b):
    wrong = ("momentum", 0.5) if b["optimizer"]["name"] in ("adam", "adamw") else ("amsgrad", True)
    return put(b, ("optimizer", wrong[0]), wrong[1])


SEMANTIC = {  # keys that are fine alone but not together: each rule of the validators
    "optimizer arg": optimizer_arg_of_another,
    "two clip norms": lambda b: put(put(b, ("optimizer", "clipnorm"), 1.0),
                                    ("optimizer", "global_clipnorm"), 1.0),
    "from_logits on mse": lambda b: {**b, "loss": {"name": "mse", "from_logits": True},
                                     "metrics": ["mae"]},
    "sparse smoothing": lambda b: {**b, "loss": {"name": "sparse_categorical_crossentropy",
                                                 "label_smoothing": 0.2}},
    "delta without huber": lambda b: {**b, "loss": {"name": "mae", "delta": 1.0}, "metrics": None},
    "accuracy on regression": lambda b: {**b, "loss": "mse", "metrics": ["accuracy"]},
    "perplexity off a language model": lambda b: {**b, "data": {"source": "iris"},
                                                  "model": {"type": "mlp"},
                                                  "metrics": ["perplexity"]},
    "key the source does not use": lambda b: {**b, "data": {"source": "iris", "classes": 3}},
    "csv without target": lambda b: {**b, "data": {"source": "csv", "path": "x.csv"}},
    "npz without path": lambda b: {**b, "data": {"source": "npz"}},
    "no data left to train": lambda b: {**b, "data": {"source": "iris", "validation_split": 0.5,
                                                      "test_split": 0.45}},
    "image shape of rank 2": lambda b: {**b, "data": {"source": "synthetic", "task": "image",
                                                      "image_shape": [8, 8]}},
    "heads do not divide": lambda b: {**b, "model": {"type": "transformer", "d_model": 10,
                                                     "num_heads": 4}},
    "language model head": lambda b: {**b, "model": {"type": "transformer",
                                                     "task": "language_model", "dense": [4]}},
    "cnn without conv": lambda b: {**b, "model": {"type": "cnn", "conv": []}},
    "model without type": lambda b: {**b, "model": {"dense": [4]}},
    "no model": lambda b: {k: v for k, v in b.items() if k != "model"},
    "exponential without decay": lambda b: put(b, ("optimizer", "learning_rate"), {
        "schedule": "exponential", "initial": 0.1}),
    "piecewise lengths": lambda b: put(b, ("optimizer", "learning_rate"), {
        "schedule": "piecewise", "boundaries": [5, 10], "values": [0.1, 0.01]}),
    "piecewise decreasing": lambda b: put(b, ("optimizer", "learning_rate"), {
        "schedule": "piecewise", "boundaries": [10, 5], "values": [0.1, 0.01, 0.001]}),
    "schedule without initial": lambda b: put(b, ("optimizer", "learning_rate"), {
        "schedule": "cosine"}),
}  # fmt: skip


@st.composite
def semantic(draw) -> BadInput:
    rule = draw(st.sampled_from(sorted(SEMANTIC)))
    return as_input("semantic", SEMANTIC[rule](fresh(draw(base_names()))))


TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=20)
HOSTILE_NAMES = st.one_of(
    st.sampled_from(["../x", "a/b", "a\\b", "\x00", ".hidden", ".", "..", "", " x", "x ",
                     "a\nb", "\t", "\x1b[2J", "a\u202eb", "\u200b", "/etc/passwd", "[/]"]),
    st.tuples(TEXT, st.sampled_from("/\\\x00\n\r\x1b\x7f\u2028"), TEXT).map("".join),
    TEXT.map(lambda s: "." + s),
    st.text(min_size=101, max_size=200),  # too long
    st.integers(64, 100).map(lambda n: "😀" * n),  # 100 characters at most, but over 255 bytes
)  # fmt: skip


@st.composite
def hostile_value(draw) -> BadInput:
    """Run names and paths that would leave the output folder or cannot be folders."""
    base = fresh(draw(base_names()))
    which = draw(st.sampled_from(["name", "output.dir", "base"]))
    if which == "name":
        return as_input("hostile name", {**base, "name": draw(HOSTILE_NAMES)})
    if which == "output.dir":
        value = draw(st.sampled_from(["", "\x00", "runs\x00x", f"{RUNS}\x00"]))
        return as_input("hostile name", put(base, ("output", "dir"), value))
    value = draw(st.sampled_from(["", "a\x00b", "x" * 5000, "missing.yaml", ".", "config.yaml"]))
    return as_input("hostile name", {"base": value, **base})


@st.composite
def bad_base_chain(draw) -> BadInput:
    """`base:` naming a file that is itself broken, a cycle, or a chain that is too long."""
    base = fresh(draw(base_names()))
    choice = draw(st.sampled_from(["broken parent", "cycle", "too deep"]))
    if choice == "broken parent":
        parent = draw(st.one_of(raw_bytes(), non_mapping(), malformed_yaml()))
        files = {"parent.yaml": parent.files["config.yaml"]}
        return BadInput("bad base", {**files, "config.yaml": dump({"base": "parent.yaml", **base})})
    if choice == "cycle":
        files = {"a.yaml": dump({"base": "config.yaml"})}
        return BadInput("bad base", {**files, "config.yaml": dump({"base": "a.yaml", **base})})
    files = {f"b{i}.yaml": dump({"base": f"b{i + 1}.yaml"}) for i in range(11)}
    return BadInput("bad base", {**files, "b11.yaml": dump(base),
                                 "config.yaml": dump({"base": "b0.yaml"})})  # fmt: skip


@st.composite
def bad_override(draw) -> BadInput:
    """A valid file and a broken `--set`: unknown key, no `=`, base, bad YAML, bad value."""
    base = fresh(draw(base_names()))
    choice = draw(st.sampled_from(["typo", "no equals", "empty part", "base", "yaml", "value"]))
    if choice == "typo":
        head = draw(st.sampled_from(["", "data", "optimizer", "train"]))
        cls = section_at(base, (head,)) if head else schema.Config
        wrong = draw(
            not_in(cls.model_fields).filter(
                lambda s: s and s == s.strip() and "=" not in s and "." not in s
            )
        )
        setting = f"{head}.{wrong}=1" if head else f"{wrong}=1"
    else:
        setting = draw(st.sampled_from({
            "no equals": ["train.epochs", "name"],
            "empty part": [".train.epochs=1", "train.=1", "train..epochs=1", "=1"],
            "base": ["base=other.yaml"],
            "yaml": ["name=[1,", "name={a:", "name='x", "name=*nope", "name=a: b: c", "seed=\t"],
            "value": ["train.epochs=-1", "optimizer.name=adamm", "name=../x", "name.inner=1",
                      "model.dropout=.nan", "seed=1e400", "metrics=[acc]", "loss=[/]"],
        }[choice]))  # fmt: skip
    return as_input("bad --set", base, ["--set", setting])


# === whole files ============================================================


def base_text(name: str) -> str:
    return yaml.safe_dump(BASES[name], sort_keys=False)


@st.composite
def raw_bytes(draw) -> BadInput:
    """Empty, blank, comment-only, not UTF-8, binary, UTF-16, or too big."""
    choice = draw(st.sampled_from(["blank", "not utf-8", "binary", "utf-16", "too big"]))
    if choice == "blank":
        content = draw(st.text(alphabet=" \n\r", max_size=50)).encode()
        content += draw(st.sampled_from([b"", b"# just a comment\n", b"---\n", b"...\n"]))
    elif choice == "not utf-8":
        text = base_text(draw(base_names())).encode()
        at = draw(st.integers(0, len(text)))
        bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\x80"]))
        content = text[:at] + bad + text[at:]
    elif choice == "binary":
        content = draw(st.binary(max_size=200)) + b"\xfe\xff" + draw(st.binary(max_size=50))
    elif choice == "utf-16":
        content = base_text(draw(base_names())).encode(draw(st.sampled_from(["utf-16", "utf-32"])))
    else:
        content = b"# " + b"x" * (1_000_000 + draw(st.integers(0, 1000))) + b"\nmodel: {}\n"
    return BadInput(f"raw bytes: {choice}", {"config.yaml": content})


@st.composite
def non_mapping(draw) -> BadInput:
    """A document that is a list, a scalar, null, a set, or a mapping with non-string keys."""
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
    choice = draw(st.sampled_from(["scalar", "list", "listed base", "tagged", "keys"]))
    if choice == "scalar":
        return as_input("non-mapping", draw(scalars))
    if choice == "list":
        return as_input("non-mapping", draw(st.lists(scalars, max_size=5)))
    if choice == "listed base":
        return as_input("non-mapping", [fresh(draw(base_names()))])
    if choice == "tagged":
        text = draw(
            st.sampled_from(
                [
                    "!!set {model: null}",
                    "!!omap [model: {type: mlp}]",
                    "!!pairs [model: x]",
                    "~",
                    "null",
                    "--- |\n  model: x\n",
                ]
            )
        )
        return BadInput("non-mapping", {"config.yaml": text.encode()})
    key = draw(st.one_of(st.integers(), st.booleans(), st.none(), st.floats(allow_nan=False)))
    return as_input("non-mapping", {key: 1, **fresh(draw(base_names()))})


MALFORMED_LINES = [  # the base text has no brackets or quotes, so nothing closes these
    "extra: [1, 2", "extra: {a: 1", 'extra: "unclosed', "extra: 'unclosed", "\textra: 1",
    "extra: value: other", "extra: *undefined_anchor", "extra: &a [1, *a", "@reserved: 1",
    # ... and these are errors wherever they stand
    "extra: !!python/object/apply:os.system ['id']", "extra: !!python/name:builtins.eval ''",
    "]", "}", "extra: `backtick`",
]  # fmt: skip


@st.composite
def malformed_yaml(draw) -> BadInput:
    """Unclosed brackets and quotes, tab indentation, unknown tags, duplicate keys, junk."""
    lines = base_text(draw(base_names())).splitlines()
    choice = draw(st.sampled_from(["insert", "tab indent", "duplicate key", "directive"]))
    if choice == "insert":
        bad = draw(st.sampled_from(MALFORMED_LINES))
        at = len(lines) if MALFORMED_LINES.index(bad) < 9 else draw(st.integers(0, len(lines)))
        lines.insert(at, bad)
    elif choice == "tab indent":
        i = draw(st.sampled_from([i for i, line in enumerate(lines) if line.startswith("  ")]))
        lines[i] = "\t" + lines[i].lstrip(" ")
    elif choice == "duplicate key":  # e.g. a second `seed: 1`, valid but for the duplicate
        top = [line.split(":")[0] for line in lines if line[:1].isalpha()]
        lines.append(draw(st.sampled_from(top)) + ": 1")
    else:
        lines.insert(0, draw(st.sampled_from(["%YAML 2.0\n---", "%TAG ! \n---", "%YAML 1.1 x"])))
    return BadInput(f"malformed YAML: {choice}", {"config.yaml": "\n".join(lines).encode()})


def flow_bomb(width: int, depth: int) -> str:
    """`[&l0 [lol], &l1 [*l0, *l0], &l2 [*l1, *l1], ...]`: width**depth values."""
    levels = ["&l0 [lol]"]
    levels += [f"&l{k} [" + ", ".join([f"*l{k - 1}"] * width) + "]" for k in range(1, depth + 1)]
    return "[" + ", ".join(levels) + "]"


@st.composite
def alias_bomb(draw) -> BadInput:
    """Billion laughs: few aliases expanding to millions of values, many aliases, a cycle."""
    width = draw(st.integers(2, 12))
    few = next(d for d in range(1, 40) if width**d > 1_000_000)  # well over the bound, but
    many = 100 // width + 1  # small enough that a regression is slow, not out of memory
    depth = draw(st.sampled_from([few, many]))
    bomb = draw(st.sampled_from([flow_bomb(width, depth), "&r [*r]", "&r {a: *r}"]))
    where = draw(st.sampled_from(["layer argument", "unknown key", "metrics"]))
    base = fresh("sequential")
    if where == "layer argument":  # the one place where a nested list is a plain value
        base["model"]["layers"][0]["kernel_size"] = "@BOMB@"
    else:
        base["laughs" if where == "unknown key" else "metrics"] = "@BOMB@"
    text = dump(base).decode().replace("'@BOMB@'", bomb)
    return BadInput("alias bomb", {"config.yaml": text.encode()})


def bad_inputs() -> st.SearchStrategy[BadInput]:
    return st.one_of(
        misspelled_key(), moved_key(), wrong_type(), out_of_range(), unknown_name(), bad_layer(),
        semantic(), hostile_value(), bad_base_chain(), bad_override(), raw_bytes(),
        non_mapping(), malformed_yaml(), alias_bomb(),
    )  # fmt: skip


FAMILIES = {
    "unknown key", "wrong nesting", "wrong type", "out of range", "unknown name", "bad layer",
    "semantic", "hostile name", "bad base", "bad --set", "raw bytes", "non-mapping",
    "malformed YAML", "alias bomb",
}  # fmt: skip
FUZZ = settings(
    deadline=timedelta(seconds=SECONDS),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


# === tests ==================================================================


@pytest.fixture(scope="module", autouse=True)
def _remove_scratch():
    yield
    shutil.rmtree(CASE.parent, ignore_errors=True)


@pytest.mark.parametrize("name", sorted(BASES))
def test_every_base_is_valid(name):
    """Each corruption makes a valid base invalid; so the bases must be valid."""
    shutil.rmtree(CASE, ignore_errors=True)
    CASE.mkdir(parents=True)
    (CASE / "config.yaml").write_bytes(dump(BASES[name]))
    result = RUNNER.invoke(app, ["validate", "--no-build", str(CASE / "config.yaml")])
    assert result.exit_code == 0, result.output


@settings(FUZZ, max_examples=800)
@given(bad_inputs())
def test_validate_refuses_every_bad_config(bad):
    run_bad_input("validate", bad)


@settings(FUZZ, max_examples=200)
@given(bad_inputs())
def test_train_refuses_every_bad_config_without_a_run_dir(bad):
    run_bad_input("train", bad)


def test_fuzzing_tried_at_least_500_bad_configs(capsys):
    """Runs after the two fuzz tests (file order) and reports what they tried."""
    if not {"validate", "train"} <= {command for command, _ in TRIED}:
        pytest.skip("reports on the two fuzz tests above; run them too")
    per_command, per_family = Counter(), Counter()
    for (command, kind), n in TRIED.items():
        if kind.split(":")[0] in FAMILIES:
            per_command[command] += n
            per_family[kind.split(":")[0]] += n
    total = sum(per_command.values())
    with capsys.disabled():  # shown with or without -s
        print(
            f"\nfuzz: tried {total} bad configs ({per_command['validate']} validate --no-build, "
            f"{per_command['train']} train): "
            + ", ".join(f"{family} {n}" for family, n in per_family.most_common())
        )
    assert total >= 500 and per_command["train"] >= 100
    assert set(per_family) == FAMILIES, FAMILIES - set(per_family)


# === bugs the fuzzing found =================================================


def minimal(extra: str = "", **top: Any) -> str:
    document = {"name": "t", "data": {"source": "iris"}, "model": {"type": "mlp", "dense": [4]}}
    return dump({**document, "output": {"dir": str(RUNS)}, **top}).decode() + extra


REGRESSIONS = [
    # (what, config text, a phrase the error must contain)
    ("rich markup in a key", minimal("'[/]': 1\n"), "the config does not accept `[/]`"),
    ("rich markup in a value", minimal("extra: '[bold]x[/]'\n"), "extra='[bold]x[/]'"),
    (
        "alias bomb under the alias limit",  # 48 aliases, 6**8 values in a layer argument
        minimal(
            model={
                "type": "sequential",
                "layers": [{"type": "Dense", "units": 1, "kernel_size": "@"}],
            }
        ).replace("'@'", flow_bomb(6, 8)),
        "once aliases are expanded",
    ),
    ("duplicate key", minimal("seed: 1\nseed: 2\n"), "found duplicate key 'seed'"),
    ("infinite clipnorm", minimal(optimizer={"clipnorm": float("inf")}), "optimizer.clipnorm:"),
    (
        "infinite schedule",
        minimal(optimizer={"learning_rate": {"schedule": "cosine", "initial": float("inf")}}),
        "optimizer.learning_rate.initial: input should be a finite number",
    ),
    (
        "NaN and negative piecewise rates",
        minimal(
            optimizer={
                "learning_rate": {
                    "schedule": "piecewise",
                    "boundaries": [1, 2],
                    "values": [float("nan"), -1.0, 0.1],
                }
            }
        ),
        "optimizer.learning_rate.values.1: input should be greater than or equal to 0",
    ),
    (
        "units beyond int32",
        minimal(model={"type": "mlp", "dense": [2**70]}),
        "model.dense.0: input should be less than 2147483648",
    ),
    (
        "steps beyond int32",
        minimal(train={"steps_per_epoch": 2**40}),
        "train.steps_per_epoch: input should be less than 2147483648",
    ),
    (
        "warmup beyond int32",
        minimal(
            optimizer={
                "learning_rate": {"schedule": "cosine", "initial": 0.1, "warmup_steps": 2**40}
            }
        ),
        "optimizer.learning_rate.warmup_steps:",
    ),
    ("run name over 255 bytes", minimal(name="😀" * 64), "name: a run name must fit"),
    ("run name with a newline", minimal(name="a\nb"), "name: a run name must be a plain"),
    ("NUL in output.dir", minimal(output={"dir": "runs\x00"}), "output.dir: a path cannot"),
    ("NUL in base", minimal(base="a\x00b"), "base: not a usable path"),
    ("base name too long", minimal(base="x" * 5000), "base: not a usable path"),
]


@pytest.mark.parametrize("command", ["validate", "train"])
@pytest.mark.parametrize("case", REGRESSIONS, ids=[c[0] for c in REGRESSIONS])
def test_regression(command, case):
    _, text, phrase = case
    result = run_bad_input(command, BadInput("regression", {"config.yaml": text.encode()}))
    assert phrase in result.stderr, result.stderr


@pytest.mark.parametrize("command", ["validate", "train"])
def test_a_huge_file_is_refused_without_reading_it(command, tmp_path):
    """`base:` may name any file; an 8 GiB (sparse) one is refused after reading 1 MB."""
    with open(tmp_path / "huge.yaml", "wb") as handle:
        handle.truncate(8 * 2**30)
    start = time.perf_counter()
    result = RUNNER.invoke(app, [command, str(tmp_path / "huge.yaml")])
    assert time.perf_counter() - start < SECONDS
    (tmp_path / "huge.yaml").unlink()
    assert result.exit_code == 2 and "too big for a config" in result.stderr, result.output

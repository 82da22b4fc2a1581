"""Hypothesis strategies of broken configs, each invalid by construction: one corruption
of a valid base (unknown and misspelled keys at every level, wrong nesting, wrong types,
numbers outside the schema's bounds, unknown names, semantic conflicts, hostile run names
and paths, a broken `--set`), or a broken whole file (`fuzz_files`). `bad_inputs()` draws
from all of them; `FAMILIES` names every kind of corruption it can produce."""

from __future__ import annotations

import copy
import typing
from typing import Any

from hypothesis import assume
from hypothesis import strategies as st

from bigmodel_cli import config as schema
from bigmodel_cli.config.allowlist import ALLOWED_LAYERS
from tests.helpers.fuzz_bases import (
    base_names,
    fresh,
    get,
    parent_exists,
    parsed,
    put,
    section_at,
    section_paths,
    words,
)
from tests.helpers.fuzz_files import (
    alias_bomb,
    bad_base_chain,
    malformed_yaml,
    non_mapping,
    raw_bytes,
)
from tests.helpers.fuzz_names import hostile, not_in
from tests.helpers.fuzz_runner import RUNS, BadInput, as_input

MAX_INT = 2**31 - 1

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

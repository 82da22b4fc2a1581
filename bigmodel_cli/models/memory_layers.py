"""The real model built without allocating it, and what each of its layers costs.

`symbolic_model` builds the config's model inside `tf.Graph().as_default()`: tf_keras
then creates every variable as a graph node (no initial value is computed), so shapes
and parameter counts are exact while nothing the size of a weight is allocated
(measured: `dense: [100000000]` adds 1 MB of RSS). `layer_costs` walks its layers and
names the config key responsible for each cost: the layer's own key (`model.dense.0`,
`model.conv.1`, `model.layers.3`, ...), or, for a layer that only passes its input on
(Flatten, pooling, the output layer of a wide model), the key of what made its input
large, or the key whose value is the cost's largest dimension (`model.max_length`).
Imports TensorFlow: memory.py imports this module only when it has a model to measure.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bigmodel_cli.config import Config
from bigmodel_cli.layers import PositionEncoding
from bigmodel_cli.tfenv import import_keras, import_tensorflow

tf = import_tensorflow()
keras = import_keras()

WEIGHT_BYTES = 4  # variables stay float32 under mixed precision
# Bytes per table entry while layers.sinusoid_table computes it (float64 angles, sine,
# cosine and their selection, then the float32 table).
SINE_TABLE_BUILD_BYTES = 36
# Gates per step and unit; memory.py scales them by what the backward pass keeps.
RECURRENT_GATES = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}


@dataclass(frozen=True)
class Cost:
    key: str
    part: str  # "weights" (bytes) or "activations" (bytes per example)
    bytes: int
    kind: str  # weight | table | output | attention | recurrent
    trainable: bool = False
    what: str = ""  # "100,000,000 units", for the message naming `key`


@contextlib.contextmanager
def symbolic_model(cfg: Config, spec: Any, precision: str = "float32") -> Iterator[Any]:
    """The model `build_model` makes for `cfg`, in a scratch graph: nothing allocated."""
    from bigmodel_cli import distribution
    from bigmodel_cli.models.build import build_model

    previous = keras.mixed_precision.global_policy()
    with _keras_classes_kept(), tf.Graph().as_default():
        tf.compat.v1.set_random_seed(cfg.seed)  # op determinism wants a seed per graph
        distribution.set_precision(precision)
        try:
            yield build_model(cfg, spec)
        finally:
            keras.mixed_precision.set_global_policy(previous)


def _subclasses(root: type) -> set[type]:
    found, todo = set(), [root]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in found:
                found.add(sub)
                todo.append(sub)
    return found


@contextlib.contextmanager
def _keras_classes_kept() -> Iterator[None]:
    """Undo what graph mode does to Keras's classes: a layer made in a v1 graph has its
    class (and every base) rebased onto the v1 Layer/Model in place
    (tf_keras.utils.version_utils.swap_class), which breaks every layer of those classes
    made before ("Your Layer or Model is in an invalid state") until the next eager
    construction swaps them back."""
    classes = _subclasses(keras.layers.Layer) | {keras.layers.Layer}
    bases = {cls: cls.__bases__ for cls in classes}
    try:
        yield
    finally:
        for cls, original in bases.items():
            if cls.__bases__ != original:
                cls.__bases__ = original


def graph_ops() -> int:
    """Ops of the current graph, including those of the functions it calls (loops)."""
    graph = tf.compat.v1.get_default_graph()
    library = graph.as_graph_def().library.function
    return len(graph.get_operations()) + sum(len(f.node_def) for f in library)


# === Before building: what constructing the model itself allocates ===========


def prebuild_costs(cfg: Config, spec: Any, bytes_per_weight: float) -> list[tuple[str, int, str]]:
    """(key, bytes, what) a transformer needs before its symbolic model can exist: its
    position table is computed in NumPy when the layer is made (even in a scratch graph),
    so a table that cannot fit, or a d_model whose blocks could not (weights at
    `bytes_per_weight`), is refused without building anything."""
    model = cfg.model
    if model.type != "transformer":
        return []
    shape = tuple(model.input_shape or spec.input_shape)
    steps = shape[0]
    if model.patch_size and len(shape) == 3:
        steps = (shape[0] // model.patch_size) * (shape[1] // model.patch_size)
    length, width = max(model.max_length or 0, steps), model.d_model
    table_key = "model.max_length" if length >= width else "model.d_model"
    ff = model.ff_dim or 4 * width
    blocks = model.num_layers * (4 * width * width + 2 * width * ff)
    block_key = "model.ff_dim" if model.ff_dim and ff > 2 * width else "model.d_model"
    return [
        (table_key, length * width * SINE_TABLE_BUILD_BYTES,
         f"computing a position table of {length:,} positions x {width:,} (max_length x "
         "d_model) needs"),
        (block_key, int(blocks * bytes_per_weight),
         f"{model.num_layers:,} blocks of d_model {width:,} and ff_dim {ff:,} need, for "
         "their weights and optimizer state,"),
    ]  # fmt: skip


# === Which config key sizes what ================================================


def size_keys(cfg: Config, spec: Any) -> list[tuple[str, int]]:
    """(key, value) of every size the config (or its data) sets, for naming costs."""
    model, data = cfg.model, cfg.data
    sizes = [(f"model.{name}.{i}", v) for name in ("dense", "units")
             for i, v in enumerate(getattr(model, name, None) or [])]  # fmt: skip
    sizes += [
        (f"model.conv.{i}", block.filters) for i, block in enumerate(getattr(model, "conv", []))
    ]
    for name in ("d_model", "ff_dim", "vocab_size", "max_length", "embedding_dim", "outputs"):
        value = getattr(model, name, None)
        if isinstance(value, int):
            sizes.append((f"model.{name}", value))
    if model.type == "transformer" and model.ff_dim is None:
        sizes.append(("model.d_model", 4 * model.d_model))
    for index, item in enumerate(getattr(model, "layers", None) or []):
        for value in item.values():
            values = value if isinstance(value, list) else [value]
            sizes += [(f"model.layers.{index}", v) for v in values if type(v) is int]
    if spec.vocab_size and not getattr(model, "vocab_size", None):  # the data's vocabulary
        keys = [f"data.{name}" for name in ("vocab_size", "max_tokens") if getattr(data, name)]
        sizes.append(((keys or ["data"])[0], spec.vocab_size))
    for name in ("sequence_length", "features"):
        if isinstance(getattr(data, name), int):
            sizes.append((f"data.{name}", getattr(data, name)))
    for name in ("image_shape", "image_size"):
        sizes += [(f"data.{name}", v) for v in getattr(data, name) or []]
    return sizes


def own_key(cfg: Config, name: str, index: int) -> str | None:
    """The config key a layer of a preset (by its name) or of a sequential list stands for."""
    if cfg.model.type == "sequential":
        return f"model.layers.{index}"
    match = re.match(r"(dense|conv|lstm|gru|simple|bidirectional)_(\d+)", name)
    if match:
        kind = {"dense": "dense", "conv": "conv"}.get(match.group(1), "units")
        return f"model.{kind}.{int(match.group(2)) - 1}"
    if cfg.model.type == "rnn" and name == "embedding":
        return "model.embedding_dim"
    if cfg.model.type == "transformer" and name != "predictions":
        if re.match(r"block_\d+_ff_1$", name) and cfg.model.ff_dim:
            return "model.ff_dim"
        return "model.d_model"
    if name == "predictions" and cfg.model.outputs:
        return "model.outputs"
    return None


def _match(big: int, sizes, own: str | None, inherited: str | None) -> str | None:
    """The key whose value is `big` (the layer's own first, then its input's), or the
    layer's own key when `big` is 2 to 4 times its value (a recurrent layer's gates)."""
    if big <= 1:
        return None
    found = [key for key, value in sizes if value == big]
    for preferred in (own, inherited):
        if preferred in found:
            return preferred
    if found:
        return found[0]
    own_values = [value for key, value in sizes if key == own]
    if any(big in (2 * v, 3 * v, 4 * v) for v in own_values):
        return own
    return None


def describe(cfg: Config, key: str, layer: Any, index: int, out_dims: list[int]) -> str:
    """What a key sets, in words: `100,000,000 units`, `max_length 10,000,000`; for a
    sequential layer, what it makes (when `layer`, number `index`, is that layer)."""
    parts = key.split(".")
    model = cfg.model
    if parts[:2] in (["model", "dense"], ["model", "units"]):
        return f"{getattr(model, parts[1])[int(parts[2])]:,} units"
    if parts[:2] == ["model", "conv"]:
        return f"{model.conv[int(parts[2])].filters:,} filters"
    if parts[:2] == ["model", "layers"]:
        kind = model.layers[int(parts[2])]["type"]
        if int(parts[2]) != index:
            return kind
        if layer.count_params():
            return f"{kind} ({layer.count_params():,} parameters)"
        return f"{kind} (output {'x'.join(f'{d:,}' for d in out_dims)} per example)"
    value = getattr(model if parts[0] == "model" else cfg.data, parts[-1], None)
    return f"{parts[-1]} {value:,}" if isinstance(value, int) else ""


# === The walk ===================================================================


def _dims(shape: Any) -> list[int]:
    if isinstance(shape, list):  # several inputs or outputs: the first
        shape = shape[0]
    return [1 if d is None else int(d) for d in tuple(shape)[1:]]


def _inbound(layer: Any) -> list[str]:
    if not layer.inbound_nodes:
        return []
    inbound = layer.inbound_nodes[0].inbound_layers
    inbound = inbound if isinstance(inbound, list) else [inbound]
    return [item.name for item in inbound]


def _internal_activations(layer: Any, in_dims: list[int]) -> tuple[int, int]:
    """(values per example, the dimension that makes them large) held inside a layer:
    attention scores (heads x queries x keys) or a recurrent layer's per-step states."""
    if isinstance(layer, keras.layers.MultiHeadAttention):
        value_shape = getattr(layer, "_value_shape", None)
        keys = _dims(value_shape)[0] if value_shape is not None else in_dims[0]
        return layer._num_heads * in_dims[0] * keys, in_dims[0]
    cells = []
    if isinstance(layer, keras.layers.Bidirectional):
        cells = [layer.forward_layer, layer.backward_layer]
    elif isinstance(layer, keras.layers.RNN):
        cells = [layer]
    values = sum(
        in_dims[0] * r.cell.units * RECURRENT_GATES.get(type(r).__name__, 4) for r in cells
    )
    return values, (cells[0].cell.units if cells else 0)


def _tables(layer: Any) -> list[Any]:
    """The PositionEncoding layers inside `layer` (or itself)."""
    found = [layer] if isinstance(layer, PositionEncoding) else []
    return found + [sub for sub in getattr(layer, "_self_tracked_trackables", [])
                    if isinstance(sub, PositionEncoding)]  # fmt: skip


def layer_costs(model: Any, cfg: Config, spec: Any) -> list[Cost]:
    """Every weight, table and activation of `model`, each with the key responsible."""
    sizes = size_keys(cfg, spec)
    input_dims = _dims(model.input_shape)
    input_key = _match(max(input_dims), sizes, None, None) or "data"
    keys: dict[str, str] = {}
    costs: list[Cost] = []
    for index, layer in enumerate(model.layers):
        if isinstance(layer, keras.layers.InputLayer):
            keys[layer.name] = input_key
            continue
        own = own_key(cfg, layer.name, index)
        inbound = _inbound(layer)
        inherited = keys.get(inbound[0], input_key) if inbound else input_key
        in_dims, out_dims = _dims(layer.get_input_shape_at(0)), _dims(layer.get_output_shape_at(0))
        if math.prod(out_dims) > math.prod(in_dims):  # the layer itself makes it large
            act_key = _match(max(out_dims), sizes, own, inherited) or own or inherited
        else:
            act_key = inherited or own
        keys[layer.name] = act_key
        size = tf.as_dtype(layer.compute_dtype or "float32").size
        inside, big = _internal_activations(layer, in_dims)
        inside_key = _match(big, sizes, own, inherited) or act_key
        inside_kind = (
            "attention" if isinstance(layer, keras.layers.MultiHeadAttention) else "recurrent"
        )
        for key, values, kind in ((act_key, math.prod(out_dims), "output"),
                                  (inside_key, inside, inside_kind)):  # fmt: skip
            if values:
                what = describe(cfg, key, layer, index, out_dims)
                costs.append(Cost(key, "activations", values * size, kind, what=what))
        for weight in layer.weights:
            shape = [int(d) for d in weight.shape] or [1]
            big = max(shape)
            key = _match(big, sizes, own, inherited)
            key = key or (own if own and big in out_dims else inherited) or own or "model"
            count = math.prod(shape) * WEIGHT_BYTES
            what = describe(cfg, key, layer, index, out_dims)
            costs.append(Cost(key, "weights", count, "weight", weight.trainable, what))
        for table in _tables(layer):
            key = _match(table.max_length, sizes, own, inherited) or own or "model"
            # The layer keeps its NumPy table; a sinusoidal one is also a constant of
            # each traced function (training and evaluation).
            copies = 3 if table.positional == "sinusoidal" else 1
            count = copies * table.max_length * table.width * WEIGHT_BYTES
            what = describe(cfg, key, layer, index, out_dims)
            costs.append(Cost(key, "weights", count, "table", False, what))
    return costs

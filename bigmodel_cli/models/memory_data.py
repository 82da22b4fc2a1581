"""The data's part of the memory estimate (see memory.py), and synthetic data's shape
before a single example is generated. No TensorFlow import.

- Data that has been read: the bytes of the arrays `load_data` returns (every split),
  x LOAD_FACTORS: the reader's arrays, the split copies, normalization's temporaries
  (float inputs only) and the copy tf.data keeps, fitted to measured peaks.
- Synthetic data: examples x values per example x SYNTHETIC_BYTES_PER_VALUE, the peak
  of synthetic.py's draws (float64 draws and their float32 copies; int64 token draws)
  and of load_data's copies, measured per task; known from the config alone, so a size
  that cannot fit is refused before anything is generated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from bigmodel_cli.config import Config
from bigmodel_cli.errors import UserError

LOAD_FACTORS = {"float": 4.5, "other": 2.5}  # fitted 4.38 and 2.59
SYNTHETIC_BYTES_PER_VALUE = {
    "classification": 18, "regression": 18, "image": 20, "tokens": 32, "sequence": 17,
    "language_model": 26,
}  # fmt: skip
TYPICAL_EXAMPLES = 100  # ranks data.examples against per-example sizes when naming a key


@dataclass(frozen=True)
class Layout:
    """What synthetic.py will generate, from the config's counts and its defaults."""

    examples: int
    shape: tuple[int, ...]  # native shape of one example
    kind: str  # a SYNTHETIC_BYTES_PER_VALUE key
    task: str  # classification | regression | language_model
    classes: int | None
    vocab_size: int | None
    sizes: dict[str, float]  # key -> how much it makes the data grow


def synthetic_layout(cfg: Config) -> Layout | None:
    from bigmodel_cli.data.defaults import SYNTHETIC_SEQUENCE_LENGTH
    from bigmodel_cli.data.sources.synthetic import DEFAULT_CLASSES, DEFAULTS

    data = cfg.data
    if data.source != "synthetic":
        return None
    task = data.task or "classification"
    n = data.examples or DEFAULTS["examples"]
    features = data.features if isinstance(data.features, int) else DEFAULTS["features"]
    length = data.sequence_length or SYNTHETIC_SEQUENCE_LENGTH.get(task, 1)
    classes = data.classes or DEFAULT_CLASSES.get(task)
    vocab = None
    if task in ("classification", "regression"):
        shape, kind, sizes = (features,), task, {"data.features": features}
    elif task == "image":
        shape = tuple(data.image_shape or DEFAULTS["image_shape"])
        kind, sizes = "image", {"data.image_shape": math.prod(shape)}
    elif task == "sequence" and data.vocab_size is not None:
        shape, kind, vocab = (length,), "tokens", data.vocab_size
        sizes = {"data.sequence_length": length}
    elif task == "sequence":
        shape, kind = (length, data.features or 1), "sequence"
        sizes = {"data.sequence_length": length, "data.features": data.features or 1}
    else:
        shape, kind = (length,), "language_model"
        vocab = classes = data.vocab_size or DEFAULTS["vocab_size"]
        sizes = {"data.sequence_length": length}
    sizes["data.examples"] = n / TYPICAL_EXAMPLES
    label_task = task if task in ("regression", "language_model") else "classification"
    return Layout(n, shape, kind, label_task, classes, vocab, sizes)


@dataclass
class DataPart:
    bytes: int
    key: str  # the config key that makes it large
    what: str  # "10,000,000 examples of shape 1,000"
    held: int = 0  # bytes of the arrays read (data that has been read)


def synthetic_data(cfg: Config) -> DataPart | None:
    """What generating and holding `data.source: synthetic` takes, before generating."""
    layout = synthetic_layout(cfg)
    if layout is None:
        return None
    # The language model draws one token more per example (inputs and shifted labels).
    steps = (layout.shape[0] + 1,) if layout.kind == "language_model" else layout.shape
    values = layout.examples * math.prod(steps)
    key = max(layout.sizes, key=lambda k: layout.sizes[k])
    set_by_max_length = (
        cfg.model.type == "transformer" and cfg.model.max_length == cfg.data.sequence_length
    )
    if key == "data.sequence_length" and set_by_max_length:
        key = "model.max_length"  # it set the sequence length (see config.py)
    shape = "x".join(f"{d:,}" for d in layout.shape)
    what = f"{layout.examples:,} examples of shape {shape}"
    return DataPart(values * SYNTHETIC_BYTES_PER_VALUE[layout.kind], key, what)


def synthetic_spec(cfg: Config) -> Any:
    """The DataSpec load_data will give synthetic data, made from zero examples (so
    nothing is generated), or None when the config and the data do not fit together."""
    from bigmodel_cli import data as data_lib
    from bigmodel_cli.data.raw import RawData

    layout = synthetic_layout(cfg)
    if layout is None:
        return None
    tokens = layout.kind in ("tokens", "language_model")
    x = np.empty((0, *layout.shape), np.int32 if tokens else np.float32)
    y_shape = {"regression": (0, 1), "language_model": (0, *layout.shape)}.get(layout.task, (0,))
    kind = (
        "tokens"
        if tokens
        else {"image": "image", "sequence": "sequence"}.get(layout.kind, "tabular")
    )
    raw = RawData(
        x=x,
        y=np.empty(y_shape),
        task=layout.task,
        kind=kind,
        description="",
        num_classes=layout.classes,
        vocab_size=layout.vocab_size,
    )
    try:
        shape = data_lib.layout_shape(layout.shape, kind, cfg)
    except UserError:
        return None
    return data_lib.data_spec(raw, shape, cfg)  # load_data's own, on the same RawData fields


def data_bytes(cfg: Config, bundle: Any) -> DataPart:
    """The data part: the synthetic estimate, or the arrays of `bundle` x LOAD_FACTORS,
    whichever is larger (`what` is then empty: the caller words the bytes held)."""
    held = loaded = 0
    for part in (bundle.train, bundle.validation, bundle.test) if bundle is not None else ():
        if part is not None and part.windows is not None:
            # Read from a token file a batch at a time: held are the epoch's order (an
            # int64 per sequence, with its sort keys and argsort, ~3x) and no tokens.
            loaded += 3 * 8 * len(part)
            continue
        if part is not None and part.encoded is not None:
            # Decoded a batch at a time: held are the labels, where each example is (file,
            # offset, length) and the epoch's order (with its sort keys, ~3x an int64).
            held += part.y.nbytes + 20 * len(part)
            loaded += part.y.nbytes + (20 + 3 * 8) * len(part)
            continue
        for array in (part.x, part.y) if part is not None else ():
            held += array.nbytes
            kind = "float" if array is part.x and array.dtype.kind == "f" else "other"
            loaded += int(array.nbytes * LOAD_FACTORS[kind])
    synthetic = synthetic_data(cfg)
    if synthetic is not None and synthetic.bytes >= loaded:
        return synthetic
    return DataPart(loaded, "data", "", held)

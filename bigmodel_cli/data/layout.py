"""Layout of one example as the model reads it, and whether the model can read it.

From the source's native shape (tabular (F,), image (H, W, C), float sequence (T, F),
tokens (T,)): `model.input_shape` if given (same number of values), else
mlp -> flat (F*...,); cnn -> images as is, tabular (F, 1) for Conv1D, sequences as is;
rnn and transformer -> images (H, W*C) (rows are steps), tabular (F, 1), sequences and
tokens as is, but transformer with `patch_size` (a Vision Transformer) -> images as is;
sequential -> native. Token data needs rnn, transformer or sequential.
"""

from __future__ import annotations

import math

from bigmodel_cli.config import Config
from bigmodel_cli.data.raw import RawData
from bigmodel_cli.errors import DataError
from bigmodel_cli.spec import DataSpec


def layout_shape(native: tuple[int, ...], kind: str, cfg: Config) -> tuple[int, ...]:
    """Shape of one example as the model reads it (see the module docstring)."""
    size = math.prod(native)
    given = cfg.model.input_shape
    if given is not None:
        if math.prod(given) != size:
            raise DataError(
                f"model.input_shape: {list(given)} holds {math.prod(given)} values per example, "
                f"but the data's examples have shape {list(native)} = {size} values. Use a "
                f"shape whose product is {size} (e.g. {list(native)} or [{size}]), or remove it."
            )
        return tuple(given)
    model = cfg.model.type
    if model == "mlp":
        return (size,)
    if model == "sequential":
        return native
    if kind == "tabular":
        return (*native, 1)  # features as steps of one channel: Conv1D and RNNs read (F, 1)
    if kind == "image" and model == "transformer" and cfg.model.patch_size:
        return native  # a Vision Transformer cuts the image into patches itself
    if kind == "image" and model in ("rnn", "transformer"):
        return (native[0], native[1] * native[2])  # each image row is one step
    return native


def model_fit_problems(raw: RawData, cfg: Config) -> list[str]:
    """Why `cfg.model` cannot read the examples of `raw`, one line each (or none)."""
    model = cfg.model
    problems = []
    if raw.kind in ("tokens", "text") and model.type in ("mlp", "cnn"):
        problems.append(
            f"model.type: {model.type!r} cannot read integer token sequences (the data's inputs "
            "are token ids); use rnn or transformer, which embed tokens, or sequential with an "
            "Embedding layer"
        )
    if raw.kind == "volume" and model.type in ("rnn", "transformer"):
        problems.append(f"model.type: {model.type!r} cannot read 3-D volumes {raw.x.shape[1:]}")
    if model.type == "rnn" and model.embedding_dim and raw.kind not in ("tokens", "text"):
        problems.append(
            "model.embedding_dim: the data has float inputs, not token ids; remove embedding_dim"
        )
    if model.type == "transformer":
        wants_lm = model.task == "language_model"
        if wants_lm and raw.task != "language_model":
            problems.append(
                "model.task: 'language_model' needs token sequences with next-token labels "
                "(data.source: text_corpus, synthetic with task: language_model, or an npz "
                f"of integer x and y of the same shape); {raw.description}"
            )
        if not wants_lm and raw.task == "language_model":
            problems.append(
                "model.task: 'classify' but the data is for a language model; "
                "set model.task: language_model"
            )
        if raw.vocab_size and model.vocab_size and model.vocab_size < raw.vocab_size:
            problems.append(
                f"model.vocab_size: {model.vocab_size} but the data has token ids up to "
                f"{raw.vocab_size - 1}; use vocab_size >= {raw.vocab_size} or remove it"
            )
        steps = raw.x.shape[1] if raw.x.ndim >= 2 else 1
        rows = model.input_shape is None and not model.patch_size  # ViT: the builder checks
        if model.max_length and rows and model.max_length < steps:
            problems.append(
                f"model.max_length: {model.max_length} is shorter than the data's sequences "
                f"({steps} steps); use max_length >= {steps} or remove it"
            )
    problems += _augment_problems(raw, cfg)
    return problems


def _augment_problems(raw: RawData, cfg: Config) -> list[str]:
    """`data.augment` transforms images, so the model must read (H, W, C) images."""
    if cfg.data.augment is None or not cfg.data.augment.active:
        return []
    if raw.kind != "image":
        return [
            f"data.augment: random image transformations need images (height, width, "
            f"channels); this data's examples are {raw.kind} of shape {list(raw.x.shape[1:])}. "
            "Remove data.augment"
        ]
    try:
        shape = layout_shape(raw.x.shape[1:], raw.kind, cfg)
    except DataError:
        return []  # reported by load_data's own layout check
    if len(shape) == 3:
        return []
    hint = "set model.patch_size" if cfg.model.type == "transformer" else "use model.type cnn"
    return [
        f"data.augment: random image transformations need the model to read images as "
        f"(height, width, channels), but model.type {cfg.model.type!r} reads each example as "
        f"{list(shape)}. Remove data.augment, or {hint} (cnn, sequential and transformer "
        "with patch_size read images as they are)"
    ]


def data_spec(raw: RawData, shape: tuple[int, ...], cfg: Config) -> DataSpec:
    """What the model builders need to know of `raw` laid out as `shape`."""
    tokens = raw.kind == "tokens"
    sequence = (tokens and len(shape) == 1) or (not tokens and len(shape) == 2)
    return DataSpec(
        task=raw.task,
        input_shape=tuple(int(d) for d in shape),
        input_dtype="int32" if tokens else "float32",
        num_classes=raw.num_classes,
        target_size=int(raw.y.shape[1]) if raw.task == "regression" else 1,
        vocab_size=raw.vocab_size if tokens else None,
        sequence_length=int(shape[0]) if sequence else None,
        class_names=raw.class_names,
        bytes_per_token=raw.bytes_per_token,
        token_bytes=raw.token_bytes,
        feature_names=raw.feature_names,
    )

"""`model.type: transformer`: a pre-LayerNorm encoder, as a sequence classifier
(`task: classify`) or a causal language model (`task: language_model`).

Inputs -> token+position embedding (ids), Dense projection + position encoding (float
`(steps, features)`), or, with `patch_size` (a Vision Transformer), patch embedding +
position encoding (images `(height, width, channels)`) -> `num_layers` blocks -> final
LayerNorm -> head:
- classify: GlobalAveragePooling1D -> hidden Dense blocks -> output layer.
- language_model: the output Dense over the vocabulary at every position.

The patch embedding is `Conv2D(d_model, patch_size, strides=patch_size)` (one linear
map of each non-overlapping patch, as in ViT) reshaped to `(patches, d_model)`, patches
in row-major order; there is no class token, the head pools over the patches.

A block is `x + Dropout(MHA(LN(x)))` then `x + Dropout(Dense(Dense_ff(LN(x))))`. The
language model's attention is built with `use_causal_mask=True` in the functional
graph, so the mask is part of the saved model and survives `load_model`. The model is a
`layers.LayersModel`, so plain `tf_keras.models.load_model` finds the custom layers.
"""

from __future__ import annotations

import math

from bigmodel_cli import registry
from bigmodel_cli.config import Config, defaults
from bigmodel_cli.errors import ConfigError
from bigmodel_cli.layers import LayersModel, PositionEncoding, TokenAndPositionEmbedding
from bigmodel_cli.models import common
from bigmodel_cli.spec import DataSpec
from bigmodel_cli.tfenv import import_keras

keras = import_keras()

LAYER_NORM_EPSILON = 1e-5  # as GPT-2; Keras's 1e-3 is tuned for BatchNormalization
# Layer names the cached decoder (transformer_cache.py) finds the trained layers by.
EMBEDDING, FINAL_NORM = "embedding", "final_norm"
BLOCK_PARTS = ("attn_norm", "attn", "attn_residual", "ff_norm", "ff_1", "ff_2", "ff_residual")


def block_layer_name(index: int, part: str) -> str:
    """The name of one of `BLOCK_PARTS` in block `index` (from 1)."""
    return f"block_{index}_{part}"


def _check_task(cfg: Config, spec: DataSpec) -> None:
    is_lm_data = spec.task == "language_model"
    if cfg.model.task == "language_model" and not is_lm_data:
        raise ConfigError(
            f"model.task: language_model needs a token corpus (data task language_model); "
            f"the data's task is {spec.task!r}. Use task: classify."
        )
    if cfg.model.task == "classify" and is_lm_data:
        raise ConfigError(
            "model.task: the data is a language-model corpus (a label per token); "
            "set model.task: language_model."
        )


def _sequence_length(cfg: Config, spec: DataSpec) -> int:
    shape = common.input_shape(cfg, spec)
    expected_rank = 1 if common.is_tokens(spec) else 2
    if len(shape) != expected_rank:
        what = "(steps,) token ids" if common.is_tokens(spec) else "(steps, features) floats"
        raise ConfigError(
            f"model.type: transformer needs examples shaped {what}; received {list(shape)}."
        )
    return shape[0]


def _patch_count(cfg: Config, spec: DataSpec) -> int:
    """Patches per image for a Vision Transformer; the image must tile exactly."""
    shape = common.input_shape(cfg, spec)
    size = cfg.model.patch_size
    if common.is_tokens(spec) or len(shape) != 3:
        what = "token ids" if common.is_tokens(spec) else "examples"
        raise ConfigError(
            f"model.patch_size: patches are cut from images shaped (height, width, channels); "
            f"the data's {what} are shaped {list(shape)}. Remove patch_size to read them "
            "as a sequence."
        )
    height, width, _ = shape
    if height % size or width % size:
        common_side = math.gcd(height, width)
        fits = [d for d in range(1, common_side + 1) if common_side % d == 0]
        raise ConfigError(
            f"model.patch_size: {size} does not divide the {height}x{width} images (height x "
            f"width) into whole patches. Use one of {', '.join(map(str, fits))}, or resize "
            "the images (data.image_size for image_dir)."
        )
    return (height // size) * (width // size)


def _at_least(key: str, configured: int | None, needed: int | None, what: str) -> int | None:
    """The configured size, or the data's; smaller than the data's is an error."""
    if configured is None:
        return needed
    if needed is not None and configured < needed:
        raise ConfigError(
            f"model.{key}: {configured} is smaller than the data's {what} ({needed}). "
            f"Set it to at least {needed}, or remove it to use the data's."
        )
    return configured


def _embed(inputs, cfg: Config, spec: DataSpec, max_length: int):
    model = cfg.model
    penalty = registry.build_regularizer(cfg.regularization)
    if common.is_tokens(spec):
        vocab_size = _at_least("vocab_size", model.vocab_size, spec.vocab_size, "vocabulary")
        return TokenAndPositionEmbedding(
            vocab_size,
            max_length,
            model.d_model,
            positional=model.positional,
            embeddings_regularizer=penalty,
            name=EMBEDDING,
        )(inputs)
    if model.vocab_size is not None:
        raise ConfigError(
            "model.vocab_size: the data has float inputs, not token ids; remove vocab_size."
        )
    if model.patch_size:
        x = _patch_embedding(inputs, cfg)
    else:
        x = keras.layers.Dense(model.d_model, name="input_projection", **common.kernel_args(cfg))(
            inputs
        )
    return PositionEncoding(
        max_length,
        model.d_model,
        positional=model.positional,
        embeddings_regularizer=penalty,
        name="position_encoding",
    )(x)


def _patch_embedding(inputs, cfg: Config):
    """(height, width, channels) -> (patches, d_model): one linear map per patch."""
    model = cfg.model
    x = keras.layers.Conv2D(
        model.d_model,
        model.patch_size,
        strides=model.patch_size,
        name="patch_embedding",
        **common.kernel_args(cfg),
    )(inputs)
    patches = x.shape[1] * x.shape[2]
    return keras.layers.Reshape((patches, model.d_model), name="patches")(x)


def encoder_block(x, cfg: Config, index: int, causal: bool):
    """One pre-LayerNorm block: attention then feed-forward, each with a residual."""
    model, kernels = cfg.model, common.kernel_args(cfg)

    def name(part: str) -> str:
        return block_layer_name(index, part)

    # === Self-attention ===
    h = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=name("attn_norm"))(x)
    h = keras.layers.MultiHeadAttention(
        model.num_heads, key_dim=model.d_model // model.num_heads, name=name("attn"), **kernels
    )(h, h, use_causal_mask=causal)
    h = common.dropout(h, cfg, name("attn"))
    x = keras.layers.Add(name=name("attn_residual"))([x, h])

    # === Feed-forward ===
    h = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=name("ff_norm"))(x)
    h = keras.layers.Dense(
        model.ff_dim or 4 * model.d_model,
        activation=model.activation,
        name=name("ff_1"),
        **kernels,
    )(h)
    h = keras.layers.Dense(model.d_model, name=name("ff_2"), **kernels)(h)
    h = common.dropout(h, cfg, name("ff"))
    return keras.layers.Add(name=name("ff_residual"))([x, h])


def _tied_output(x, cfg: Config, spec: DataSpec, embedding):
    """The language-model head of `model.tie_embeddings`: the token embedding, reversed,
    then the head's activation (a layer of its own, named as every output layer is)."""
    if not isinstance(embedding, TokenAndPositionEmbedding):
        raise ConfigError("model.tie_embeddings: needs integer token inputs to embed.")
    if cfg.model.outputs and cfg.model.outputs != embedding.vocab_size:
        raise ConfigError(
            f"model.outputs: {cfg.model.outputs} output units, but tied embeddings output "
            f"the vocabulary ({embedding.vocab_size}); remove model.outputs"
        )
    head = defaults.output_head(cfg, spec)
    scores = embedding(x, reverse=True)
    return keras.layers.Activation(head.activation, dtype="float32", name=common.OUTPUT_LAYER)(
        scores
    )


def build_transformer(cfg: Config, spec: DataSpec) -> keras.Model:
    model = cfg.model
    _check_task(cfg, spec)
    is_lm = model.task == "language_model"
    if is_lm and not common.is_tokens(spec):
        raise ConfigError("model.task: language_model needs integer token inputs.")
    common.require_batch_norm_target(cfg, bool(model.dense), "its hidden Dense layers")
    if model.patch_size:
        steps, what = _patch_count(cfg, spec), "number of patches"
    else:
        steps, what = _sequence_length(cfg, spec), "sequence length"
    max_length = _at_least("max_length", model.max_length, steps, what)

    # === Inputs ===
    inputs = common.model_input(cfg, spec)
    x = _embed(inputs, cfg, spec, max_length)
    embedding = x._keras_history.layer  # the input stage, whose table a tied head reuses

    # === Encoder blocks ===
    for index in range(1, model.num_layers + 1):
        x = encoder_block(x, cfg, index, causal=is_lm)
    x = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=FINAL_NORM)(x)

    # === Head ===
    if is_lm and model.tie_embeddings:
        outputs = _tied_output(x, cfg, spec, embedding)
    elif is_lm:
        vocab_size = model.vocab_size or spec.vocab_size
        units = _at_least("outputs", model.outputs, vocab_size, "vocabulary")
        outputs = common.output_layer(x, cfg, spec, units=units)
    else:
        x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
        x = common.dense_stack(x, cfg)
        outputs = common.output_layer(x, cfg, spec)
    # Its saved file names bigmodel_cli.layers, which tf_keras then imports (see there).
    return LayersModel(inputs, outputs, name=common.model_name(cfg))

"""flops_per_example against hand-computed counts (2 x multiply-accumulates, no biases)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tf_keras as keras  # noqa: E402

from bigmodel_cli.config import Config  # noqa: E402
from bigmodel_cli.models import build_model  # noqa: E402
from bigmodel_cli.models.flops import flops_per_example  # noqa: E402
from bigmodel_cli.spec import DataSpec  # noqa: E402


def stack(shape, *layers, dtype="float32") -> keras.Model:
    return keras.Sequential([keras.Input(shape, dtype=dtype), *layers])


def test_mlp_preset_counts_its_weight_products():
    cfg = Config.model_validate({"model": {"type": "mlp", "dense": [128, 64]}})
    spec = DataSpec(task="classification", input_shape=(100,), num_classes=10)
    assert flops_per_example(build_model(cfg, spec)) == 2 * (100 * 128 + 128 * 64 + 64 * 10)


def test_dense_on_a_sequence_counts_every_step():
    assert flops_per_example(stack((7, 3), keras.layers.Dense(5))) == 2 * 7 * 3 * 5


@pytest.mark.parametrize(
    ("shape", "layer", "expected"),
    [
        # 8x8x1 -> 6x6x4 with a 3x3 kernel: 36 positions x 9 x 1 x 4 MACs
        ((8, 8, 1), keras.layers.Conv2D(4, 3), 2 * 36 * 9 * 1 * 4),
        # 10 steps x 2 channels -> 8 steps x 3 filters, kernel 3
        ((10, 2), keras.layers.Conv1D(3, 3), 2 * 8 * 3 * 2 * 3),
        # stride 2, same padding: 4x4 outputs
        ((8, 8, 2), keras.layers.Conv2D(3, 3, strides=2, padding="same"), 2 * 16 * 9 * 2 * 3),
        ((4, 4, 4, 1), keras.layers.Conv3D(2, 2), 2 * 27 * 8 * 1 * 2),
        # depthwise 3x3 on 2 channels, then pointwise 2 -> 5, on 6x6 outputs
        ((8, 8, 2), keras.layers.SeparableConv2D(5, 3), 2 * 36 * (9 * 2 + 2 * 5)),
        ((8, 8, 2), keras.layers.DepthwiseConv2D(3), 2 * 36 * 9 * 2),
        # each of the 4x4 inputs scatters a 3x3x2x3 kernel
        ((4, 4, 2), keras.layers.Conv2DTranspose(3, 3), 2 * 16 * 9 * 2 * 3),
    ],
)
def test_convolutions(shape, layer, expected):
    assert flops_per_example(stack(shape, layer)) == expected


@pytest.mark.parametrize(("layer", "gates"), [("LSTM", 4), ("GRU", 3), ("SimpleRNN", 1)])
def test_recurrent_layers_count_every_step(layer, gates):
    model = stack((5, 3), getattr(keras.layers, layer)(4))
    # per step: input (3 -> gates*4) and recurrent (4 -> gates*4) products
    assert flops_per_example(model) == 2 * 5 * gates * 4 * (3 + 4)


def test_bidirectional_counts_both_directions():
    model = stack((5, 3), keras.layers.Bidirectional(keras.layers.LSTM(4)))
    assert flops_per_example(model) == 2 * 2 * 5 * 4 * 4 * (3 + 4)


def test_embedding_and_elementwise_layers_are_free():
    model = stack(
        (6,),
        keras.layers.Embedding(50, 8),
        keras.layers.LayerNormalization(),
        keras.layers.Dropout(0.1),
        keras.layers.GlobalAveragePooling1D(),
        dtype="int32",
    )
    assert flops_per_example(model) == 0


def test_self_attention_counts_projections_scores_and_mixing():
    inputs = keras.Input((6, 8))
    outputs = keras.layers.MultiHeadAttention(2, key_dim=4)(inputs, inputs)
    steps, width, heads, key_dim = 6, 8, 2, 4
    projections = 4 * steps * width * heads * key_dim  # q, k, v and output
    attention = 2 * heads * steps * steps * key_dim  # QK^T and weights x V
    assert flops_per_example(keras.Model(inputs, outputs)) == 2 * (projections + attention)


def test_cross_attention_uses_the_value_length():
    query, value = keras.Input((3, 8)), keras.Input((5, 8))
    outputs = keras.layers.MultiHeadAttention(2, key_dim=4)(query, value)
    projections = 3 * 8 * 8 + 2 * 5 * 8 * 8 + 3 * 8 * 8
    attention = 2 * 2 * 3 * 5 * 4
    model = keras.Model([query, value], outputs)
    assert flops_per_example(model) == 2 * (projections + attention)


def test_nested_models_are_counted_through():
    inner = stack((4,), keras.layers.Dense(3))
    inputs = keras.Input((4,))
    outer = keras.Model(inputs, keras.layers.Dense(2)(inner(inputs)))
    assert flops_per_example(outer) == 2 * (4 * 3 + 3 * 2)


def test_transformer_preset_adds_up_its_parts():
    cfg = Config.model_validate(
        {
            "model": {
                "type": "transformer",
                "task": "language_model",
                "d_model": 8,
                "num_heads": 2,
                "num_layers": 2,
                "ff_dim": 16,
            }
        }
    )
    spec = DataSpec(
        task="language_model", input_shape=(6,), input_dtype="int32", vocab_size=11, num_classes=11
    )
    steps, width = 6, 8
    attention = 4 * steps * width * width + 2 * steps * steps * width
    feed_forward = 2 * steps * width * 16
    head = steps * width * 11
    expected = 2 * (2 * (attention + feed_forward) + head)
    assert flops_per_example(build_model(cfg, spec)) == expected

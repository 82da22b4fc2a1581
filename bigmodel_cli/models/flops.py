"""Analytic forward-pass FLOPs of one example, for `bigmodel validate`.

Convention: FLOPs = 2 x multiply-accumulates of the weight products (matmuls,
convolutions, recurrent and attention products). Bias additions, activations,
normalization, pooling, residual adds, dropout and embedding lookups count 0: they are
a few percent of any real model and every FLOP counter draws that line differently.
So `Dense 100 -> 128 -> 64 -> 10` is exactly `2 * (100*128 + 128*64 + 64*10)`.

Layers are counted once each, on their first call (shared layers are not counted per
use), and attention is counted dense even when causal. An unknown (None) axis, e.g. a
variable sequence length, counts as 1.
"""

from __future__ import annotations

import math

from bigmodel_cli.layers import TokenAndPositionEmbedding
from bigmodel_cli.tfenv import import_keras

keras = import_keras()


def flops_per_example(model: keras.Model) -> int:
    """Forward-pass FLOPs of one example through `model` (see the module docstring)."""
    return int(sum(_layer_flops(layer) for layer in model.layers))


def _layer_flops(layer: keras.layers.Layer) -> int:
    if isinstance(layer, keras.Model):  # a nested model: recurse into its layers
        return flops_per_example(layer)
    for kind, count in _COUNTERS:
        if isinstance(layer, kind):
            return count(layer)
    return 0


def _dims(shape) -> list[int]:
    """An example's axes (batch dropped), None counted as 1."""
    if isinstance(shape, list):  # layers called on several tensors: the first one
        shape = shape[0]
    return [1 if dim is None else int(dim) for dim in tuple(shape)[1:]]


def _input_dims(layer) -> list[int]:
    return _dims(layer.get_input_shape_at(0))


def _output_dims(layer) -> list[int]:
    return _dims(layer.get_output_shape_at(0))


def _dense(layer) -> int:
    fan_in, units = layer.kernel.shape
    positions = math.prod(_input_dims(layer)[:-1])  # Dense on a sequence acts per step
    return 2 * positions * int(fan_in) * int(units)


def _conv(layer) -> int:
    # kernel: (*window, in_channels / groups, filters); one MAC per kernel entry per
    # output position.
    kernel_size = math.prod(int(d) for d in layer.kernel.shape)
    return 2 * kernel_size * math.prod(_output_dims(layer)[:-1])


def _conv_transpose(layer) -> int:
    # Each input position scatters the whole kernel.
    kernel_size = math.prod(int(d) for d in layer.kernel.shape)
    return 2 * kernel_size * math.prod(_input_dims(layer)[:-1])


def _depthwise(layer) -> int:
    kernel_size = math.prod(int(d) for d in layer.depthwise_kernel.shape)
    return 2 * kernel_size * math.prod(_output_dims(layer)[:-1])


def _separable(layer) -> int:
    depthwise = math.prod(int(d) for d in layer.depthwise_kernel.shape)
    pointwise = math.prod(int(d) for d in layer.pointwise_kernel.shape)
    return 2 * (depthwise + pointwise) * math.prod(_output_dims(layer)[:-1])


def _recurrent_step(cell) -> int:
    # kernel (features, gates*units) and recurrent_kernel (units, gates*units).
    return 2 * (math.prod(cell.kernel.shape) + math.prod(cell.recurrent_kernel.shape))


def _recurrent(layer) -> int:
    steps = _input_dims(layer)[0]
    return steps * _recurrent_step(layer.cell)


def _bidirectional(layer) -> int:
    steps = _input_dims(layer)[0]
    return steps * (
        _recurrent_step(layer.forward_layer.cell) + _recurrent_step(layer.backward_layer.cell)
    )


def _attention(layer) -> int:
    query_steps = _input_dims(layer)[0]
    # Keras records the value's shape when the layer is built; self-attention if absent.
    value_shape = getattr(layer, "_value_shape", None)
    value_steps = _dims(value_shape)[0] if value_shape is not None else query_steps
    q = layer._query_dense.kernel.shape  # (query_dim, heads, key_dim)
    k = layer._key_dense.kernel.shape  # (key_input_dim, heads, key_dim)
    v = layer._value_dense.kernel.shape  # (value_dim, heads, value_dim_per_head)
    heads, key_dim, value_dim = int(q[1]), int(q[2]), int(v[2])
    projections = (
        query_steps * math.prod(q)
        + value_steps * (math.prod(k) + math.prod(v))
        + query_steps * math.prod(layer._output_dense.kernel.shape)
    )
    scores = query_steps * value_steps * heads * key_dim  # Q K^T
    mixing = query_steps * value_steps * heads * value_dim  # softmax(...) V
    return 2 * int(projections + scores + mixing)


def _tied_projection(layer) -> int:
    """A token embedding called again, reversed, as the tied output projection
    (model.tie_embeddings): each step's hidden state times the (vocab, dim) table."""
    if len(layer.inbound_nodes) < 2:
        return 0  # only the lookup: no multiply-adds
    steps = _input_dims(layer)[0]
    return 2 * steps * layer.vocab_size * layer.embed_dim


# Order matters where classes inherit: SeparableConv and Conv*Transpose subclass Conv.
_COUNTERS = (
    (TokenAndPositionEmbedding, _tied_projection),
    (keras.layers.Dense, _dense),
    (keras.layers.DepthwiseConv2D, _depthwise),
    (keras.layers.SeparableConv1D, _separable),
    (keras.layers.SeparableConv2D, _separable),
    (keras.layers.Conv1DTranspose, _conv_transpose),
    (keras.layers.Conv2DTranspose, _conv_transpose),
    (keras.layers.Conv3DTranspose, _conv_transpose),
    (keras.layers.Conv1D, _conv),
    (keras.layers.Conv2D, _conv),
    (keras.layers.Conv3D, _conv),
    (keras.layers.Bidirectional, _bidirectional),
    (keras.layers.RNN, _recurrent),
    (keras.layers.MultiHeadAttention, _attention),
)

"""The causal Transformer language model of transformer.py, run with a key/value cache, as
keras-hub's causal LMs do (`call_with_cache`): the window is encoded once (prefill) and
every later token runs one position through the blocks.

The computation is the trained model's own, layer by layer: the token + position
embedding at absolute positions, then per block `x + MHA(LN(x))` and `x + FF(LN(x))`,
then the final LayerNorm and the output layer; dropout is inactive at inference and
skipped. Each block's attention runs as a `layers.CachedMultiHeadAttention` holding that
block's weights, so models saved with plain MultiHeadAttention (every run so far) decode
the same way. The layers are found by the names transformer.py gives them.

Every block's cache is a `(1, 2, C, heads, key_dim)` variable (keys and values of the
`C` positions of the window). Both graph functions take fixed shapes: one trace each,
however many tokens are generated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bigmodel_cli.errors import UserError
from bigmodel_cli.layers import CachedMultiHeadAttention
from bigmodel_cli.models import transformer
from bigmodel_cli.models.common import OUTPUT_LAYER
from bigmodel_cli.tfenv import import_tensorflow


@dataclass
class _Block:
    """One encoder block's layers, in `transformer.BLOCK_PARTS` order."""

    attn_norm: Any
    attn: Any
    attn_residual: Any
    ff_norm: Any
    ff_1: Any
    ff_2: Any
    ff_residual: Any


def _layer(model: Any, name: str):
    try:
        return model.get_layer(name)
    except ValueError:
        raise UserError(
            f"the run's model has no layer {name!r}: the cached decoder knows the causal "
            "Transformer of models/transformer.py only; try --no-cache"
        ) from None


def _blocks(model: Any) -> list[_Block]:
    """The model's encoder blocks, their attention swapped for a cached copy."""
    names = {layer.name for layer in model.layers}
    count = 0
    while transformer.block_layer_name(count + 1, "attn_norm") in names:
        count += 1
    blocks = []
    for index in range(1, count + 1):
        name = transformer.block_layer_name
        block = _Block(*(_layer(model, name(index, part)) for part in transformer.BLOCK_PARTS))
        block.attn = CachedMultiHeadAttention.from_attention(block.attn)
        blocks.append(block)
    return blocks


class CachedTransformer:
    """`prefill(tokens, length)` and `step(token, position)`: the output layer's values
    (logits or probabilities, as the model gives them) after the last token given."""

    def __init__(self, model: Any, context: int):
        tf = import_tensorflow()

        self.context = context
        self.embedding = _layer(model, transformer.EMBEDDING)
        self.blocks = _blocks(model)
        self.final_norm = _layer(model, transformer.FINAL_NORM)
        self.output = _layer(model, OUTPUT_LAYER)
        self.caches = [
            tf.Variable(block.attn.empty_cache(1, context), trainable=False)
            for block in self.blocks
        ]

        @tf.function(
            input_signature=[tf.TensorSpec((1, context), tf.int32), tf.TensorSpec((), tf.int32)]
        )
        def prefill(tokens, length):
            hidden = self._forward(tokens, tf.range(context, dtype=tf.int32))
            return self._head(hidden[:, length - 1 : length])

        @tf.function(input_signature=[tf.TensorSpec((), tf.int32), tf.TensorSpec((), tf.int32)])
        def step(token, position):
            hidden = self._forward(tf.reshape(token, (1, 1)), tf.reshape(position, (1,)))
            return self._head(hidden)

        self.prefill, self.step = prefill, step

    def _forward(self, tokens, positions):
        """Hidden states `(1, m, d)` of `tokens` `(1, m)` at consecutive absolute
        `positions` `(m,)`; their keys and values are written to the caches, and each
        position attends to every cached position up to its own."""
        tf = import_tensorflow()

        x = self.embedding.embed_at(tokens, positions)
        visible = tf.range(self.context)[None, :] <= positions[:, None]  # (m, C)
        for block, cache in zip(self.blocks, self.caches, strict=True):
            h = block.attn_norm(x)
            attended, updated = block.attn(
                h, h, attention_mask=visible[None], cache=cache.read_value(),
                cache_update_index=positions[0],
            )  # fmt: skip
            cache.assign(updated)
            x = block.attn_residual([x, attended])
            h = block.ff_2(block.ff_1(block.ff_norm(x)))
            x = block.ff_residual([x, h])
        return x

    def _head(self, hidden):
        hidden = self.final_norm(hidden)
        if not hasattr(self.output, "kernel"):  # model.tie_embeddings: the embedding, reversed
            hidden = self.embedding(hidden, reverse=True)
        return self.output(hidden)[0, -1]

    def traces(self) -> int:
        """How many graphs the two functions traced (2 when shapes never changed)."""
        return (
            self.prefill.experimental_get_tracing_count()
            + self.step.experimental_get_tracing_count()
        )

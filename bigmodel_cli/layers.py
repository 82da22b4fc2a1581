"""Custom Keras layers used by the presets, registered so `.keras` files load safely.

Each layer keeps every constructor argument and returns it from `get_config()`, so
`keras.models.load_model(path, safe_mode=True)` rebuilds it without custom code paths.
They are registered under the package name "bigmodel" (`bigmodel>PositionEncoding`),
which files saved by every bigmodel version name, so it must not change.

A model holding them is a `LayersModel`, so its file can be loaded by a process that
never imported bigmodel: see that class.
"""

from __future__ import annotations

import numpy as np

from bigmodel_cli.tfenv import import_keras, import_tensorflow

tf = import_tensorflow()
keras = import_keras()


POSITIONAL = ("sinusoidal", "learned")


def sinusoid_table(max_length: int, width: int) -> np.ndarray:
    """The fixed (max_length, width) position table of "Attention Is All You Need"."""
    positions = np.arange(max_length, dtype=np.float64)[:, None]
    # Dimensions 2i and 2i+1 share the frequency 1 / 10000^(2i / width).
    pair = np.arange(width) // 2
    angles = positions / np.power(10000.0, 2.0 * pair / width)[None, :]
    table = np.where(np.arange(width) % 2 == 0, np.sin(angles), np.cos(angles))
    return table.astype(np.float32)


@keras.saving.register_keras_serializable(package="bigmodel")
class PositionEncoding(keras.layers.Layer):
    """Adds a position signal to a `(batch, steps, width)` sequence.

    `positional="sinusoidal"` adds the fixed sine/cosine table (no weights, so it adds
    no parameters); `"learned"` adds a trainable `(max_length, width)` table. Sequences
    may be shorter than `max_length`; positions are taken from the start.
    """

    def __init__(
        self,
        max_length: int,
        width: int,
        positional: str = "sinusoidal",
        embeddings_initializer="uniform",
        embeddings_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if positional not in POSITIONAL:
            raise ValueError(
                f"positional must be one of {', '.join(POSITIONAL)}; received {positional!r}"
            )
        self.max_length = int(max_length)
        self.width = int(width)
        self.positional = positional
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.embeddings_regularizer = keras.regularizers.get(embeddings_regularizer)
        self._table = sinusoid_table(self.max_length, self.width)

    def build(self, input_shape):
        if self.positional == "learned":
            self.position_embeddings = self.add_weight(
                name="position_embeddings",
                shape=(self.max_length, self.width),
                initializer=self.embeddings_initializer,
                regularizer=self.embeddings_regularizer,
                trainable=True,
            )
        super().build(input_shape)

    def _position_table(self):
        if self.positional == "learned":
            return self.position_embeddings
        return tf.convert_to_tensor(self._table)

    def call(self, inputs):
        steps = tf.shape(inputs)[-2]
        return inputs + tf.cast(self._position_table()[:steps], inputs.dtype)

    def at(self, positions):
        """The position signal `(m, width)` at absolute `positions` `(m,)`: what `call`
        adds to step i of a sequence is `at([i])`, for decoding one position at a time."""
        return tf.gather(self._position_table(), positions)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "max_length": self.max_length,
                "width": self.width,
                "positional": self.positional,
                "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
                "embeddings_regularizer": keras.regularizers.serialize(self.embeddings_regularizer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="bigmodel")
class TokenAndPositionEmbedding(keras.layers.Layer):
    """Token ids `(batch, steps)` -> token embeddings plus position encoding.

    Holds a `keras.layers.Embedding(vocab_size, embed_dim)` and a `PositionEncoding`
    (sinusoidal or learned), so a transformer's whole input stage is one layer in the
    summary. Token ids must lie in `[0, vocab_size)` and sequences be at most
    `max_length` long.
    """

    def __init__(
        self,
        vocab_size: int,
        max_length: int,
        embed_dim: int,
        positional: str = "sinusoidal",
        embeddings_initializer="uniform",
        embeddings_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocab_size = int(vocab_size)
        self.max_length = int(max_length)
        self.embed_dim = int(embed_dim)
        self.positional = positional
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.embeddings_regularizer = keras.regularizers.get(embeddings_regularizer)
        # Each sublayer gets its own initializer instance (Keras warns when one unseeded
        # instance is reused) and follows this layer's dtype policy (mixed precision).
        initializer = keras.initializers.serialize(self.embeddings_initializer)
        self.token_embedding = keras.layers.Embedding(
            self.vocab_size,
            self.embed_dim,
            embeddings_initializer=keras.initializers.deserialize(initializer),
            embeddings_regularizer=self.embeddings_regularizer,
            dtype=self.dtype_policy,
            name="token_embedding",
        )
        self.position_encoding = PositionEncoding(
            self.max_length,
            self.embed_dim,
            positional=positional,
            embeddings_initializer=keras.initializers.deserialize(initializer),
            embeddings_regularizer=self.embeddings_regularizer,
            dtype=self.dtype_policy,
            name="position_encoding",
        )

    def build(self, input_shape):
        self.token_embedding.build(input_shape)
        self.position_encoding.build(tuple(input_shape) + (self.embed_dim,))
        super().build(input_shape)

    def call(self, inputs, reverse=False):
        """Token ids -> embeddings; with `reverse`, hidden states `(..., embed_dim)` ->
        scores over the vocabulary through the same (transposed) token embedding: the
        tied output projection of `model.tie_embeddings` (as keras-hub's
        ReversibleEmbedding)."""
        if reverse:
            table = tf.cast(self.token_embedding.embeddings, inputs.dtype)
            return tf.matmul(inputs, table, transpose_b=True)
        return self.position_encoding(self.token_embedding(inputs))

    def embed_at(self, tokens, positions):
        """`call` for tokens `(batch, m)` standing at absolute `positions` `(m,)` rather
        than at 0..m-1: the input stage of a decoder that runs one new position at a time."""
        x = self.token_embedding(tokens)
        return x + tf.cast(self.position_encoding.at(positions), x.dtype)[None]

    def compute_output_shape(self, input_shape, reverse=False):
        if reverse:
            return tf.TensorShape(input_shape)[:-1].concatenate([self.vocab_size])
        return tf.TensorShape(input_shape).concatenate([self.embed_dim])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocab_size": self.vocab_size,
                "max_length": self.max_length,
                "embed_dim": self.embed_dim,
                "positional": self.positional,
                "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
                "embeddings_regularizer": keras.regularizers.serialize(self.embeddings_regularizer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="bigmodel")
class CachedMultiHeadAttention(keras.layers.MultiHeadAttention):
    """`MultiHeadAttention` that can also attend through a key/value cache, as keras-hub's
    layer of the same name: for decoding a causal model one position at a time.

    Without a cache it is MultiHeadAttention. With `cache`, a `(batch, 2, S, heads,
    key_dim)` tensor of the keys ([:, 0]) and values ([:, 1]) of `S` positions, the keys
    and values of `value` (`(batch, T, dim)`) are written into it at positions
    `cache_update_index .. + T - 1`, the query attends to all `S` cached positions
    (`attention_mask`, `(batch, T, S)`, says which), and the call returns
    `(output, updated cache)`. The computation is the parent's own (its projections,
    scaling, masked softmax and output projection), so a cached step gives what the
    whole sequence gives at that position. Keys and values share one tensor, so
    `value_dim` must equal `key_dim` (its default).
    """

    @classmethod
    def from_attention(cls, attention: keras.layers.MultiHeadAttention):
        """A cached copy of a built `MultiHeadAttention`: its config and its weights
        (a model saved with the plain layer decodes through this one)."""
        config = attention.get_config()
        query, value = (
            tf.zeros([1 if d is None else d for d in config[key]], attention.compute_dtype)
            for key in ("query_shape", "value_shape")
        )
        copy = cls.from_config(config)
        copy(query, value)  # one call builds its projections, so that they take the weights
        copy.set_weights(attention.get_weights())
        return copy

    def empty_cache(self, batch: int, length: int):
        """Zeros shaped as the cache of `length` positions."""
        if self._value_dim != self._key_dim:
            raise ValueError(
                f"a cache holds keys and values in one tensor: value_dim ({self._value_dim}) "
                f"must equal key_dim ({self._key_dim})"
            )
        shape = (batch, 2, length, self._num_heads, self._key_dim)
        return tf.zeros(shape, self.compute_dtype)

    def call(self, query, value, key=None, attention_mask=None, cache=None,
             cache_update_index=None, training=None, **kwargs):  # fmt: skip
        if cache is None:
            if cache_update_index is not None:
                raise ValueError("cache_update_index needs a cache; received cache=None")
            return super().call(
                query, value, key=key, attention_mask=attention_mask, training=training, **kwargs
            )
        if cache_update_index is None:
            raise ValueError("a cache needs the cache_update_index its new positions start at")
        if not self._built_from_signature:
            self._build_from_signature(query=query, value=value, key=key)
        key = value if key is None else key
        batch, steps = tf.shape(value)[0], tf.shape(value)[1]
        example, kind, position = tf.meshgrid(
            tf.range(batch), tf.range(2), cache_update_index + tf.range(steps), indexing="ij"
        )  # (batch, 2, T) each: where every new key ([:, 0]) and value ([:, 1]) goes
        index = tf.stack([example, kind, position], axis=-1)
        new = tf.stack([self._key_dense(key), self._value_dense(value)], axis=1)
        cache = tf.tensor_scatter_nd_update(cache, index, new)
        output, _ = self._compute_attention(
            self._query_dense(query), cache[:, 0], cache[:, 1], attention_mask, training
        )
        return self._output_dense(output), cache


@keras.saving.register_keras_serializable(package="bigmodel")
class LayersModel(keras.Model):
    """A functional `keras.Model` built with the layers above (the transformer preset's).

    A saved model's top-level entry names its class's module, and tf_keras imports that
    module when it does not know the class: so `tf_keras.models.load_model` in a fresh
    process imports `bigmodel_cli.layers`, which registers the layers before they are
    rebuilt. Layers themselves are never looked up by module: in a plain `Functional`
    model they would become strings ("'str' object is not callable"). Without bigmodel
    installed, the error says "its parent module bigmodel_cli.layers cannot be imported".
    """


CUSTOM_LAYERS = (PositionEncoding, TokenAndPositionEmbedding, CachedMultiHeadAttention)
MODELS = (LayersModel,)

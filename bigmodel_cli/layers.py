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

    def call(self, inputs):
        steps = tf.shape(inputs)[-2]
        if self.positional == "learned":
            table = self.position_embeddings
        else:
            table = tf.convert_to_tensor(self._table)
        return inputs + tf.cast(table[:steps], inputs.dtype)

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

    def call(self, inputs):
        return self.position_encoding(self.token_embedding(inputs))

    def compute_output_shape(self, input_shape):
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
class LayersModel(keras.Model):
    """A functional `keras.Model` built with the layers above (the transformer preset's).

    A saved model's top-level entry names its class's module, and tf_keras imports that
    module when it does not know the class: so `tf_keras.models.load_model` in a fresh
    process imports `bigmodel_cli.layers`, which registers the layers before they are
    rebuilt. Layers themselves are never looked up by module: in a plain `Functional`
    model they would become strings ("'str' object is not callable"). Without bigmodel
    installed, the error says "its parent module bigmodel_cli.layers cannot be imported".
    """


CUSTOM_LAYERS = (PositionEncoding, TokenAndPositionEmbedding)
MODELS = (LayersModel,)

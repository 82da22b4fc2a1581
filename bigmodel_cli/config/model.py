"""Config sections for `model`: one strict section per type, picked by `type`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from bigmodel_cli.config.base import (
    OUTPUT_ACTIVATIONS,
    Activation,
    ConfigKeyError,
    Fraction,
    Initializer,
    PositiveInt,
    Section,
)

# === model ==================================================================


class ModelCommon(Section):
    input_shape: list[PositiveInt] | None = Field(
        None, description="Shape of one example; default: from the data."
    )
    outputs: PositiveInt | None = Field(
        None, description="Units of the output layer; default: classes or targets in the data."
    )
    output_activation: Literal[OUTPUT_ACTIVATIONS] | None = Field(  # type: ignore[valid-type]
        None,
        description="Default from the loss: softmax (categorical), sigmoid (binary), linear "
        "(regression, or any loss with from_logits).",
    )
    activation: Activation = Field("relu", description="Activation of hidden layers.")
    dropout: Fraction = Field(0.0, description="Dropout rate after each hidden block (0 disables).")
    batch_norm: bool = Field(
        False, description="BatchNormalization after each hidden layer, before activation."
    )
    initializer: Initializer = Field(
        "glorot_uniform", description="Kernel initializer (glorot = Xavier, he = Kaiming)."
    )


class MLPConfig(ModelCommon):
    """Dense layers, then the output layer."""

    type: Literal["mlp"]
    dense: list[PositiveInt] = Field(
        default_factory=list, description="Units of each hidden Dense layer ([] = linear model)."
    )


class ConvBlock(Section):
    filters: PositiveInt = Field(description="Output channels.")
    kernel_size: PositiveInt | list[PositiveInt] = Field(3, description="Kernel size.")
    strides: PositiveInt | list[PositiveInt] = Field(1, description="Convolution strides.")
    padding: Literal["valid", "same"] = Field("valid", description="Keras padding mode.")
    pool: PositiveInt | None = Field(None, description="Max-pooling size after the block.")
    pool_padding: Literal["valid", "same"] = Field(
        "valid",
        description="Padding of the max pooling: valid (Keras's default) drops the rows "
        "and columns that do not fill a whole pool; same keeps them (sizes round up), for "
        "small images whose odd-sized maps would shrink or pool to nothing.",
    )

    @model_validator(mode="after")
    def _pool_padding_needs_pool(self) -> ConvBlock:
        if self.pool_padding == "same" and self.pool is None:
            raise ConfigKeyError("pool_padding", "pads a pooling; set pool too, or remove it.")
        return self


class CNNConfig(ModelCommon):
    """Convolution blocks (1-D, 2-D or 3-D by input rank), then Dense layers."""

    type: Literal["cnn"]
    conv: list[ConvBlock] = Field(min_length=1, description="Convolution blocks, in order.")
    global_pool: bool = Field(
        False, description="Global average pooling after the convolutions (else Flatten)."
    )
    dense: list[PositiveInt] = Field(
        default_factory=list, description="Hidden Dense layers after the convolutions."
    )


class RNNConfig(ModelCommon):
    """Stacked recurrent layers over a sequence, then Dense layers."""

    type: Literal["rnn"]
    cell: Literal["lstm", "gru", "simple"] = Field("lstm", description="Recurrent cell.")
    units: list[PositiveInt] = Field(
        default_factory=lambda: [64], min_length=1, description="Units of each stacked layer."
    )
    bidirectional: bool = Field(False, description="Wrap each layer in Bidirectional.")
    embedding_dim: PositiveInt | None = Field(
        None,
        description="Embedding size for integer token inputs (default 64 when the data "
        "has a vocabulary; not allowed for float inputs).",
    )
    dense: list[PositiveInt] = Field(
        default_factory=list, description="Hidden Dense layers after the last recurrent layer."
    )


class TransformerConfig(ModelCommon):
    """Transformer encoder: sequence classifier or causal language model."""

    type: Literal["transformer"]
    task: Literal["classify", "language_model"] = Field(
        "classify",
        description="`classify`: pooled encoder + classifier head; `language_model`: "
        "causal self-attention, next-token logits at every position.",
    )
    vocab_size: PositiveInt | None = Field(None, description="Token vocabulary (default: data).")
    max_length: PositiveInt | None = Field(
        None,
        description="Longest sequence (default: the data's sequence length). Without "
        "`data.sequence_length`, text_dir, text_corpus and synthetic sequence/language_model "
        "data use it as their sequence length; with both, max_length >= sequence_length.",
    )
    d_model: PositiveInt = Field(128, description="Width of the residual stream.")
    num_heads: PositiveInt = Field(4, description="Attention heads (must divide d_model).")
    num_layers: PositiveInt = Field(2, le=1000, description="Encoder blocks.")
    ff_dim: PositiveInt | None = Field(None, description="Feed-forward width (default 4*d_model).")
    positional: Literal["sinusoidal", "learned"] = Field(
        "sinusoidal", description="Position encoding added to token embeddings."
    )
    activation: Activation = Field("gelu", description="Feed-forward activation.")
    dense: list[PositiveInt] = Field(
        default_factory=list, description="classify: hidden Dense layers before the output."
    )
    patch_size: PositiveInt | None = Field(
        None,
        description="Vision Transformer: images (height, width, channels) are cut into "
        "patch_size x patch_size patches, each embedded as one token.",
    )
    tie_embeddings: bool = Field(
        False,
        description="language_model: the output projection reuses the token embedding "
        "(transposed, no bias), as GPT-2 does: vocab_size x d_model + vocab_size fewer "
        "parameters.",
    )

    @model_validator(mode="after")
    def _heads_divide_width(self) -> TransformerConfig:
        if self.tie_embeddings and self.task != "language_model":
            raise ConfigKeyError(
                "tie_embeddings", "only a language model's output is over its token embedding."
            )
        if self.patch_size and self.task == "language_model":
            raise ConfigKeyError(
                "patch_size", "patches are for images; a language model reads tokens."
            )
        if self.d_model % self.num_heads:
            raise ConfigKeyError(
                "num_heads",
                f"num_heads={self.num_heads} must divide d_model={self.d_model}.",
            )
        if self.task == "language_model" and self.dense:
            raise ConfigKeyError("dense", "a language model has no classifier head.")
        return self


class SequentialConfig(ModelCommon):
    """A plain Keras stack written layer by layer (allow-listed `keras.layers` classes)."""

    type: Literal["sequential"]
    layers: list[dict[str, Any]] = Field(
        min_length=1,
        description="Each item is {type: <Keras layer class>, <its arguments>...}. The last "
        "layer is the output; no output layer is added.",
    )

    @field_validator("layers")
    @classmethod
    def _layers_name_a_type(cls, layers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from bigmodel_cli.config.allowlist import check_layer_spec

        problems = [(str(i), p) for i, spec in enumerate(layers) if (p := check_layer_spec(spec))]
        if problems:
            raise ConfigKeyError.collect(problems)
        return layers


ModelConfig = Annotated[
    MLPConfig | CNNConfig | RNNConfig | TransformerConfig | SequentialConfig,
    Field(discriminator="type"),
]
MODEL_CLASSES = {
    "mlp": MLPConfig,
    "cnn": CNNConfig,
    "rnn": RNNConfig,
    "transformer": TransformerConfig,
    "sequential": SequentialConfig,
}

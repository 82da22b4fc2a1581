"""`model.type: cnn`: convolution blocks (1-D, 2-D or 3-D by input rank), a Flatten or
global average pooling, hidden Dense blocks, then the output layer.

`pool: k` is `MaxPooling(k)` with Keras's default `padding="valid"` (each spatial size
is divided by k rounding down), so a block is exactly the layers a Keras user writes.
`pool_padding: same` rounds up instead, for small images whose maps would otherwise
shrink or pool to nothing; a valid pool wider than its map is a config error.
"""

from __future__ import annotations

from bigmodel_cli.config import Config, ConvBlock
from bigmodel_cli.errors import ConfigError
from bigmodel_cli.models import common
from bigmodel_cli.spec import DataSpec
from bigmodel_cli.tfenv import import_keras

keras = import_keras()

# Spatial rank -> (convolution, max pooling, global average pooling).
LAYERS_BY_RANK = {
    1: (keras.layers.Conv1D, keras.layers.MaxPooling1D, keras.layers.GlobalAveragePooling1D),
    2: (keras.layers.Conv2D, keras.layers.MaxPooling2D, keras.layers.GlobalAveragePooling2D),
    3: (keras.layers.Conv3D, keras.layers.MaxPooling3D, keras.layers.GlobalAveragePooling3D),
}


def spatial_rank(cfg: Config, spec: DataSpec) -> int:
    """Spatial axes of an example (its last axis is channels): 1, 2 or 3."""
    shape = common.input_shape(cfg, spec)
    rank = len(shape) - 1
    if rank not in LAYERS_BY_RANK:
        raise ConfigError(
            f"model.type: cnn needs examples shaped (steps, channels), (height, width, "
            f"channels) or (depth, height, width, channels); received shape {list(shape)}. "
            "Set model.input_shape (e.g. [8, 8, 1] for 64 pixels) or use type: mlp."
        )
    return rank


def conv_block(x, block: ConvBlock, rank: int, cfg: Config, index: int):
    """Conv -> [BatchNorm -> activation] -> [MaxPooling] -> [Dropout]."""
    conv, pool, _ = LAYERS_BY_RANK[rank]
    name = f"conv_{index}"
    x = conv(
        block.filters,
        _tuple(block.kernel_size),
        strides=_tuple(block.strides),
        padding=block.padding,
        activation=common.block_activation(cfg),
        name=name,
        **common.kernel_args(cfg),
    )(x)
    if cfg.model.batch_norm:
        x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
        x = keras.layers.Activation(cfg.model.activation, name=f"{name}_act")(x)
    if block.pool:
        _check_pool_fits(block, x.shape[1:-1], index - 1)
        x = pool(block.pool, padding=block.pool_padding, name=f"{name}_pool")(x)
    return common.dropout(x, cfg, name)


def _check_fits(block: ConvBlock, spatial, index: int) -> None:
    """A 'valid' kernel larger than what earlier blocks left of the input cannot apply."""
    if block.padding != "valid":
        return
    sizes = block.kernel_size if isinstance(block.kernel_size, list) else [block.kernel_size]
    sizes = sizes * len(spatial) if len(sizes) == 1 else sizes
    if any(k > dim for k, dim in zip(sizes, spatial, strict=False) if dim is not None):
        raise ConfigError(
            f"model.conv.{index}: kernel_size {block.kernel_size} is larger than the feature "
            f"maps left at this block ({'x'.join(map(str, spatial))}, padding 'valid'). Use a "
            "smaller kernel_size, padding: same, or less pooling or striding before it."
        )


def _check_pool_fits(block: ConvBlock, spatial, index: int) -> None:
    """A 'valid' pool wider than the map its convolution left would pool it to nothing."""
    if block.pool_padding != "valid":
        return
    if any(dim is not None and block.pool > dim for dim in spatial):
        raise ConfigError(
            f"model.conv.{index}.pool: a pool of {block.pool} is larger than the feature "
            f"maps its convolution leaves ({'x'.join(map(str, spatial))}), so pooling with "
            "padding 'valid' (Keras's default) would leave nothing. Set pool_padding: same "
            "on this block (sizes round up), padding: same on the convolutions, or a "
            "smaller pool."
        )


def _tuple(value: int | list[int]) -> int | tuple[int, ...]:
    return tuple(value) if isinstance(value, list) else value


def build_cnn(cfg: Config, spec: DataSpec) -> keras.Model:
    common.require_not_language_model(cfg, spec)
    rank = spatial_rank(cfg, spec)

    # === Inputs ===
    inputs = common.model_input(cfg, spec)

    # === Convolution blocks ===
    x = inputs
    for index, block in enumerate(cfg.model.conv):
        _check_fits(block, x.shape[1:-1], index)
        try:
            x = conv_block(x, block, rank, cfg, index + 1)
        except ValueError as err:  # e.g. a kernel_size list of the wrong length
            raise ConfigError(
                f"model.conv.{index}: cannot apply {block.model_dump(exclude_defaults=True)} "
                f"to feature maps of shape {list(x.shape[1:])}: {common.keras_message(err)}"
            ) from None

    # === Pooling to a vector ===
    if cfg.model.global_pool:
        x = LAYERS_BY_RANK[rank][2](name="global_pool")(x)
    else:
        x = keras.layers.Flatten(name="flatten")(x)

    # === Hidden Dense layers ===
    x = common.dense_stack(x, cfg)

    # === Output ===
    outputs = common.output_layer(x, cfg, spec)
    return keras.Model(inputs, outputs, name=common.model_name(cfg))

"""`data.augment`: random image transformations of training batches.

`make_dataset` maps `augment_batches` over the batched training split only; validation,
test, `evaluate` and prediction never see it, and the saved model holds no augmentation
layer. Each (x, y) batch of images (batch, height, width, channels) goes through, in
this order and only where configured:

- `flip`: `RandomFlip(mode)`;
- `rotation`: `RandomRotation(rotation)`, up to that fraction of a full turn either way;
- `zoom`: `RandomZoom(zoom)` in or out, the aspect ratio kept;
- `translation`: `RandomTranslation(translation, translation)`, up to that fraction of
  the height and of the width either way;
- `contrast`: each image's deviations from its per-channel mean scaled by a factor drawn
  from [1 - contrast, 1 + contrast]. Not Keras's `RandomContrast`: that layer clips its
  output to [0, 255], which would zero every negative value of the standardized inputs
  (mean 0, std 1 per channel) it gets here; it also draws one factor per batch, this
  one factor per image.

Pixels moved in from outside the image repeat the nearest edge pixel (`fill_mode:
nearest`): no mirrored copies of strokes at the borders, and no constant fill value
whose meaning would depend on the normalization.

**Randomness by position.** Each transformation owns a `tf.random.Generator` (the Keras
layers' own, and one for contrast). Before each batch, every generator is reset to a
state made of its seed (`seed + k * SEED_STRIDE`) and the batch's position in the
training stream (epoch x batches per epoch + step; see `data.make_dataset`), so a batch's
transformations depend on where it is, not on what ran before: a run resumed at any step
transforms its batches exactly as the uninterrupted run did. (The map runs one batch at
a time because the generators are shared variables.)
"""

from __future__ import annotations

from bigmodel_cli.config.sections import AugmentConfig
from bigmodel_cli.errors import ConfigError
from bigmodel_cli.tfenv import import_keras, import_tensorflow

FILL_MODE = "nearest"
SEED_STRIDE = 7919  # layer k draws from seed + k * SEED_STRIDE: independent streams


def augment_batches(ds, cfg: AugmentConfig, seed: int, first_batch: int = 0):
    """`ds` of (images, labels) batches with `cfg`'s random transformations applied;
    `first_batch` is the position of `ds`'s first batch in the training stream."""
    tf = import_tensorflow()

    images = ds.element_spec[0]
    if images.shape.rank != 4:
        raise ConfigError(
            f"data.augment: random image transformations need batches of images (batch, "
            f"height, width, channels); the model reads batches shaped {images.shape}. "
            "Remove data.augment, or use a model that reads images as they are (cnn, "
            "sequential, transformer with patch_size)"
        )
    geometric = augment_layers(cfg, seed)
    if geometric.layers:
        # Create the layers' random generators now, eagerly: tf.data cannot create variables.
        geometric(tf.zeros((1, 8, 8, images.shape[-1] or 1)), training=True)
    contrast = None
    if cfg.contrast:
        contrast = tf.random.Generator.from_seed(seed + (len(geometric.layers) + 1) * SEED_STRIDE)
    low, high = 1.0 - cfg.contrast, 1.0 + cfg.contrast
    generators = [layer._random_generator._generator for layer in geometric.layers]
    generators += [contrast] if contrast is not None else []
    keys = [seed + (k + 1) * SEED_STRIDE for k in range(len(generators))]

    def augment(position, batch):
        x, y = batch
        for key, generator in zip(keys, generators, strict=True):
            # Philox state (counter low, counter high, key): each batch position owns
            # 2**64 counters of its own, so no two batches share a random number.
            generator.reset(tf.stack([tf.constant(0, tf.int64), position, key]))
        if geometric.layers:
            x = geometric(x, training=True)
        if contrast is not None:
            factor = contrast.uniform((tf.shape(x)[0], 1, 1, 1), low, high, dtype=x.dtype)
            mean = tf.reduce_mean(x, axis=(1, 2), keepdims=True)
            x = (x - mean) * factor + mean
        return x, y

    # Sequential on purpose: the generators' states are shared variables.
    return ds.enumerate(start=first_batch).map(augment, num_parallel_calls=None)


def augment_layers(cfg: AugmentConfig, seed: int):
    """The active geometric transformations as a `keras.Sequential` (may be empty)."""
    keras = import_keras()

    layers = keras.layers
    # float32 whatever the global mixed-precision policy: the model's inputs are float32.
    geometric = {"fill_mode": FILL_MODE, "dtype": "float32"}
    steps = []

    def next_seed() -> int:
        return seed + (len(steps) + 1) * SEED_STRIDE

    if cfg.flip != "none":
        steps.append(layers.RandomFlip(cfg.flip, seed=next_seed(), dtype="float32", name="flip"))
    if cfg.rotation:
        rotate = layers.RandomRotation(cfg.rotation, seed=next_seed(), name="rotation", **geometric)
        steps.append(rotate)
    if cfg.zoom:
        steps.append(layers.RandomZoom(cfg.zoom, seed=next_seed(), name="zoom", **geometric))
    if cfg.translation:
        shift = cfg.translation
        translate = layers.RandomTranslation(shift, shift, seed=next_seed(), **geometric)
        steps.append(translate)
    return keras.Sequential(steps, name="augment")

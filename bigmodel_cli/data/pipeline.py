"""The tf.data pipeline: one split as batches of (inputs, labels) in the form the loss
expects. TensorFlow is imported when a dataset is made, not when this module is, so
loading and validating data stay light.
"""

from __future__ import annotations

import math

import numpy as np

from bigmodel_cli.config import Config
from bigmodel_cli.config.defaults import effective_loss, one_hot_labels
from bigmodel_cli.data.decode import encoded_gather
from bigmodel_cli.spec import Arrays, DataSpec, TokenWindows
from bigmodel_cli.tfenv import import_tensorflow

ONE_HOT_IN_MEMORY_MAX = 1 << 24  # labels as float32: 64 MB


def _epoch_stream(n: int, gather, cfg: Config, start: tuple[int, int]):
    """Batches of epochs `start[0]`, `start[0] + 1`, ... without end, the first epoch's
    first `start[1]` batches skipped. Each epoch is a permutation of the example indices
    seeded by (seed, epoch), so any position of the stream is reached without reading
    what comes before it, and a resumed run sees the batches an uninterrupted run would.
    `gather` turns a batch of indices into its (inputs, labels).
    """
    tf = import_tensorflow()

    first_epoch, first_step = start
    batch_size, shuffle = cfg.data.batch_size, cfg.data.shuffle
    seed = tf.constant(cfg.seed, tf.int64)

    def epoch_batches(epoch):
        order = tf.range(n, dtype=tf.int64)
        if shuffle:
            keys = tf.random.stateless_uniform([n], seed=tf.stack([seed, epoch]))
            order = tf.cast(tf.argsort(keys, stable=True), tf.int64)
        batches = tf.data.Dataset.from_tensor_slices(order).batch(batch_size)
        skipped = tf.where(epoch == first_epoch, tf.constant(first_step, tf.int64), 0)
        return batches.skip(skipped)

    stream = tf.data.Dataset.range(first_epoch, 2**62).flat_map(epoch_batches)
    return stream.map(gather, num_parallel_calls=tf.data.AUTOTUNE)


def _in_memory_gather(x: np.ndarray, y: np.ndarray):
    tf = import_tensorflow()
    inputs, labels = tf.constant(x), tf.constant(y)
    return lambda index: (tf.gather(inputs, index), tf.gather(labels, index))


def _window_gather(windows: TokenWindows):
    """Batches read from the token file, in parallel, as the pipeline asks for them."""
    tf = import_tensorflow()
    length = windows.length

    def gather(index):
        x, y = tf.numpy_function(windows.read, [index], (tf.int32, tf.int32), stateful=False)
        x.set_shape([None, length])
        y.set_shape([None, length])
        return x, y

    return gather


def _windows_dataset(windows: TokenWindows, cfg: Config, start: tuple[int, int] | None):
    """A token file's sequences: the seeded epoch stream (training), or once in order."""
    tf = import_tensorflow()
    gather = _window_gather(windows)
    if start is not None:
        return _epoch_stream(windows.count, gather, cfg, start)
    batches = tf.data.Dataset.range(windows.count).batch(cfg.data.batch_size)
    return batches.map(gather, num_parallel_calls=tf.data.AUTOTUNE)


def make_dataset(
    arrays: Arrays,
    cfg: Config,
    spec: DataSpec,
    *,
    training: bool,
    start: tuple[int, int] | None = None,
):
    """A batched `tf.data.Dataset` of (inputs, labels) in the form the loss expects.

    Sparse class labels are int32; `categorical_crossentropy` gets one-hot float32;
    `binary_crossentropy` gets float32 (n, 1); regression float32 (n, target_size).

    With `start=(epoch, step)` (training), the result is an endless stream of epochs from
    `epoch` on, epoch e shuffled with a seed made of (seed, e), its first `step` batches
    skipped: a run resumed at any step sees exactly the batches an uninterrupted run would.
    Give `fit` a `steps_per_epoch` with it.
    """
    tf = import_tensorflow()  # here, not at import: loading and validating stay light

    if arrays.windows is not None:  # a token file (text_corpus): int32 ids and labels
        effective_loss(cfg, spec)  # a loss that contradicts the data fails here too
        ds = _windows_dataset(arrays.windows, cfg, start if training else None)
        if one_hot_labels(cfg, spec):
            depth = spec.num_classes
            ds = ds.map(
                lambda xb, yb: (xb, tf.one_hot(yb, depth)), num_parallel_calls=tf.data.AUTOTUNE
            )
        return _finish(tf, ds)
    y = _labels(arrays.y, len(arrays), cfg, spec)
    encode_in_map = one_hot_labels(cfg, spec)
    if encode_in_map and len(y) * spec.num_classes <= ONE_HOT_IN_MEMORY_MAX:
        # A tf.data map costs ~0.2 ms a batch on 2 cores, more than a small model's step.
        y = np.eye(spec.num_classes, dtype=np.float32)[y]
        encode_in_map = False
    if arrays.encoded is not None:  # decoded a batch at a time (image_dir, tfrecord images)
        gather = encoded_gather(arrays.encoded, y)
        if training and start is not None:
            ds = _epoch_stream(len(y), gather, cfg, start)
        else:
            batches = tf.data.Dataset.range(len(y)).batch(cfg.data.batch_size)
            ds = batches.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    elif training and start is not None:
        ds = _epoch_stream(len(y), _in_memory_gather(_inputs(arrays, spec), y), cfg, start)
    else:
        x = _inputs(arrays, spec)
        # No cache(): the slices already live in memory, caching would only copy them.
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        if training and cfg.data.shuffle:
            ds = ds.shuffle(len(x), seed=cfg.seed, reshuffle_each_iteration=True)
        ds = ds.batch(cfg.data.batch_size)
    if encode_in_map:
        depth = spec.num_classes
        # After batching: one vectorized op per batch, and no (n, classes) copy in memory.
        ds = ds.map(lambda xb, yb: (xb, tf.one_hot(yb, depth)), num_parallel_calls=tf.data.AUTOTUNE)
    if training and cfg.data.augment is not None and cfg.data.augment.active:
        from bigmodel_cli.data.augment import augment_batches

        # Training batches only; where each batch sits in the stream seeds its transforms.
        first_batch = 0
        if start is not None:
            first_batch = start[0] * math.ceil(len(y) / cfg.data.batch_size) + start[1]
        ds = augment_batches(ds, cfg.data.augment, cfg.seed, first_batch)
    return _finish(tf, ds)


def _inputs(arrays: Arrays, spec: DataSpec) -> np.ndarray:
    """In-memory inputs in the dtype the model reads (no copy when they already are)."""
    return arrays.x.astype(np.int32 if spec.input_dtype == "int32" else np.float32, copy=False)


def _finish(tf, ds):
    options = tf.data.Options()
    # Batches of indices have no files to shard; say so, instead of TF trying FILE and
    # warning: each worker takes its share of the batches.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def _labels(y: np.ndarray, n: int, cfg: Config, spec: DataSpec) -> np.ndarray:
    """Labels in the dtype and shape the loss reads (one-hot encoding comes after)."""
    loss = effective_loss(cfg, spec)  # a loss that contradicts the data fails here too
    if spec.task == "regression":
        return y.astype(np.float32, copy=False).reshape(n, -1)
    if loss.name == "binary_crossentropy":
        return y.astype(np.float32).reshape(n, 1)
    return y.astype(np.int32)

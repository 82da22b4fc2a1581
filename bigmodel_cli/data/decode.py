"""Examples kept encoded on disk (`spec.EncodedExamples`: image_dir files, tfrecord
images), decoded a batch at a time inside the tf.data pipeline, and the normalization
statistics of a bounded sample of them.

A batch is read (the bytes of its examples, in a `numpy_function`), parsed (a
tf.train.Example's image feature), decoded and resized as `data.images` decodes files,
standardized and laid out, all in the graph; the pipeline maps batches in parallel, so
decoding keeps up with a small model on two cores. Only the batches in flight are in
memory, whatever the size of the data.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from bigmodel_cli.data.images import decode_image
from bigmodel_cli.data.normalize import Normalization
from bigmodel_cli.errors import DataError
from bigmodel_cli.spec import EncodedExamples
from bigmodel_cli.tfenv import import_tensorflow

# Training examples whose statistics standardize a streamed split: a seeded sample, so
# the first epoch does not wait for a pass over all of the data. A split this small or
# smaller is measured whole (the statistics in-memory data would get).
NORMALIZATION_SAMPLE = 10_000
SAMPLE_BATCH = 256


def decoded_batches(encoded: EncodedExamples, *, standardize: bool = True):
    """A graph function: a batch of example indices -> float32 (batch, *layout)."""
    tf = import_tensorflow()
    shape = tuple(encoded.shape)
    layout = tuple(encoded.layout or shape)
    feature = encoded.feature
    row = int(np.prod(shape))
    scale = None
    if standardize and encoded.mean is not None:
        # Tiled to a whole example's row, so the standardization broadcasts over the
        # batch axis alone: broadcasting a per-channel vector over the innermost axis
        # takes TensorFlow's generic path, 7x as slow (5.3 vs 0.7 ms a batch of 64
        # 64x64x3 images), which was most of a cached batch's cost. Same values.
        pixels = row // shape[-1]
        mean = np.tile(np.asarray(encoded.mean, np.float32), pixels)
        std = np.tile(np.asarray(encoded.std, np.float32), pixels)
        scale = (tf.constant(mean), tf.constant(std))

    def decode(index):
        if encoded.decoded is not None:  # data.cache: disk
            images = tf.numpy_function(encoded.read_decoded, [index], tf.uint8, stateful=False)
            return _finish(tf.reshape(images, [-1, *shape]))
        data = tf.numpy_function(encoded.read, [index], tf.string, stateful=False)
        data.set_shape([None])
        if feature is not None:
            spec = {feature: tf.io.FixedLenFeature([], tf.string)}
            data = tf.io.parse_example(data, spec)[feature]
        images = tf.map_fn(
            lambda one: decode_image(tf, one, shape),
            data,
            fn_output_signature=tf.TensorSpec(shape, tf.uint8),
        )
        return _finish(images)

    def _finish(images):
        x = tf.reshape(tf.cast(images, tf.float32), [-1, row])
        if scale is not None:
            x = (x - scale[0]) / scale[1]
        return tf.reshape(x, [-1, *layout])

    return decode


def pixel_batches(encoded: EncodedExamples, indices: np.ndarray | None = None):
    """A dataset of the examples `indices` (all of them by default), in order, decoded
    to their native shape and not standardized (uint8 values as float32), SAMPLE_BATCH
    at a time: for statistics, the disk cache and tests, not for training."""
    tf = import_tensorflow()
    decode = decoded_batches(replace(encoded, layout=None), standardize=False)
    indices = np.arange(len(encoded)) if indices is None else indices
    batches = tf.data.Dataset.from_tensor_slices(np.asarray(indices, np.int64))
    return batches.batch(SAMPLE_BATCH).map(decode, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)


def encoded_gather(encoded: EncodedExamples, labels: np.ndarray):
    """`pipeline._epoch_stream`'s gather for encoded examples: (decoded inputs, labels)."""
    tf = import_tensorflow()
    decode = decoded_batches(encoded)
    labels = tf.constant(labels)
    return lambda index: (decode(index), tf.gather(labels, index))


def sample_normalization(encoded: EncodedExamples, seed: int) -> tuple[Normalization, int]:
    """Per-channel mean and std of a seeded sample of NORMALIZATION_SAMPLE examples (all
    of them when there are no more), in float64 sums a batch at a time; std 0 -> 1.
    Returns the statistics and how many examples they were measured on."""
    n = len(encoded)
    if n > NORMALIZATION_SAMPLE:
        rng = np.random.default_rng(seed)
        indices = np.sort(rng.choice(n, NORMALIZATION_SAMPLE, replace=False))
    else:
        indices = np.arange(n)
    batches = pixel_batches(encoded, indices)
    channels = encoded.shape[-1]
    total = np.zeros(channels)
    squares = np.zeros(channels)
    count = 0
    for batch in batches.as_numpy_iterator():
        values = batch.reshape(-1, channels).astype(np.float64)
        total += values.sum(axis=0)
        squares += np.square(values).sum(axis=0)
        count += len(values)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - np.square(mean), 0.0))
    std[std == 0] = 1.0
    stats = Normalization(
        tuple(float(v) for v in mean),
        tuple(float(v) for v in std),
        tuple(encoded.shape),
        "channel",
    )
    return stats, len(indices)


def standardize_encoded(
    splits: dict, given: Normalization | None, seed: int
) -> tuple[Normalization, str]:
    """`normalize.normalize_splits` for encoded splits: the statistics (given, or of a
    sample of the training split) go with each split, to be applied as it is decoded."""
    native = tuple(splits["train"].encoded.shape)
    if given is not None and tuple(given.native_shape) != native:
        raise DataError(
            f"data: the given normalization statistics are for examples of shape "
            f"{tuple(given.native_shape)}; this data's are {native}"
        )
    stats, measured = (given, 0) if given else sample_normalization(splits["train"].encoded, seed)
    for part in splits.values():
        if part is not None:
            part.encoded = replace(part.encoded, mean=stats.mean, std=stats.std)
    count = len(stats.mean)
    if given:
        origin = "the given"
    elif measured < len(splits["train"]):
        origin = f"a seeded sample of {measured:,} training images'"
    else:
        origin = "the training split's"
    note = (
        f"inputs standardized per channel ({count} channel{'s' * (count > 1)}) with {origin} "
        "mean and std, as each batch is decoded; see normalization"
    )
    return stats, note


def decoded_array(encoded: EncodedExamples) -> np.ndarray:
    """Every example decoded, uint8 (n, *shape), for a small set (tests, a few images to
    look at): what training decodes batch by batch, before standardization."""
    out = np.empty((len(encoded), *encoded.shape), np.uint8)
    start = 0
    for batch in pixel_batches(encoded).as_numpy_iterator():
        out[start : start + len(batch)] = batch.astype(np.uint8)
        start += len(batch)
    return out


def undecodable(encoded: EncodedExamples, limit: int = 20) -> list[str]:
    """Where the examples that cannot be decoded are ("FILE" or "FILE at byte N"), the
    first `limit` of them: a decode of every example, run only once training met one."""
    tf = import_tensorflow()
    decode = decoded_batches(replace(encoded, layout=None), standardize=False)
    found = (
        tf.data.Dataset.range(len(encoded))
        .map(lambda i: (i, decode(tf.reshape(i, [1]))), num_parallel_calls=tf.data.AUTOTUNE)
        .ignore_errors()
        .map(lambda i, _: i)
        .batch(4096)
    )
    seen = np.zeros(len(encoded), bool)
    for indices in found.as_numpy_iterator():
        seen[indices] = True
    where = []
    for index in np.flatnonzero(~seen)[:limit]:
        path = encoded.files[encoded.file_ids[index]]
        at = f" at byte {encoded.offsets[index]:,}" if encoded.feature is not None else ""
        where.append(f"{path}{at}")
    return where

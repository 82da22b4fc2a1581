"""`data.source: tfrecord`: `tf.train.Example` records described by `data.feature_spec`.

The spec names two features: `target`, the label, and the input. Each is `float32` or
`int64` of a fixed `shape` ([] for a scalar), `string` (a scalar of bytes; only as the
target, read as class names) or `image` (encoded PNG/JPEG/GIF/BMP bytes, decoded to
uint8 and resized to `shape` [height, width, channels], as `data.images` decodes files).
Image records are read twice: first their headers, so that an image over
images.MAX_IMAGE_PIXELS is refused (by file and record number) before any is decoded,
then to decode them.

Records are parsed in a `tf.data` pipeline and held in memory as NumPy arrays, then
treated like an npz file's `x` and `y` (`data.arrays.from_arrays`): the input's rank picks
tabular, sequence or image; integer inputs are token ids for rnn and transformer models;
labels become classes or regression targets as the loss (or their values) say.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from bigmodel_cli.config import Config
from bigmodel_cli.data.arrays import from_arrays
from bigmodel_cli.data.files import expand_paths
from bigmodel_cli.data.image_headers import image_size_of_bytes
from bigmodel_cli.data.images import (
    DECODE_BATCH,
    DECODE_BYTES_PER_PIXEL,
    check_fits_in_memory,
    decode_image,
    decode_parallelism,
    largest_image,
    op_message,
    parallel_calls,
)
from bigmodel_cli.data.limits import MAX_PROBLEMS, array_value_problems
from bigmodel_cli.data.raw import RawData
from bigmodel_cli.errors import DataError
from bigmodel_cli.tfenv import import_tensorflow

MAX_RECORDS = 50_000_000


def _parse_spec(tf, spec):
    if spec.dtype in ("string", "image"):
        return tf.io.FixedLenFeature([], tf.string)
    dtype = tf.float32 if spec.dtype == "float32" else tf.int64
    return tf.io.FixedLenFeature(list(spec.shape), dtype)


def read_tfrecords(cfg: Config, base_dir: Path) -> RawData:
    tf = import_tensorflow()

    data = cfg.data
    files = expand_paths(data.paths or [], base_dir)
    spec = dict(data.feature_spec or {})
    target = data.target
    (input_name,) = [name for name in spec if name != target]
    inputs, label = spec[input_name], spec[target]
    problems = _spec_problems(input_name, inputs, target, label)
    if problems:
        raise DataError(problems)

    description = {input_name: _parse_spec(tf, inputs), target: _parse_spec(tf, label)}

    def parse(record):
        example = tf.io.parse_single_example(record, description)
        x = example[input_name]
        if inputs.dtype == "image":
            x = decode_image(tf, x, tuple(inputs.shape))  # as image_dir decodes files
        return x, example[target]

    def encoded(record):
        return tf.io.parse_single_example(record, description)[input_name]

    images = encoded if inputs.dtype == "image" else None
    xs, ys = _read_records(tf, files, parse, images)
    if not xs:
        raise DataError(f"data.paths: the {len(files)} file(s) hold no records")
    x, y = np.concatenate(xs), np.concatenate(ys)
    if label.dtype == "string":
        y = np.asarray([v.decode("utf-8", "replace") for v in y])
    problems = array_value_problems(x, f"data.feature_spec.{input_name}: records", MAX_PROBLEMS)
    if problems:
        raise DataError(problems)
    what = f"tfrecord ({len(files)} file(s)), input {input_name!r}, target {target!r}"
    return from_arrays(x, y, len(x), cfg, what, f"tfrecord {input_name}", [])


def _spec_problems(input_name: str, inputs, target: str, label) -> list[str]:
    problems = []
    if inputs.dtype == "string":
        problems.append(
            f"data.feature_spec.{input_name}: string inputs are not supported; use "
            "text_dir or text_corpus for text"
        )
    if inputs.dtype == "image" and len(inputs.shape) != 3:
        problems.append(
            f"data.feature_spec.{input_name}: an image needs shape [height, width, channels]"
        )
    if inputs.dtype == "image" and len(inputs.shape) == 3 and inputs.shape[2] not in (1, 3, 4):
        problems.append(f"data.feature_spec.{input_name}: images have 1, 3 or 4 channels")
    if label.dtype == "image":
        problems.append(f"data.feature_spec.{target}: the target cannot be an image")
    return problems


def _read_records(tf, files: list[Path], parse, encoded_images) -> tuple[list, list]:
    """Batches of parsed (x, y), one file at a time, so an error names its file. With
    `encoded_images` (record -> encoded image), every header of a file is read before
    any of its images is decoded."""
    xs, ys, records = [], [], 0
    for path in files:
        decoding, parallel = 0, tf.data.AUTOTUNE
        try:
            if encoded_images is not None:
                dataset = tf.data.TFRecordDataset([str(path)]).map(encoded_images)
                largest = _largest_image(dataset, path)
                workers = decode_parallelism(largest)
                decoding = workers * largest * DECODE_BYTES_PER_PIXEL
                parallel = parallel_calls(tf, workers)
            dataset = tf.data.TFRecordDataset([str(path)])
            dataset = dataset.map(parse, num_parallel_calls=parallel).batch(4096)
            for x_batch, y_batch in dataset.as_numpy_iterator():
                xs.append(x_batch)
                ys.append(y_batch)
                records += len(x_batch)
                if records > MAX_RECORDS:
                    raise DataError(f"data.paths: more than {MAX_RECORDS:,} records")
                # Each value is held again as float32 for training: stop before memory
                # runs out.
                check_fits_in_memory(records, tuple(x_batch.shape[1:]), decoding)
        except tf.errors.DataLossError as err:
            raise DataError(
                f"data.paths: {path}: not a TFRecord file, or truncated ({op_message(err)})"
            ) from None
        except tf.errors.InvalidArgumentError as err:
            raise DataError(
                f"data.feature_spec: {path}: the records do not match the spec "
                f"({op_message(err)}); check each feature's dtype and shape"
            ) from None
        except tf.errors.OpError as err:  # unreadable: permissions, vanished, ...
            raise DataError(f"data.paths: {path}: cannot read ({op_message(err)})") from None
    return xs, ys


def _largest_image(encoded, path: Path) -> int:
    """The most pixels an image of one file's records decodes to, from the encoded bytes'
    headers (images.largest_image refuses those too large, by record number)."""
    largest, first = 0, 0
    for batch in encoded.batch(DECODE_BATCH).as_numpy_iterator():
        readers = [functools.partial(image_size_of_bytes, data) for data in batch]
        names = [f"data.paths: {path} record {first + i}" for i in range(len(batch))]
        largest = max(largest, largest_image(readers, names))
        first += len(batch)
    return largest

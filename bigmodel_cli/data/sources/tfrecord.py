"""`data.source: tfrecord`: `tf.train.Example` records described by `data.feature_spec`.

The spec names two features: `target`, the label, and the input. Each is `float32` or
`int64` of a fixed `shape` ([] for a scalar), `string` (a scalar of bytes; only as the
target, read as class names) or `image` (encoded PNG/JPEG/GIF/BMP bytes, decoded to
uint8 and resized to `shape` [height, width, channels], as `data.images` decodes files).
**Image records stream.** Each file's frames are read for where every record is
(data/record_files.py), and the records parsed once for their labels and their images'
headers (an image over images.MAX_IMAGE_PIXELS is refused by file and record number);
the images stay encoded in the files and are decoded a batch at a time as training reads
them (data/decode.py): memory holds the labels and 20 bytes per record, whatever the
size of the shards, and any record is read in O(1), so the seeded splits and the exact
resume of in-memory data hold.

**Numeric records** (float32 and int64 inputs) are parsed in a `tf.data` pipeline and
held in memory as NumPy arrays (about the size of the files), then treated like an npz
file's `x` and `y` (`data.arrays.from_arrays`): the input's rank picks tabular, sequence
or image; integer inputs are token ids for rnn and transformer models; labels become
classes or regression targets as the loss (or their values) say.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from bigmodel_cli.config import Config
from bigmodel_cli.data.arrays import from_arrays, from_encoded
from bigmodel_cli.data.files import expand_paths
from bigmodel_cli.data.image_headers import image_size_of_bytes
from bigmodel_cli.data.images import (
    DECODE_BATCH,
    check_fits_in_memory,
    decode_image,
    op_message,
    read_headers,
)
from bigmodel_cli.data.limits import MAX_PROBLEMS, array_value_problems
from bigmodel_cli.data.raw import RawData
from bigmodel_cli.data.record_files import record_spans
from bigmodel_cli.errors import DataError
from bigmodel_cli.spec import EncodedExamples
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
    if inputs.dtype == "image":  # kept encoded, decoded a batch at a time as it trains
        encoded, y = _index_images(tf, files, description, input_name, inputs, target)
        if not len(y):
            raise DataError(f"data.paths: the {len(files)} file(s) hold no records")
        if label.dtype == "string":
            y = np.asarray([v.decode("utf-8", "replace") for v in y])
        what = f"tfrecord ({len(files)} file(s)), input {input_name!r}, target {target!r}"
        notes = [
            f"images decoded a batch at a time as training reads them: {len(y):,} records, "
            f"{int(encoded.lengths.sum()) / 2**20:.1f} MB encoded"
        ]
        return from_encoded(encoded, y, cfg, what, f"tfrecord {input_name}", notes)

    def parse(record):
        example = tf.io.parse_single_example(record, description)
        return example[input_name], example[target]

    xs, ys = _read_records(tf, files, parse)
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


def _read_records(tf, files: list[Path], parse) -> tuple[list, list]:
    """Batches of parsed numeric (x, y), one file at a time, so an error names its file."""
    xs, ys, records = [], [], 0
    for path in files:
        try:
            dataset = tf.data.TFRecordDataset([str(path)])
            dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE).batch(4096)
            for x_batch, y_batch in dataset.as_numpy_iterator():
                xs.append(x_batch)
                ys.append(y_batch)
                records += len(x_batch)
                if records > MAX_RECORDS:
                    raise DataError(f"data.paths: more than {MAX_RECORDS:,} records")
                check_fits_in_memory(records, tuple(x_batch.shape[1:]))  # as float32
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


def _index_images(tf, files: list[Path], description, input_name: str, inputs, target: str):
    """Where every record is (spec.EncodedExamples) and every label, reading each file
    once: the records are parsed a batch at a time for their labels and their images'
    headers (an image too large is refused by file and record number; one whose header
    does not parse is decoded now, so that it is reported before training)."""
    shape = tuple(inputs.shape)
    file_ids, offsets, lengths, labels = [], [], [], []
    for file_id, path in enumerate(files):
        starts, sizes = record_spans(path)
        with open(path, "rb") as handle:
            for first in range(0, len(starts), DECODE_BATCH):
                spans = zip(starts[first : first + DECODE_BATCH],
                            sizes[first : first + DECODE_BATCH], strict=True)  # fmt: skip
                records = [_read_at(handle, offset, size) for offset, size in spans]
                parsed = _parse_batch(tf, records, description, path)
                _check_images(tf, parsed[input_name].numpy(), shape, path, first)
                labels.append(parsed[target].numpy())
        file_ids.append(np.full(len(starts), file_id, np.int32))
        offsets.append(starts)
        lengths.append(sizes)
        if sum(map(len, offsets)) > MAX_RECORDS:
            raise DataError(f"data.paths: more than {MAX_RECORDS:,} records")
    encoded = EncodedExamples(
        files=tuple(str(path) for path in files),
        file_ids=np.concatenate(file_ids) if file_ids else np.empty(0, np.int32),
        offsets=np.concatenate(offsets) if offsets else np.empty(0, np.int64),
        lengths=np.concatenate(lengths) if lengths else np.empty(0, np.int64),
        shape=shape,
        feature=input_name,
    )
    return encoded, np.concatenate(labels) if labels else np.empty(0, np.int64)


def _read_at(handle, offset, length) -> bytes:
    handle.seek(int(offset))
    return handle.read(int(length))


def _parse_batch(tf, records: list[bytes], description: dict, path: Path) -> dict:
    try:
        return tf.io.parse_example(tf.constant(records, tf.string), description)
    except tf.errors.InvalidArgumentError as err:
        raise DataError(
            f"data.feature_spec: {path}: the records do not match the spec "
            f"({op_message(err)}); check each feature's dtype and shape"
        ) from None


def _check_images(tf, images, shape, path: Path, first: int) -> None:
    """Refuse, by record number, images too large to decode and records that are not
    images (decoded only when their header does not parse)."""
    names = [f"data.paths: {path} record {first + i}" for i in range(len(images))]
    readers = [functools.partial(image_size_of_bytes, data) for data in images]
    problems = []
    for i in read_headers(readers, names)[1]:
        try:
            decode_image(tf, images[i], shape)
        except tf.errors.OpError as err:
            problems.append(f"{names[i]}: not a readable image ({op_message(err)})")
    if problems:
        raise DataError(problems[:MAX_PROBLEMS])

"""Decoding image files and encoded image bytes, as every reader of images does
(image_dir, tfrecord) and `bigmodel predict` for new images.

Each image is decoded to `data.color_mode` (grayscale: 1 channel, rgb: 3, rgba: 4;
grayscale is converted to color by repeating it, color to grayscale by the usual luma
weights, and an alpha channel is dropped or added as opaque), resized to
`data.image_size` (bilinear, antialiased when shrinking) and rounded to uint8, in a
parallel `tf.data` pipeline. An animated GIF gives its first frame.

**Before decoding**, every file's header is read (image_headers): an image over
MAX_IMAGE_PIXELS (every frame of a GIF counted), a JPEG XL or an animated WebP is
refused, and the decodes in flight, no more at once than fit in half the memory
available, count in the memory check. Every file that cannot be read or decoded is
reported, all together, each by its path.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from bigmodel_cli.config import Config
from bigmodel_cli.data.image_headers import ImageSize, UnsupportedImage, image_size_of_file
from bigmodel_cli.data.limits import MAX_PROBLEMS, MEMORY_SHARE, capped
from bigmodel_cli.data.limits import available_memory as _available_memory
from bigmodel_cli.errors import DataError
from bigmodel_cli.spec import EncodedExamples

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp")
CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}
DEFAULT_IMAGE_SIZE = (64, 64)
DEFAULT_COLOR_MODE = "rgb"
DECODE_BATCH = 256  # images per batch pulled out of the pipeline into the NumPy array


def image_shape(cfg: Config) -> tuple[int, int, int]:
    """(height, width, channels) of every decoded image."""
    height, width = cfg.data.image_size or DEFAULT_IMAGE_SIZE
    return int(height), int(width), CHANNELS[cfg.data.color_mode or DEFAULT_COLOR_MODE]


# Decoded uint8 images, then the float32 copies normalization and batching make.
BYTES_PER_VALUE_IN_MEMORY = 1 + 4 + 4
# A file whose decoded image (every frame of a GIF) has more pixels than this is refused
# before decoding: 100 megapixels is past nearly every camera's photo (Pillow warns of a
# decompression bomb past 89), while a 500 KB PNG of one colour can declare 529.
MAX_IMAGE_PIXELS = 100_000_000
# Bytes one decode holds per decoded pixel (measured: 60 for RGBA to RGBA, 38 for
# grayscale to RGBA): the uint8 image, its float32 copy, the channel conversion and the
# resize's float32 intermediates.
DECODE_BYTES_PER_PIXEL = 60


def check_fits_in_memory(count: int, shape: tuple[int, ...], decoding: int = 0) -> None:
    """Refuse (exit 2) a folder whose decoded images would not fit in memory, before
    allocating them, rather than be killed by the kernel halfway. `decoding`: bytes the
    decodes in flight hold besides."""
    needed = count * math.prod(shape) * BYTES_PER_VALUE_IN_MEMORY + decoding
    available = _available_memory()
    if available is not None and needed > MEMORY_SHARE * available:
        raise DataError(
            f"data.image_size: {count:,} images of {list(shape)} need about "
            f"{needed / 2**30:.1f} GiB in memory; {available / 2**30:.1f} GiB are available. "
            "Use a smaller image_size, or fewer images (data.limit)"
        )


def largest_image(read_sizes: Iterable[Callable[[], ImageSize | None]], names: list[str]) -> int:
    """The most pixels any of the images decodes to, from their headers (each read by
    one of `read_sizes`). Images over MAX_IMAGE_PIXELS, or in a format whose size cannot
    be read first, are refused (exit 2), every one named (up to MAX_PROBLEMS), before
    any is decoded. A header that does not parse is left to the decoder to report."""
    return read_headers(read_sizes, names)[0]


def read_headers(
    read_sizes: Iterable[Callable[[], ImageSize | None]], names: list[str]
) -> tuple[int, list[int]]:
    """`largest_image`, and the positions of the images whose header did not parse."""
    largest, unparsed, problems = 0, [], []
    bound = f"images over {MAX_IMAGE_PIXELS // 10**6} megapixels are refused before decoding"
    for index, (read, name) in enumerate(zip(read_sizes, names, strict=True)):
        try:
            size = read()
        except UnsupportedImage as err:
            problems.append(f"{name}: {err}")
            continue
        if size is None:
            unparsed.append(index)
        elif size.pixels > MAX_IMAGE_PIXELS:
            problems.append(f"{name}: {size.describe()} once decoded; {bound}. Downscale it")
        else:
            largest = max(largest, size.pixels)
    if problems:
        raise DataError(capped(problems))
    return largest, unparsed


def decode_parallelism(largest_pixels: int) -> int:
    """Images to decode at once: every core, unless that many of the largest image's
    decodes would take more than half the memory available (at least one)."""
    cores = os.cpu_count() or 1
    per_decode = largest_pixels * DECODE_BYTES_PER_PIXEL
    available = _available_memory()
    if available is None or per_decode == 0:
        return cores
    return max(1, min(cores, int(available / 2 // per_decode)))


def parallel_calls(tf, parallel: int) -> int:
    """tf.data's own tuning (at most a decode per core) unless memory asks for fewer."""
    return parallel if parallel < (os.cpu_count() or 1) else tf.data.AUTOTUNE


def load_images(
    paths: list[Path], cfg: Config, shape: tuple[int, int, int] | None = None
) -> np.ndarray:
    """Decode and resize `paths` as `cfg.data` says (or to `shape`, e.g. a trained
    model's images): uint8 (n, height, width, channels).

    Every image's header is read first (image_headers): one that decodes to more than
    MAX_IMAGE_PIXELS is refused, and the decodes in flight count in the memory check.
    Every unreadable or undecodable file is reported in one DataError, by its path.
    """
    from bigmodel_cli.tfenv import import_tensorflow, quiet_native_logs

    shape = tuple(shape) if shape is not None else image_shape(cfg)
    readers = (functools.partial(image_size_of_file, p) for p in paths)
    largest = largest_image(readers, [str(p) for p in paths])
    parallel = decode_parallelism(largest)
    check_fits_in_memory(len(paths), shape, parallel * largest * DECODE_BYTES_PER_PIXEL)
    tf = import_tensorflow()
    out = np.empty((len(paths), *shape), dtype=np.uint8)
    if not paths:
        return out

    def decode(index, path):
        return index, decode_image(tf, tf.io.read_file(path), shape)

    names = [os.fsencode(p) for p in paths]  # bytes: any file name the OS accepts
    dataset = (
        tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), names))
        .map(decode, num_parallel_calls=parallel_calls(tf, parallel))
        .ignore_errors()  # a bad file drops out; its index is missing below
        .batch(DECODE_BATCH)
    )
    seen = np.zeros(len(paths), dtype=bool)
    with quiet_native_logs():  # TF logs each failed decode at C++ level
        for index, images in dataset.as_numpy_iterator():
            out[index] = images
            seen[index] = True
        bad = np.flatnonzero(~seen)
        problems = [f"{paths[i]}: {_why_unreadable(tf, paths[i], shape)}" for i in bad]
    if problems:
        if len(problems) > MAX_PROBLEMS:
            more = len(problems) - MAX_PROBLEMS
            problems = problems[:MAX_PROBLEMS] + [f"... and {more} more unreadable images"]
        raise DataError(problems)
    return out


def encoded_files(paths: list[Path], cfg: Config) -> EncodedExamples:
    """`paths` as examples decoded a batch at a time as training reads them (to
    `image_shape(cfg)`), checked without decoding them: every file's header is read (an
    image over MAX_IMAGE_PIXELS, or in a format refused, is refused as `load_images`
    refuses it), and only a file whose header does not parse is decoded now, so that a
    file that is not an image is reported (exit 2, every one by its path) before
    training, not when a batch reaches it."""
    shape = image_shape(cfg)
    sizes, problems, readable = np.empty(len(paths), np.int64), [], []
    for i, path in enumerate(paths):
        try:
            sizes[i] = os.stat(path).st_size
            readable.append(path)
        except OSError as err:
            problems.append(f"{path}: cannot read the file ({err.strerror})")
    readers = (functools.partial(image_size_of_file, p) for p in readable)
    try:
        _, unparsed = read_headers(readers, [str(p) for p in readable])
    except DataError as err:  # reported with the files that cannot be read
        raise DataError(capped(problems + err.problems)) from None
    if unparsed:
        from bigmodel_cli.tfenv import import_tensorflow, quiet_native_logs

        tf = import_tensorflow()
        with quiet_native_logs():
            problems += [f"{readable[i]}: {why}" for i in unparsed
                         if (why := _undecodable(tf, readable[i], shape))]  # fmt: skip
    if problems:
        raise DataError(capped(problems))
    return EncodedExamples(
        files=tuple(os.fsdecode(p) for p in paths),
        file_ids=np.arange(len(paths), dtype=np.int32),
        offsets=np.zeros(len(paths), np.int64),
        lengths=sizes,
        shape=shape,
    )


def _undecodable(tf, path: Path, shape: tuple[int, int, int]) -> str | None:
    """Why `path` cannot be decoded, or None when it can."""
    try:
        decode_image(tf, tf.io.read_file(os.fsencode(path)), shape)
    except tf.errors.OpError:
        return _why_unreadable(tf, path, shape)
    return None


def decode_image(tf, encoded, shape: tuple[int, int, int]):
    """Encoded PNG/JPEG/GIF/BMP bytes -> uint8 (height, width, channels), in graph mode.

    Decodes with the file's own channels and converts afterwards: `decode_image` itself
    refuses channels=1 for GIF and BMP files.
    """
    height, width, channels = shape
    image = tf.io.decode_image(encoded, channels=0, expand_animations=False)

    def converted():
        converted = _to_channels(tf, tf.cast(image, tf.float32), channels)  # rounded once
        converted = tf.image.resize(converted, (height, width), antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(converted), 0, 255), tf.uint8)

    # An image already of the shape asked for is used as decoded (what the conversion
    # would give it, bit for bit), at 2.5x the speed: streamed images are decoded every
    # epoch.
    as_is = tf.reduce_all(tf.equal(tf.shape(image), tf.constant(shape, tf.int32)))
    image = tf.cond(as_is, lambda: tf.cast(image, tf.uint8), converted)
    image.set_shape(shape)
    return image


def _to_channels(tf, image, channels: int):
    """1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA) channels -> `channels`."""
    native = tf.shape(image)[-1]
    has_color = native >= 3
    if channels == 1:
        return tf.cond(
            has_color, lambda: tf.image.rgb_to_grayscale(image[..., :3]), lambda: image[..., :1]
        )
    rgb = tf.cond(has_color, lambda: image[..., :3], lambda: tf.repeat(image[..., :1], 3, -1))
    if channels == 3:
        return rgb
    has_alpha = tf.equal(native % 2, 0)  # 2 or 4 channels
    opaque = tf.fill(tf.shape(image[..., :1]), 255.0)
    alpha = tf.cond(has_alpha, lambda: image[..., -1:], lambda: opaque)
    return tf.concat([rgb, alpha], axis=-1)


def _why_unreadable(tf, path: Path, shape: tuple[int, int, int]) -> str:
    """Decode one file eagerly to learn why the pipeline dropped it."""
    try:
        decode_image(tf, tf.io.read_file(os.fsencode(path)), shape)
    except tf.errors.NotFoundError:
        return "no such file"
    except tf.errors.PermissionDeniedError:
        return "cannot read the file (permission denied)"
    except tf.errors.OpError as err:
        return f"not a readable image ({op_message(err)})"
    return "could not be decoded"  # failed in the pipeline only (e.g. memory); say so


def op_message(err) -> str:
    """The reason in a TF op error, without the function-node and op-name wrapping."""
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", err.message or "")
    text = re.sub(r"\s*\[Op:\w+\].*$", "", text.strip().splitlines()[0] if text.strip() else "")
    return text or type(err).__name__

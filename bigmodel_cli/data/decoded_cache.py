"""`data.cache: disk`: each split's images decoded once into a file of uint8 pixels
under `cache_root()/images/`, which later epochs and later runs read a batch at a time
instead of decoding again (decoding is most of a small model's input cost).

The file is keyed by a digest of where every example is (files, offsets, lengths), each
file's size and modification time, and the decoded shape: any change to the images or
the split makes a new file. It is written under a temporary name and renamed into place,
so a run killed while writing it leaves no half-made file. It is `n x height x width x
channels` bytes; delete `images/` at any time to reclaim the space.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace

import numpy as np

from bigmodel_cli.cache import cache_root
from bigmodel_cli.data.decode import pixel_batches
from bigmodel_cli.spec import EncodedExamples


def cache_key(encoded: EncodedExamples) -> str:
    digest = hashlib.sha256(repr((encoded.shape, encoded.feature)).encode())
    for path in encoded.files:
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    for array in (encoded.file_ids, encoded.offsets, encoded.lengths):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:32]


def with_decoded_cache(encoded: EncodedExamples) -> tuple[EncodedExamples, bool]:
    """`encoded` reading from its decoded file, made now if it is not there yet; and
    whether it was made now."""
    folder = cache_root() / "images"
    path = folder / f"{cache_key(encoded)}.u8"
    size = len(encoded) * int(np.prod(encoded.shape))
    if path.is_file() and path.stat().st_size == size:
        return replace(encoded, decoded=str(path)), False
    folder.mkdir(parents=True, exist_ok=True)
    work = folder / f".{path.name}.{os.getpid()}"
    try:
        with open(work, "wb") as out:
            for batch in pixel_batches(replace(encoded, decoded=None)).as_numpy_iterator():
                out.write(batch.astype(np.uint8).tobytes())
        os.replace(work, path)
    finally:
        work.unlink(missing_ok=True)
    return replace(encoded, decoded=str(path)), True

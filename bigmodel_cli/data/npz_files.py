"""Reading `.npz` archives without trusting them (training's npz source and `predict`).

An `.npz` is a zip of `.npy` files, each a small header (dtype and shape) before the
data. A 4 MB archive of zeros can declare a 4 GB array, and a header can be edited to
declare any shape, so each array's header is read first, without its data, and the
array is refused (exit 2, naming the file and the array) when:
- it holds Python objects (bigmodel never unpickles data files);
- the bytes its header declares (shape x item size) differ from the bytes the archive
  stores for it: the file is truncated or its header was edited;
- the arrays to be loaded, with the float32 copies training makes of them, need more
  than the data's share of the memory available (`limits.check_memory`).
Only then is the data read (`allow_pickle=False`).
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bigmodel_cli.data.limits import check_memory
from bigmodel_cli.errors import DataError

NPY_MAGIC = b"\x93NUMPY"
# Bytes held per value besides the file's own: the float32 (or int32) conversion, the
# splits, normalization's temporaries and the tf.data copy, each 4 bytes a value.
# Measured: 200,000 x 256 float32 trained with normalize: true peaked 740 MiB above a
# 2,000-example run, 15 bytes a value in all; 4 + 16 leaves a margin.
COPY_BYTES_PER_VALUE = 16


@dataclass(frozen=True)
class ArrayHeader:
    """One member's header: what loading it would allocate."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    stored: int  # bytes of data the archive holds after the header

    @property
    def values(self) -> int:
        return math.prod(self.shape)

    @property
    def declared(self) -> int:
        return self.values * self.dtype.itemsize


class NpzArchive:
    """An open `.npz`: its array names, their headers, and checked reads.

    `where` starts every message (e.g. "data.path: runs/x.npz")."""

    def __init__(self, path: Path, where: str):
        self.path, self.where = path, where
        try:
            self.zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
            raise DataError(self._not_npz(err)) from None
        # numpy's names: a member "x.npy" is the array "x"
        self.members = {
            info.filename.removesuffix(".npy"): info
            for info in self.zip.infolist()
            if not info.is_dir()
        }

    def __enter__(self) -> NpzArchive:
        return self

    def __exit__(self, *exc) -> None:
        self.zip.close()

    @property
    def names(self) -> set[str]:
        return set(self.members)

    def _not_npz(self, err) -> str:
        try:
            with open(self.path, "rb") as handle:
                if handle.read(len(NPY_MAGIC)) == NPY_MAGIC:
                    return (
                        f"{self.where}: a single .npy array, not an .npz archive; save the "
                        "arrays with numpy.savez(path, x=..., y=...)"
                    )
        except OSError as os_err:
            return f"{self.where}: cannot read: {os_err.strerror}"
        return f"{self.where}: not a readable .npz archive ({err})"

    def header(self, name: str) -> ArrayHeader:
        """The header of array `name`, read without its data."""
        info = self.members[name]
        try:
            with self.zip.open(info) as member:
                if member.read(len(NPY_MAGIC)) != NPY_MAGIC:
                    raise DataError(f"{self.where}: {name!r} is not a NumPy array (.npy)")
                member.seek(0)
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, _fortran, dtype = np.lib.format.read_array_header_1_0(member)
                elif version == (2, 0):
                    shape, _fortran, dtype = np.lib.format.read_array_header_2_0(member)
                else:  # 3.0: structured arrays with Unicode field names, never numbers
                    raise DataError(
                        f"{self.where}: array {name!r} is in .npy format {version}; expected "
                        "a plain numeric array (format 1.0 or 2.0)"
                    )
                offset = member.tell()
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
            raise DataError(f"{self.where}: array {name!r} has a damaged header ({err})") from None
        return ArrayHeader(name, tuple(int(d) for d in shape), dtype, info.file_size - offset)

    def check(self, names: list[str]) -> dict[str, ArrayHeader]:
        """Headers of `names`, refused together (module docstring) before any data is read."""
        headers, problems = {}, []
        for name in names:
            try:
                headers[name] = head = self.header(name)
            except DataError as err:
                problems += err.problems
                continue
            if head.dtype.hasobject:
                problems.append(
                    f"{self.where}: array {name!r} holds Python objects (dtype object); "
                    "bigmodel never unpickles data files. Save numeric or string arrays instead."
                )
            elif head.declared != head.stored:
                problems.append(
                    f"{self.where}: array {name!r} declares shape {head.shape} of {head.dtype} "
                    f"({head.declared:,} bytes) but the archive stores {head.stored:,} bytes "
                    "for it: the file is truncated or its header was edited"
                )
        if problems:
            raise DataError(problems)
        needed = sum(h.declared + h.values * COPY_BYTES_PER_VALUE for h in headers.values())
        shapes = ", ".join(f"{h.name} {h.shape} {h.dtype}" for h in headers.values())
        check_memory(
            needed,
            f"{self.where}: the arrays ({shapes})",
            "An npz is read into memory (as csv and the built-in datasets are; text_corpus, "
            "image_dir and tfrecord images stream from disk). Keep fewer examples, store "
            "images as TFRecord shards of encoded images (data.source: tfrecord), or use a "
            "machine with more memory",
        )
        return headers

    def read(self, name: str) -> np.ndarray:
        """Array `name`; call `check` first."""
        try:
            with self.zip.open(self.members[name]) as member:
                return np.lib.format.read_array(member, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
            raise DataError(f"{self.where}: cannot read array {name!r}: {err}") from None

    def load(self, names: list[str]) -> dict[str, np.ndarray]:
        """`names` checked together, then read."""
        self.check(names)
        return {name: self.read(name) for name in names}

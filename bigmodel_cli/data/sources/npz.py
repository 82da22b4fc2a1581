"""`data.source: npz`: a NumPy `.npz` file of `x`, `y`, or `x_train`, `y_train`,
`x_test`, `y_test` (the file's test set is then the test split).

The file is read through `npz_files.NpzArchive`: every array's header is checked
(declared against stored size, the memory available, no Python objects) before its data
is read with `allow_pickle=False`. It must hold at least one example, and inputs float32
can hold (`limits`); the arrays then become `RawData` as `data.arrays` says.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bigmodel_cli.config import Config
from bigmodel_cli.data.arrays import from_arrays
from bigmodel_cli.data.files import data_file
from bigmodel_cli.data.limits import MAX_PROBLEMS, array_value_problems
from bigmodel_cli.data.npz_files import NpzArchive
from bigmodel_cli.data.raw import RawData
from bigmodel_cli.errors import DataError


def read_npz(cfg: Config, base_dir: Path) -> RawData:
    """The file `data.path` names (relative to `base_dir`)."""
    return read_npz_file(data_file(cfg, base_dir), cfg)


def read_npz_file(path: Path, cfg: Config) -> RawData:
    with NpzArchive(path, f"data.path: {path}") as archive:
        keys = archive.names
        split = {"x_train", "y_train", "x_test", "y_test"}
        if {"x", "y"} <= keys and not keys & split:
            wanted = ["x", "y"]
        elif split <= keys and not keys & {"x", "y"}:
            wanted = ["x_train", "y_train", "x_test", "y_test"]
        else:
            raise DataError(
                f"data.path: {path} holds arrays {', '.join(sorted(keys)) or '(none)'}; "
                "expected exactly x, y or x_train, y_train, x_test, y_test"
            )
        arrays = archive.load(wanted)  # headers checked first: sizes, memory, no objects
    notes = []
    if len(wanted) == 4:
        notes.append(f"{path} brings its own test set (x_test): data.test_split is not applied")
    xs, ys = [arrays[k] for k in wanted[::2]], [arrays[k] for k in wanted[1::2]]
    problems = []
    for xa, ya, xn, yn in zip(xs, ys, wanted[::2], wanted[1::2], strict=True):
        if xa.ndim == 0 or ya.ndim == 0 or len(xa) != len(ya):
            problems.append(f"{path}: {xn} has shape {xa.shape} but {yn} has {ya.shape}")
        elif xn != "x_test" and len(xa) == 0:
            problems.append(f"{path}: {xn} and {yn} hold no examples (shape {xa.shape})")
        if xa.dtype.kind not in "biuf":
            problems.append(f"{path}: {xn} has dtype {xa.dtype}; expected numbers")
        else:
            problems += array_value_problems(xa, f"{path}: {xn}", MAX_PROBLEMS)
    if len(xs) == 2 and xs[0].shape[1:] != xs[1].shape[1:]:
        problems.append(f"{path}: x_train examples are {xs[0].shape[1:]}, x_test {xs[1].shape[1:]}")
    if problems:
        raise DataError(problems)
    x = np.concatenate(xs) if len(xs) > 1 else xs[0]
    y = np.concatenate(ys) if len(ys) > 1 else ys[0]
    return from_arrays(x, y, len(xs[0]), cfg, f"npz {path}", path, notes)

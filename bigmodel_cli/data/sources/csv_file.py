"""csv files: one example per row, the columns named by a header row or by position.

Training (`data.source: csv`) and `bigmodel predict` read a file the same way, with the
run's settings: UTF-8 (a BOM dropped), `data.delimiter`, the first `data.skip_rows` rows
skipped, blank lines skipped, then a header row of column names, or with `data.header:
false` none: every row is data and the columns are `column_0`, `column_1`, ... `target`
names a column, or gives its position (0 first, -1 last).

A first line that is not a header is the usual surprise (scikit-learn's own `iris.csv`
starts `150,4,setosa,versicolor,virginica`: counts and class names), so column names that
are numbers and rows whose width differs from the header's are pointed out with the
setting that reads the file as meant.

Every feature cell must be a number float32 can hold (not empty, NaN, infinite or beyond
3.4e38); each bad one is named by line and column. Reading is linear in the file's size
(column lookups through dicts, cells parsed by NumPy, a cell-by-cell pass only to name
what is wrong).
"""

from __future__ import annotations

import csv
import math
import operator
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bigmodel_cli.config import Config, DataConfig
from bigmodel_cli.data.files import data_file
from bigmodel_cli.data.limits import FLOAT32_MAX, beyond_float32, capped, check_memory, size_text
from bigmodel_cli.data.raw import RawData
from bigmodel_cli.data.targets import encode_target, finite_number
from bigmodel_cli.errors import DataError

# Memory one cell takes while the file is read (its str and list slot, then its number):
# measured 110 bytes for a 19 MB file of 2 million floats (peak +219 MB).
BYTES_PER_CELL = 110
SIZE_SAMPLE = 1 << 20
MAX_QUOTED = 60  # characters of a line quoted in a message
MAX_LISTED = 30  # column names listed in a message
NUMBER_START = set("0123456789+-.nNiI")  # first characters of what float() accepts


@dataclass
class CsvTable:
    """The rows of a csv file and the names of its columns."""

    columns: list[str]  # from the header row, or column_0... without one; [] if none
    rows: list[list[str]]
    lines: list[int]  # the file line each row ends on
    header_line: int | None  # the line of the header row; None with `header: false`


def check_csv_fits(path: Path, delimiter: str, where: str) -> None:
    """Refuse (exit 2) a file whose cells would not fit in memory while read, before
    reading it: cells are estimated from the first MB, at BYTES_PER_CELL each."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            sample = handle.read(SIZE_SAMPLE)
    except OSError:
        return  # reading it says why
    if len(sample) < SIZE_SAMPLE:
        return  # small enough to read whole
    cells = sample.count(delimiter.encode()) + sample.count(b"\n")
    needed = int(cells * size / len(sample) * BYTES_PER_CELL)
    check_memory(
        needed,
        f"{where} ({size_text(size)} of text, about {needed // BYTES_PER_CELL:,} cells)",
        "A csv is read whole, as text, into memory. Convert it to an npz of float32 "
        "arrays x and y (np.savez; a tenth of the memory, its arrays checked before they "
        "are read), keep fewer rows, or use a machine with more memory",
    )


def read_csv_table(path: Path, data: DataConfig, where: str) -> CsvTable:
    """Read `path` as `data` says (delimiter, skip_rows, header); `where` starts errors."""
    check_csv_fits(path, data.delimiter or ",", where)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, delimiter=data.delimiter or ",")
            for _ in range(data.skip_rows or 0):
                if next(reader, None) is None:
                    break  # a file shorter than skip_rows: nothing left to read
            header = next(reader, None) if data.header is not False else None
            header_line = reader.line_num if header is not None else None
            rows, lines = [], []
            for row in reader:
                if row and any(cell.strip() for cell in row):  # skip blank lines
                    rows.append(row)
                    lines.append(reader.line_num)
    except UnicodeDecodeError as err:
        raise DataError(f"{where}: not UTF-8 text (byte {err.start})") from None
    except csv.Error as err:
        raise DataError(f"{where}: malformed csv: {err}") from None
    except OSError as err:
        raise DataError(f"{where}: cannot read: {err.strerror}") from None
    table = CsvTable([name.strip() for name in header or []], rows, lines, header_line)
    if data.header is False:
        table.columns = [f"column_{i}" for i in range(_usual_width(table)[0])]
    return table


def cell_problem(cell: str) -> str:
    """Why a stripped cell is not a float32 model input, or "" when it is one."""
    if not cell:
        return "empty cell"
    try:
        value = float(cell)
    except ValueError:
        return f"{cell!r} is not a finite number"
    if not math.isfinite(value):
        return f"{cell!r} is not a finite number"
    if abs(value) > FLOAT32_MAX:
        return f"{cell!r} is beyond float32's range (+-3.4e38)"
    return ""


def _quoted(row: list[str], delimiter: str | None) -> str:
    text = (delimiter or ",").join(row)
    return f"`{text}`" if len(text) <= MAX_QUOTED else f"`{text[: MAX_QUOTED - 3]}...`"


def header_hint(table: CsvTable, data: DataConfig, path: Path) -> list[str]:
    """A note when the header row's names are numbers: it may be data, or neither."""
    if table.header_line is None:
        return []
    # Only a name starting like a number can be one: no float() (and its exception) for
    # each of a million names like f0, f1, ...
    numbers = [
        name
        for name in table.columns
        if name[:1] in NUMBER_START or not name[:1].isascii()
        if finite_number(name) is not None
    ]
    if not numbers:
        return []
    where = f"{path} line {table.header_line}"
    if len(numbers) == len(table.columns):
        return [
            f"{where}: the first line ({_quoted(table.columns, data.delimiter)}) looks like "
            "data, not a header: set data.header: false to read it as a row"
        ]
    return [
        f"{where}: column names {listing(numbers)} are numbers; if the first line "
        f"({_quoted(table.columns, data.delimiter)}) is not a header, set data.header: false, "
        f"and data.skip_rows: {(data.skip_rows or 0) + 1} if it is not data either (as in "
        "scikit-learn's own csv files)"
    ]


def width_problems(table: CsvTable, data: DataConfig, path: Path) -> list[str]:
    """Rows whose number of fields differs from the header's (or, without a header, from
    most rows'), with the likely reason when it is the first line that differs."""
    expected = len(table.columns)
    bad = [(r, line) for r, line in zip(table.rows, table.lines, strict=True) if len(r) != expected]
    if not bad:
        return []
    common, count = _usual_width(table)
    if table.header_line is not None and common != expected:
        rows = f"all {count}" if count == len(table.rows) else f"{count} of {len(table.rows)}"
        return [
            f"{path}: {rows} rows have {common} fields, but the header "
            f"(line {table.header_line}: {_quoted(table.columns, data.delimiter)}) has "
            f"{expected}: the first line may not be a header. If it is a line to skip (as in "
            f"scikit-learn's own csv files), set data.skip_rows: {(data.skip_rows or 0) + 1} "
            "and data.header: false; if it is data, set data.header: false"
        ]
    problems = capped(
        f"{path} line {line}: {len(row)} fields, expected {expected} (delimiter "
        f"{data.delimiter or ','!r})"
        for row, line in bad
    )
    return problems + first_row_hint(table, data, path, {line for _, line in bad})


def _usual_width(table: CsvTable) -> tuple[int, int]:
    """(the most common number of fields in a row, how many rows have it)."""
    return Counter(len(row) for row in table.rows).most_common(1)[0] if table.rows else (0, 0)


def first_row_hint(table: CsvTable, data: DataConfig, path: Path, bad_lines: set[int]) -> list[str]:
    """Without a header, a first row that alone is wrong is likely not data at all."""
    if table.header_line is not None or bad_lines != {table.lines[0]}:
        return []
    first = _quoted(table.rows[0], data.delimiter)
    return [
        f"{path} line {table.lines[0]}: only the first row ({first}) is unlike the others; "
        "if it is not data (as in scikit-learn's own csv files), set data.skip_rows: "
        f"{(data.skip_rows or 0) + 1} to skip it"
    ]


def listing(columns: list[str]) -> str:
    """The column names for a message: all of them, or the first MAX_LISTED and a count."""
    if len(columns) <= MAX_LISTED:
        return ", ".join(columns)
    return f"{', '.join(columns[:MAX_LISTED])}, ... ({len(columns):,} columns)"


def target_column(table: CsvTable, target: str | int, path: Path) -> tuple[str | None, str]:
    """(the target's column name, or None, and the problem when there is none)."""
    columns = table.columns
    if isinstance(target, int):
        if -len(columns) <= target < len(columns):
            return columns[target], ""
        return None, (
            f"data.target: column index {target}, but {path} has {len(columns)} columns "
            f"(0 to {len(columns) - 1}, or -1 for the last)"
        )
    if target in columns:
        return target, ""
    problem = f"data.target: column {target!r} not in {path}; columns are {listing(columns)}"
    if table.header_line is None:
        problem += " (data.header is false); or give the column's position, e.g. target: -1"
    elif len(columns) == 1:
        problem += f" (is the delimiter {','!r} right?)"
    return None, problem


def read_csv(cfg: Config, base_dir: Path) -> RawData:
    """`data.source: csv`: the file `data.path` names (relative to `base_dir`)."""
    return read_csv_source(data_file(cfg, base_dir), cfg)


def read_csv_source(path: Path, cfg: Config) -> RawData:
    """`data.source: csv`: the feature columns as floats, the target as labels."""
    data = cfg.data
    table = read_csv_table(path, data, f"data.path: {path}")
    if not table.columns:
        expected = "a header row of column names" if data.header is not False else "rows"
        raise DataError(f"data.path: {path}: empty; expected {expected}")
    hint = header_hint(table, data, path)
    dupes = sorted(c for c, count in Counter(table.columns).items() if count > 1)
    if dupes:
        raise DataError([f"{path}: header repeats column(s) {', '.join(dupes)}", *hint])
    target, features, problems = _columns(table, data, path)
    if not table.rows:
        problems.append(f"data.path: {path}: has a header but no data rows")
    if table.rows and _usual_width(table)[0] != len(table.columns):
        hint = []  # width_problems says it: the first line may not be a header
    problems += width_problems(table, data, path)
    if problems:  # all at once; a header that is not one explains most of them
        raise DataError(problems + hint)
    columns = table.columns
    position = {name: i for i, name in enumerate(columns)}  # names are unique by now
    x, targets = _cells(table, data, path, [position[n] for n in features], position[target])
    task, y, names = encode_target(
        targets,
        cfg,
        lambda i: f"{path} line {table.lines[i]}, column {target!r}",
        f"data.target: column {target!r} of {path}",
    )
    description = f"csv {path}: {len(x)} rows, {len(features)} features, target {target!r}"
    return RawData(
        x=x,
        y=y,
        task=task,
        kind="tabular",
        description=description,
        num_classes=len(names) if names else None,
        class_names=names,
        notes=hint,
        feature_names=tuple(features),  # the columns of x, in order: predict reads by name
    )


def _columns(table: CsvTable, data: DataConfig, path: Path) -> tuple[str, list[str], list[str]]:
    """(target column, feature columns, problems with either)."""
    columns = table.columns
    target, problem = target_column(table, data.target, path)
    problems = [problem] if problem else []
    features = list(data.features) if data.features else [c for c in columns if c != target]
    known = set(columns)  # a set: a header of 40,000 columns was 69 s of list scans
    problems += [
        f"data.features: column {name!r} not in {path}; columns are {listing(columns)}"
        for name in features
        if name not in known
    ]
    if target in features:
        problems.append(f"data.features: lists the target column {target!r}")
    if not features:
        problems.append(f"data.features: {path} has no column besides the target")
    return target, features, problems


def _cells(
    table: CsvTable, data: DataConfig, path: Path, feature_index: list[int], target_index: int
) -> tuple[np.ndarray, np.ndarray]:
    """(features as float32, target cells as strings); every bad cell is reported."""
    targets = np.asarray([row[target_index].strip() for row in table.rows])
    x = _all_numbers(table.rows, feature_index)
    if x is not None and all(targets):
        return x, targets
    target = table.columns[target_index]
    x = np.empty((len(table.rows), len(feature_index)), dtype=np.float32)
    problems, bad_lines = [], set()  # cell by cell, to name every bad one
    for r, (row, line) in enumerate(zip(table.rows, table.lines, strict=True)):
        for c, col in enumerate(feature_index):
            cell = row[col].strip()
            why = cell_problem(cell)
            if why:
                problems.append(f"{path} line {line}, column {table.columns[col]!r}: {why}")
                bad_lines.add(line)
            else:
                x[r, c] = float(cell)
        if not row[target_index].strip():
            problems.append(f"{path} line {line}, column {target!r}: empty cell")
            bad_lines.add(line)
    if problems:
        raise DataError(capped(problems) + first_row_hint(table, data, path, bad_lines))
    return x, targets


def _all_numbers(rows: list[list[str]], columns: list[int]) -> np.ndarray | None:
    """The cells of `columns` as float32 when every one is a number float32 holds, else
    None. NumPy parses strings as float() does, in C: 5x the cell-by-cell loop."""
    if not rows or not columns:
        return None
    pick = operator.itemgetter(*columns)
    try:
        x = np.array([pick(row) for row in rows], dtype=np.float64).reshape(len(rows), -1)
    except ValueError:  # a cell that is not a number
        return None
    return None if beyond_float32(x, 0)[0] else x.astype(np.float32)

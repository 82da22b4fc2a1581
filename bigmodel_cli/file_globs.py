"""`data.paths`: files named by glob patterns, for text_corpus and tfrecord."""

from __future__ import annotations

import glob
import sysconfig
from pathlib import Path

from bigmodel_cli.errors import DataError


def expand_paths(patterns: list[str], base_dir: Path) -> list[Path]:
    """Files matched by `patterns`, sorted and without repeats; each pattern must match."""
    # Folder names are taken literally: a `[` in the config's folder is not a pattern.
    stdlib = glob.escape(sysconfig.get_paths()["stdlib"])
    found: dict[Path, None] = {}
    problems = []
    for pattern in patterns:
        if "\x00" in pattern:
            problems.append(f"data.paths: {pattern!r} contains a NUL character")
            continue
        expanded = pattern.replace("{stdlib}", stdlib)
        if expanded.startswith("~"):
            expanded = str(Path(expanded).expanduser())
        relative = not Path(expanded).is_absolute()
        full = f"{glob.escape(str(base_dir))}/{expanded}" if relative else expanded
        matches = sorted(Path(p) for p in glob.glob(full, recursive=True))
        files = [p for p in matches if p.is_file()]
        if not files:
            where = f" in {base_dir}" if relative else ""
            problems.append(f"data.paths: {pattern!r} matches no file{where}")
        found.update(dict.fromkeys(files))
    if problems:
        raise DataError(problems)
    return list(found)

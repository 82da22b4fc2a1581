"""`data.paths`: files named by glob patterns, for text_corpus and tfrecord."""

from __future__ import annotations

import glob
import sysconfig
from pathlib import Path

from bigmodel_cli.errors import DataError


def expand_paths(patterns: list[str], base_dir: Path) -> list[Path]:
    """Files matched by `patterns`, sorted and without repeats; each pattern must match."""
    stdlib = sysconfig.get_paths()["stdlib"]
    found: dict[Path, None] = {}
    problems = []
    for pattern in patterns:
        expanded = Path(pattern.replace("{stdlib}", stdlib)).expanduser()
        full = expanded if expanded.is_absolute() else base_dir / expanded
        matches = sorted(Path(p) for p in glob.glob(str(full), recursive=True))
        files = [p for p in matches if p.is_file()]
        if not files:
            problems.append(f"data.paths: {pattern!r} matches no file (looked for {full})")
        found.update(dict.fromkeys(files))
    if problems:
        raise DataError(problems)
    return list(found)

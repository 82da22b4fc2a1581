"""The files a config names: `data.paths` (glob patterns, for text_corpus and tfrecord)
and `data.path` (one file, for csv and npz)."""

from __future__ import annotations

import glob
import sysconfig
from pathlib import Path

from bigmodel_cli.config import Config
from bigmodel_cli.errors import DataError

STDLIB = "{stdlib}"


def anchored(pattern: str, base_dir: Path) -> str:
    """`pattern` as it reads from any folder: `{stdlib}`, `~` and absolute patterns as
    they are, others under `base_dir`, whose name is taken literally (a `[` in the
    config's folder is not a pattern)."""
    if pattern.startswith((STDLIB, "~")) or Path(pattern).is_absolute():
        return pattern
    return f"{glob.escape(str(base_dir))}/{pattern}"


def expand_paths(patterns: list[str], base_dir: Path) -> list[Path]:
    """Files matched by `patterns`, sorted and without repeats; each pattern must match.
    (The config schema has already refused NUL characters.)"""
    stdlib = glob.escape(sysconfig.get_paths()["stdlib"])
    found: dict[Path, None] = {}
    problems = []
    for pattern in patterns:
        full = anchored(pattern, base_dir).replace(STDLIB, stdlib)
        if full.startswith("~"):
            full = str(Path(full).expanduser())
        matches = sorted(Path(p) for p in glob.glob(full, recursive=True))
        files = [p for p in matches if p.is_file()]
        if not files:
            where = f" in {base_dir}" if anchored(pattern, base_dir) != pattern else ""
            problems.append(f"data.paths: {pattern!r} matches no file{where}")
        found.update(dict.fromkeys(files))
    if problems:
        raise DataError(problems)
    return list(found)


def data_file(cfg: Config, base_dir: Path) -> Path:
    """`data.path` (csv, npz) resolved against `base_dir`; it must be an existing file."""
    path = Path(cfg.data.path).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if not path.exists():
        raise DataError(f"data.path: {path}: no such file")
    if not path.is_file():
        raise DataError(f"data.path: {path}: not a file")
    return path

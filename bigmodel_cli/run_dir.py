"""Every path and file name of a run directory, and how files get there safely.

    OUTPUT_DIR/NAME/YYYYMMDD-HHMMSS[-N]/
        config.yaml  environment.json  metrics.csv  tensorboard/  checkpoints/
        model.keras  summary.json  eval.json

A run directory is never overwritten: a new run gets a new timestamped folder, and
`--run-dir` accepts only a new or empty folder. Files are written to a temporary name
in the same folder and renamed, so a crash leaves the old file or the new one, never
half of one. No TensorFlow import.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bigmodel_cli.errors import UserError

CONFIG = "config.yaml"
ENVIRONMENT = "environment.json"
METRICS = "metrics.csv"
TENSORBOARD = "tensorboard"
CHECKPOINTS = "checkpoints"
BEST = "best.keras"
LAST = "last.keras"
BACKUP = "backup"
STATE = "state.json"
MODEL = "model.keras"
SUMMARY = "summary.json"
EVAL = "eval.json"
VOCABULARY = "vocabulary.json"


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def environment(self) -> Path:
        return self.root / ENVIRONMENT

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def tensorboard(self) -> Path:
        return self.root / TENSORBOARD

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def best(self) -> Path:
        return self.checkpoints / BEST

    @property
    def last(self) -> Path:
        return self.checkpoints / LAST

    @property
    def backup(self) -> Path:
        return self.checkpoints / BACKUP

    @property
    def state(self) -> Path:
        return self.checkpoints / STATE

    @property
    def model(self) -> Path:
        return self.root / MODEL

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY

    @property
    def eval(self) -> Path:
        return self.root / EVAL

    @property
    def vocabulary(self) -> Path:
        return self.root / VOCABULARY


def _timestamp() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def create_run_dir(output_dir: Path, name: str, explicit: Path | None = None) -> RunDir:
    """Make a fresh run directory; never reuse one that holds anything."""
    if explicit is not None:
        if explicit.exists() and (not explicit.is_dir() or any(explicit.iterdir())):
            raise UserError(
                f"--run-dir {explicit}: exists and is not empty; bigmodel never overwrites a "
                "run. Give a new folder, or use --resume to continue that run."
            )
        explicit.mkdir(parents=True, exist_ok=True)
        return RunDir(explicit)
    parent = output_dir / name
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"output.dir: cannot create {parent}: {err.strerror}") from None
    stamp = _timestamp()
    for attempt in range(1000):
        candidate = parent / (stamp if attempt == 0 else f"{stamp}-{attempt}")
        try:
            candidate.mkdir()  # atomic: fails if another run took the name first
        except FileExistsError:
            continue
        return RunDir(candidate)
    raise UserError(f"output.dir: could not find a free run folder under {parent}")


def is_run_dir(path: Path) -> bool:
    return (path / CONFIG).is_file()


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` on a temporary path beside `path`, fsync it, rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None


# === Integrity: a SHA-256 beside every model file ============================

DIGEST_SUFFIX = ".sha256"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def digest_path(path: Path) -> Path:
    return path.with_name(path.name + DIGEST_SUFFIX)


def atomic_write_with_digest(path: Path, write: Callable[[Path], None]) -> None:
    """Write `path` atomically and record its SHA-256 beside it (`<name>.sha256`).

    The digest is computed on the finished temporary file; the two renames follow each
    other, so only a crash between them (microseconds) leaves a mismatch, which
    `verify_digest` reports rather than trusting the file.
    """
    digests: dict[str, str] = {}

    def write_and_hash(tmp: Path) -> None:
        write(tmp)
        digests["sha256"] = sha256_of(tmp)

    atomic_write(path, write_and_hash)
    atomic_write_text(digest_path(path), f"{digests['sha256']}  {path.name}\n")


def verify_digest(path: Path) -> None:
    """Refuse a model file that is truncated, swapped or has no recorded digest."""
    recorded_path = digest_path(path)
    if not recorded_path.is_file():
        raise UserError(f"{path}: no {recorded_path.name} beside it; refusing to load a model "
                        "file whose integrity cannot be checked")  # fmt: skip
    recorded = recorded_path.read_text(encoding="utf-8").split()[:1]
    actual = sha256_of(path)
    if recorded != [actual]:
        raise UserError(f"{path}: SHA-256 does not match {recorded_path.name} (the file was "
                        "truncated or replaced); refusing to load it")  # fmt: skip


# === One trainer per run directory ===========================================

LOCK = ".lock"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True


@contextlib.contextmanager
def locked(run: RunDir, note: Callable[[str], None] = lambda _: None) -> Iterator[None]:
    """Hold the run directory's lock (owner pid and host inside) for the block.

    A lock left by a process that no longer runs on this host is reported and taken over;
    a live owner, or an owner on another host (which cannot be checked), is refused.
    """
    path = run.root / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": _timestamp()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                owner = {}
            pid, host = owner.get("pid"), owner.get("host")
            if host == me["host"] and isinstance(pid, int) and not _process_alive(pid):
                note(f"{run.root}: removing a stale lock left by process {pid}, which is no "
                     "longer running")  # fmt: skip
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            raise UserError(
                f"{run.root}: in use by process {pid} on {host} (since "
                f"{owner.get('since', '?')}); one trainer per run directory. If that process "
                f"is gone, delete {path}."
            ) from None
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(me, handle)
        break
    else:
        raise UserError(f"{run.root}: could not take the lock {path}")
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def write_vocabulary(run: RunDir, vocabulary: dict) -> None:
    """The text vocabulary, with a SHA-256 beside it: it decides what every id means."""
    text = json.dumps(vocabulary, ensure_ascii=False)
    atomic_write_with_digest(run.vocabulary, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_vocabulary(run: RunDir) -> dict | None:
    """The run's vocabulary (verified), or None when its data is not text."""
    if not run.vocabulary.is_file():
        return None
    verify_digest(run.vocabulary)
    return read_json(run.vocabulary)

"""Every path and file name of a run directory, and how files get there safely.

    OUTPUT_DIR/NAME/YYYYMMDD-HHMMSS[-N]/
        config.yaml  environment.json  metrics.csv  tensorboard/  checkpoints/
        model.keras  summary.json  eval.json  export/

A run directory is never overwritten: a new run gets a new timestamped folder, and
`--run-dir` accepts only a new or empty folder. Files are written whole or not at all
(storage.py), and the files a run reads back are checked before use: a damaged or
edited one is a UserError naming it, never a traceback. No TensorFlow import.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import errno
import io
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bigmodel_cli.errors import UserError
from bigmodel_cli.run_dir.lock import LOCK, locked  # noqa: F401 - one trainer per run
from bigmodel_cli.run_dir.storage import (  # noqa: F401 - the run's writers, re-exported
    StorageError,
    append_text,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    atomic_write_with_digest,
    digest_path,
    file_mode,
    file_system_reason,
    remedy,
    sha256_of,
    verify_digest,
)

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
EXPORT = "export"  # bigmodel export's files: saved_model/, model*.tflite, export.json
EXPORT_REPORT = "export.json"


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory (`created`: this process made the folder)."""

    root: Path
    created: bool = field(default=False, compare=False)

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
    def export(self) -> Path:
        return self.root / EXPORT

    @property
    def vocabulary(self) -> Path:
        return self.root / VOCABULARY


def _timestamp() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def absolute(path: Path, what: str) -> Path:
    """`path` with `~` expanded, made absolute and resolved; `what` names it in errors."""
    try:
        return Path(path).expanduser().resolve()
    except RuntimeError as err:  # no home directory for `~`; a symlink loop (Python < 3.13)
        raise UserError(f"{what} {path}: {err}") from None
    except OSError as err:
        raise UserError(f"{what} {path}: {err.strerror}") from None


def _why_not(path: Path, err: OSError) -> str:
    """Why `path` cannot be made: a regular file where a folder must be is named."""
    if err.errno == errno.ENOTDIR:
        for parent in [path, *path.parents]:
            if parent.is_file():
                return f"{parent} is a file, not a folder"
    return err.strerror or str(err)


def create_run_dir(output_dir: Path, name: str, explicit: Path | None = None) -> RunDir:
    """Make a fresh run directory; never reuse one that holds anything."""
    if explicit is not None:
        return _explicit_run_dir(explicit)
    parent = absolute(output_dir, "output.dir") / name
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"output.dir: cannot create {parent}: {_why_not(parent, err)}") from None
    stamp = _timestamp()
    for attempt in range(1000):
        candidate = parent / (stamp if attempt == 0 else f"{stamp}-{attempt}")
        try:
            candidate.mkdir()  # atomic: fails if another run took the name first
        except FileExistsError:
            continue
        except OSError as err:
            raise UserError(f"output.dir: cannot create a run folder in {parent}: "
                            f"{_why_not(candidate, err)}") from None  # fmt: skip
        return RunDir(candidate, created=True)
    raise UserError(f"output.dir: could not find a free run folder under {parent}")


def _explicit_run_dir(given: Path) -> RunDir:
    path = absolute(given, "--run-dir")
    try:
        existed = path.exists()
        if existed and (not path.is_dir() or any(path.iterdir())):
            raise UserError(
                f"--run-dir {given}: exists and is not empty; bigmodel never overwrites a "
                "run. Give a new folder, or use --resume to continue that run."
            )
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"--run-dir {given}: cannot create it: {_why_not(path, err)}") from None
    return RunDir(path, created=not existed)


def discard(run: RunDir) -> None:
    """Remove a run directory whose setup failed: the folder when this process made it,
    else (an empty folder given with --run-dir) what was put in it."""
    if run.created:
        shutil.rmtree(run.root, ignore_errors=True)
        return
    with contextlib.suppress(OSError):
        for child in run.root.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink()


@contextlib.contextmanager
def removed_on_failure(run: RunDir, fresh: bool) -> Iterator[None]:
    """Setting up a `fresh` run directory: if anything fails (a full disk, a read-only
    folder, Ctrl-C), discard it, so no half-made run is left behind."""
    try:
        yield
    except StorageError as err:
        if not fresh:
            raise
        discard(run)
        removed = f"{run.root} was removed" if run.created else f"{run.root} was emptied"
        raise StorageError(err.path, err.reason, f"nothing is kept ({removed} again); "
                           f"{remedy(err.reason)} or choose another output.dir, then run the "
                           "same command again") from None  # fmt: skip
    except BaseException:
        if fresh:
            discard(run)
        raise


def make_folders(run: RunDir) -> None:
    """checkpoints/ and TensorBoard's train/ and validation/, made here so that they get
    the umask's mode (TensorFlow makes its folders 0755 whatever the umask)."""
    for folder in (run.checkpoints, run.tensorboard / "train", run.tensorboard / "validation"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StorageError(folder, file_system_reason(err)) from None


def is_run_dir(path: Path) -> bool:
    return (path / CONFIG).is_file()


def read_json(path: Path) -> dict[str, Any]:
    """A run's JSON file, which must hold one object; anything else is a UserError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text (byte {err.start}); not a file bigmodel "
                        "wrote") from None  # fmt: skip
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object, found a {type(data).__name__}; "
                        "not a file bigmodel wrote")  # fmt: skip
    return data


def write_vocabulary(run: RunDir, vocabulary: dict) -> None:
    """The text vocabulary, with a SHA-256 beside it: it decides what every id means."""
    text = json.dumps(vocabulary, ensure_ascii=False)
    atomic_write_with_digest(run.vocabulary, lambda tmp: tmp.write_text(text, encoding="utf-8"))


# What each kind of vocabulary.json holds (text_tokens.py's to_json): key -> element type.
VOCABULARY_FIELDS = {
    "byte": {"byte_values": int},
    "bpe": {"byte_values": int, "merges": list},
    "word": {"tokens": str},
    "character": {"tokens": str},
}


def _vocabulary_ok(data: dict) -> bool:
    fields = VOCABULARY_FIELDS.get(data.get("kind"))
    if fields is None:
        return False
    for key, kind in fields.items():
        values = data.get(key)
        if not isinstance(values, list) or not all(isinstance(v, kind) for v in values):
            return False
    pairs = data.get("merges", []) if data["kind"] == "bpe" else []
    return all(len(p) == 2 and all(isinstance(i, int) for i in p) for p in pairs)


def read_vocabulary(run: RunDir) -> dict | None:
    """The run's vocabulary (verified), or None when its data is not text."""
    if not run.vocabulary.is_file():
        return None
    verify_digest(run.vocabulary)
    data = read_json(run.vocabulary)
    if not _vocabulary_ok(data):
        raise UserError(
            f"{run.vocabulary}: not a vocabulary bigmodel wrote (kind "
            f"{str(data.get('kind'))[:40]!r}; expected one of {', '.join(VOCABULARY_FIELDS)} "
            "with its token lists); restore it: the run's token ids mean nothing without it"
        )
    return data


# === metrics.csv, as --resume needs it =======================================


def check_metrics(path: Path, epochs_done: int, backup: Path) -> None:
    """Refuse to resume onto a metrics.csv that was damaged or edited: it must be UTF-8
    CSV headed by `epoch`, each row whole and numeric, with a row for every one of the
    `epochs_done` epochs the backup has trained (rows of later epochs are redone)."""
    problem = _metrics_problem(path, epochs_done)
    if problem:
        raise UserError(
            f"{path}: {problem}; summary.json is made from it. Restore the file, or delete "
            f"{backup} to restart the run from its first step"
        )


def _metrics_problem(path: Path, epochs_done: int) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return f"missing, but the backup has trained {epochs_done} epochs" if epochs_done else None
    except UnicodeDecodeError as err:
        return f"not UTF-8 text (byte {err.start})"
    except OSError as err:
        return f"cannot read it ({err.strerror})"
    try:
        rows = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
    except csv.Error as err:
        return f"not CSV ({err})"
    if not rows:
        return f"empty, but the backup has trained {epochs_done} epochs" if epochs_done else None
    header, epochs = rows[0], set()
    if header[:1] != ["epoch"]:
        return "the first line is not the header bigmodel writes (epoch, metrics...)"
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            return f"line {line} has {len(row)} of the {len(header)} columns (truncated or edited)"
        if not row[0].isdigit() or not all(_is_number(cell) for cell in row[1:]):
            return f"line {line} holds something else than an epoch number and metric values"
        epochs.add(int(row[0]))
    missing = [e for e in range(1, epochs_done + 1) if e not in epochs]
    if missing:
        listed = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
        return f"no row for epoch {listed}, which the backup has trained"
    return None


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return cell == ""
    return True

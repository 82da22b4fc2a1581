"""How run files reach the disk: whole or not at all, with one mode, and every refusal
of the file system (a full disk, a read-only folder, no permission) as a message.

A file is written to a temporary name in its folder, flushed to disk and renamed over
the old one, so a crash or a full disk leaves the old file or the new one, never half
of one, and a failed write removes its temporary file. Files get the mode any program
would give them under the user's umask (0666 & ~umask), not tempfile's private 0600.
No TensorFlow import: TensorFlow's errors are recognised by their text.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bigmodel_cli.errors import UserError

# What TensorFlow's file writers (checkpoints, TensorBoard events) put in the text of the
# tf.errors they raise (ResourceExhaustedError, UnknownError, FailedPreconditionError,
# PermissionDeniedError) when the file system refuses a write.
FILE_SYSTEM_PHRASES = (
    "No space left on device",
    "Disk quota exceeded",
    "Read-only file system",
    "Permission denied",
    "File too large",
    "Input/output error",
)
DIGEST_SUFFIX = ".sha256"


class StorageError(UserError):
    """The file system refused to write `path`; the message says what is kept."""

    def __init__(self, path: Path, reason: str, kept: str | None = None):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path}: cannot write ({reason}); {kept or _kept(self.path)}")


def _kept(path: Path) -> str:
    try:
        existed = path.is_file()
    except OSError:
        existed = False
    return f"the previous {path.name} is unchanged" if existed else "nothing was written"


def file_system_reason(err: BaseException) -> str | None:
    """Why the file system refused, when `err` is such a refusal (else None): an OSError,
    a StorageError, or a TensorFlow error whose text names one."""
    if isinstance(err, StorageError):
        return err.reason
    if isinstance(err, OSError):
        return err.strerror or str(err) or type(err).__name__
    if type(err).__module__.startswith("tensorflow"):
        text = str(getattr(err, "message", err))
        return next((phrase for phrase in FILE_SYSTEM_PHRASES if phrase in text), None)
    return None


def remedy(reason: str) -> str:
    """What to do about a refusal: make room, or make the folder writable."""
    full = "space" in reason or "quota" in reason or "too large" in reason
    return "free some space" if full else "make the folder writable"


def umask() -> int:
    """The process's umask, read without changing it where Linux tells it."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but brief)
    os.umask(mask)
    return mask


def file_mode() -> int:
    return 0o666 & ~umask()


# === Whole files ==============================================================


def _write_temporary(path: Path, write: Callable[[Path], None]) -> Path:
    """`write(tmp)` into a temporary file beside `path`, flushed to disk. On any failure
    the temporary file is removed and `path` is untouched."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
        os.close(fd)
    except OSError as err:
        raise StorageError(path, file_system_reason(err)) from None
    tmp = Path(name)
    try:
        os.chmod(tmp, file_mode())
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        reason = file_system_reason(err)
        if reason is None:
            raise
        raise StorageError(path, reason) from None
    return tmp


def _put_in_place(tmp: Path, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StorageError(path, file_system_reason(err)) from None
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` on a temporary path beside `path`, fsync it, rename over `path`.
    A refusal of the file system is a StorageError; the old `path` stays as it was."""
    _put_in_place(_write_temporary(path, write), path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def append_text(path: Path, text: str) -> None:
    """Append `text` whole or not at all: a write the disk cuts short is truncated away,
    so metrics.csv never ends in half a row."""
    data = text.encode("utf-8")
    existed = path.exists()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # umask applies
    except OSError as err:
        raise StorageError(path, file_system_reason(err)) from None
    try:
        size = os.fstat(fd).st_size
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
    except OSError as err:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)
            if not existed:
                path.unlink()
        raise StorageError(path, file_system_reason(err), _kept(path)) from None
    finally:
        os.close(fd)


# === Integrity: a SHA-256 beside every model file ============================


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

    Both files are written whole before either is renamed into place, so a full disk
    leaves the old pair; only a kill between the two renames (microseconds) leaves a
    mismatch, which `verify_digest` reports rather than trusting the file.
    """
    tmp = _write_temporary(path, write)
    line = f"{sha256_of(tmp)}  {path.name}\n"
    try:
        tmp_digest = _write_temporary(
            digest_path(path), lambda t: t.write_text(line, encoding="utf-8")
        )
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _put_in_place(tmp, path)
    _put_in_place(tmp_digest, digest_path(path))


def verify_digest(path: Path) -> None:
    """Refuse a model file that is truncated, swapped or has no recorded digest."""
    recorded_path = digest_path(path)
    if not recorded_path.is_file():
        raise UserError(f"{path}: no {recorded_path.name} beside it; refusing to load a model "
                        "file whose integrity cannot be checked")  # fmt: skip
    try:
        recorded = recorded_path.read_text(encoding="utf-8").split()[:1]
        actual = sha256_of(path)
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise UserError(f"{path}: cannot check its SHA-256 ({reason})") from None
    if recorded != [actual]:
        raise UserError(f"{path}: SHA-256 does not match {recorded_path.name} (the file was "
                        "truncated or replaced); refusing to load it")  # fmt: skip

"""One trainer per run directory: the `.lock` file, with its owner's pid and host inside.

The lock is created whole (written to a temporary file, then hard-linked into place), so
a lock file bigmodel made is never empty: one that names no owner (empty, garbled) was
not left by a live bigmodel and is taken over, as is one whose owner process on this
host has died. A live owner, or an owner on another host (which cannot be checked), is
respected. No TensorFlow import.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from bigmodel_cli.errors import UserError
from bigmodel_cli.run_dir.storage import StorageError, file_mode, file_system_reason


class _Run(Protocol):
    root: Path


LOCK = ".lock"


def process_alive(pid: int) -> bool:
    """Whether process `pid` (on this host) is still running."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True


def _create_lock(path: Path, owner: dict) -> bool:
    """Create the lock file with `owner` in it, whole: written to a temporary file and
    hard-linked into place, so a lock file is never seen empty (False: one exists)."""
    text = json.dumps(owner)
    tmp = None
    try:
        fd, name = tempfile.mkstemp(prefix=f"{LOCK}.", dir=path.parent)
        tmp = Path(name)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, file_mode())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as err:  # a file system without hard links: create, then write
            if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, file_mode())
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
        return True
    except FileExistsError:
        return False
    except OSError as err:
        kept = "the run directory is unchanged"
        raise StorageError(path, file_system_reason(err), kept) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()


def _lock_owner(path: Path) -> dict | None:
    """The owner a lock file names ({"pid": int, "host": str, ...}), or None when it names
    none (empty, garbage: bigmodel never leaves such a file, see _create_lock)."""
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}  # released meanwhile: try again
    except (OSError, ValueError, RecursionError):
        return None
    valid = isinstance(owner, dict) and isinstance(owner.get("pid"), int)
    return owner if valid and isinstance(owner.get("host"), str) else None


def _stale(owner: dict | None, host: str) -> str | None:
    """Why a lock can be taken over (its owner is certainly gone), or None."""
    if owner is None:
        return "a lock file that names no owner (empty or garbled)"
    if not owner:
        return "a lock released meanwhile"
    if owner["host"] == host and not process_alive(owner["pid"]):
        return f"a stale lock left by process {owner['pid']}, which is no longer running"
    return None


@contextlib.contextmanager
def locked(run: _Run, note: Callable[[str], None] = lambda _: None) -> Iterator[None]:
    """Hold the run directory's lock (owner pid and host inside) for the block.

    A lock left by a process that no longer runs on this host, or one that names no owner,
    is reported and taken over; a live owner, or an owner on another host (which cannot
    be checked), is refused.
    """
    path = run.root / LOCK
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": dt.datetime.now().strftime("%Y%m%d-%H%M%S"),
    }
    for _ in range(3):
        if _create_lock(path, me):
            break
        owner = _lock_owner(path)
        why = _stale(owner, me["host"])
        if why is None:
            raise UserError(
                f"{run.root}: in use by process {owner['pid']} on {owner['host']} (since "
                f"{owner.get('since', '?')}); one trainer per run directory. If that process "
                f"is gone, delete {path}."
            )
        if owner != {}:
            note(f"{run.root}: removing {why}")
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    else:
        raise UserError(f"{run.root}: could not take the lock {path}")
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

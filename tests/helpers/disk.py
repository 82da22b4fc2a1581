"""Machinery for the hostile-input and full-disk tests: small tmpfs mounts (a real full
disk, a real read-only file system), filling one, damaging copies of a run directory."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

BACKUP = Path("checkpoints/backup/chief")


# === tmpfs ===================================================================


def mount_tmpfs(folder: Path, size: str) -> None:
    """Mount a tmpfs of `size` (e.g. "16m") at `folder`; skip the test where that is not
    permitted (it needs root, or CAP_SYS_ADMIN, as in CI's containers)."""
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs at {folder} (needs root or CAP_SYS_ADMIN): "
            f"{(result.stderr or result.stdout).strip()}"
        )


def remount(folder: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(folder)], check=True)


def unmount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@contextlib.contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    mount_tmpfs(folder, size)
    try:
        yield folder
    finally:
        unmount(folder)


FILLER = ".filler"


def fill(disk: Path) -> None:
    """Use every free block of the file system holding `disk` (ENOSPC from then on)."""
    with contextlib.suppress(OSError), open(disk / f"{FILLER}-{uuid.uuid4().hex}", "wb") as f:
        block = b"\0" * (1 << 16)
        while True:
            f.write(block)
            f.flush()
    for size in (4096, 512, 1):  # the last partial pages
        with contextlib.suppress(OSError):
            while True:
                with open(disk / f"{FILLER}-{uuid.uuid4().hex}", "wb") as f:
                    f.write(b"\0" * size)
                    f.flush()


def free(disk: Path) -> None:
    for path in disk.glob(f"{FILLER}-*"):
        path.unlink()


def free_bytes(disk: Path) -> int:
    stats = os.statvfs(disk)
    return stats.f_bavail * stats.f_frsize


class FillBefore:
    """Fill `disk` just before the `nth` write of a file named `target` (through
    bigmodel_cli.run_dir.storage), or when training reaches the named point `point:NAME`
    (bigmodel_cli.faults), so that write meets a real ENOSPC from the kernel."""

    def __init__(self, monkeypatch, disk: Path, target: str, nth: int = 1):
        from bigmodel_cli import faults, run_dir
        from bigmodel_cli.run_dir import storage

        self.disk, self.target, self.nth, self.seen = disk, target, nth, 0
        self.filled = False
        if target.startswith("point:"):
            point = faults.point

            def at_point(name: str, count: int | None = None) -> None:
                self._maybe(name, count, "point:")
                point(name, count)

            monkeypatch.setattr(faults, "point", at_point)
            return
        write, append = storage._write_temporary, storage.append_text

        def write_temporary(path: Path, writer: Callable) -> Path:
            self._maybe(path.name)
            return write(path, writer)

        def append_text(path: Path, text: str) -> None:
            self._maybe(path.name)
            append(path, text)

        monkeypatch.setattr(storage, "_write_temporary", write_temporary)
        monkeypatch.setattr(run_dir, "append_text", append_text)

    def _maybe(self, name: str, count: int | None = None, prefix: str = "") -> None:
        if self.filled or prefix + name != self.target:
            return
        self.seen += 1
        if (count if count is not None else self.seen) == self.nth:
            fill(self.disk)
            self.filled = True


# === Damage done to a copy of a run directory ================================
# Each returns a function of the run directory's path: the table stays declarative.


def copy_run(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination, symlinks=True)
    return destination


def write(relative: str, content: str | bytes) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())

    return damage


def delete(relative: str) -> Callable[[Path], None]:
    return lambda run: (run / relative).unlink()


def truncate(relative: str, keep: int) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / relative
        path.write_bytes(path.read_bytes()[:keep])

    return damage


def truncate_line(relative: str, line: int, keep: int) -> Callable[[Path], None]:
    """Cut the file in the middle of line `line` (from 1), `keep` characters into it."""

    def damage(run: Path) -> None:
        path = run / relative
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(lines[: line - 1]) + lines[line - 1][:keep])

    return damage


def keep_lines(relative: str, count: int) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / relative
        path.write_text("".join(path.read_text().splitlines(keepends=True)[:count]))

    return damage


def edit(relative: str, old: str, new: str) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / relative
        text = path.read_text()
        assert old in text, f"{old!r} not in {path}"
        path.write_text(text.replace(old, new, 1))

    return damage


def flip_byte(relative: str) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / relative
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))

    return damage


def edit_manifest(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / BACKUP / "manifest.json"
        manifest = json.loads(path.read_text())
        change(manifest)
        path.write_text(json.dumps(manifest))

    return damage


def rehash(relative: str) -> Callable[[Path], None]:
    """Record a changed file's new SHA-256 where bigmodel would look for it (a backup
    file in the manifest, a model or vocabulary file in its `.sha256`): what someone who
    rewrites a file on purpose would do."""

    def damage(run: Path) -> None:
        path = run / relative
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if path.parent == run / BACKUP:
            edit_manifest(lambda m: m["files"].__setitem__(path.name, digest))(run)
        else:
            path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")

    return damage


def all_of(*damages: Callable[[Path], None]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        for one in damages:
            one(run)

    return damage


def files_under(*roots: Path) -> set[Path]:
    return {p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()}

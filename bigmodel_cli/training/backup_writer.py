"""Writing the resume backup: one commit at a time, atomically (format: see backup.py).

The new files go under new names, then manifest.json is replaced (the commit point),
then the previous commit's files are deleted; a write the file system refuses leaves
the previous commit standing and gives its space back.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from bigmodel_cli import faults, run_dir
from bigmodel_cli.training.backup import MANIFEST, Commit, Position, folder_of, plain_name


class BackupWriter:
    """Commits backups of `checkpoint` (a tf.train.Checkpoint) into `backup`.

    `records=False` (a multi_worker worker that is not the chief) writes the checkpoint,
    which every worker must do, but no manifest, and keeps only the newest files.
    """

    def __init__(self, backup: Path, checkpoint: Any, records: bool, last: Commit | None,
                 config_sha256: str | None = None):  # fmt: skip
        self.folder = folder_of(backup)
        self.checkpoint = checkpoint
        self.records = records
        self.last = last or Commit()
        self.config_sha256 = config_sha256

    def start(self) -> None:
        """Record that no backup exists yet, so a later missing manifest means damage."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.records and not (self.folder / MANIFEST).exists():
            self._write_manifest(Commit(config_sha256=self.config_sha256))

    def commit(
        self,
        position: Position,
        state: dict[str, Any],
        finished: dict[str, Any] | None = None,
        carry: dict[str, np.ndarray] | None = None,
        attachments: dict[str, tuple[str, Any]] | None = None,
    ) -> Commit:
        """Commit a backup. `attachments`: role -> (file name, a function giving the
        arrays); a file the last commit already holds under that name is kept as it is."""
        sequence = self.last.sequence + 1
        try:
            commit = self._write(sequence, position, state, finished, carry, attachments)
        except Exception as err:  # a full disk, a read-only folder: the last commit stands
            reason = run_dir.file_system_reason(err)
            if reason is None:
                raise
            self._delete_uncommitted(keep=set(self.last.files))  # give the space back
            failed = getattr(err, "path", None) or self.folder / f"ckpt-{sequence}"
            raise run_dir.StorageError(failed, reason, self._kept()) from None
        self.last = commit
        self._delete_uncommitted(keep=set(commit.files))
        return commit

    def _write(self, sequence: int, position: Position, state: dict[str, Any],
               finished: dict[str, Any] | None, carry: dict[str, np.ndarray] | None,
               attachments: dict[str, tuple[str, Any]] | None) -> Commit:  # fmt: skip
        name = f"ckpt-{sequence}"
        self.folder.mkdir(parents=True, exist_ok=True)
        faults.point("backup_write", sequence)
        self.checkpoint.write(str(self.folder / name))
        files = {p.name: run_dir.sha256_of(p) for p in sorted(self.folder.glob(f"{name}.*"))}
        carry_name = None
        if carry:
            carry_name = f"carry-{sequence}.npz"
            path = self.folder / carry_name
            run_dir.atomic_write(path, lambda tmp: _save_npz(tmp, carry))
            files[carry_name] = run_dir.sha256_of(path)
        attached = {}
        for role, (file_name, arrays) in (attachments or {}).items():
            file_name = plain_name(file_name)
            path = self.folder / file_name
            if file_name in self.last.files and path.is_file():
                files[file_name] = self.last.files[file_name]  # unchanged since then
            else:
                run_dir.atomic_write(path, lambda tmp, a=arrays: _save_npz(tmp, a()))
                files[file_name] = run_dir.sha256_of(path)
            attached[role] = file_name
        commit = Commit(
            sequence, name, files, position, state, finished, carry_name, self.config_sha256,
            attached,
        )  # fmt: skip
        if self.records:
            faults.point("backup_before_manifest", sequence)
            self._write_manifest(commit)
            faults.point("backup_committed", sequence)
        return commit

    def _kept(self) -> str:
        last = self.last
        if last.checkpoint is None:
            return "no earlier backup exists"
        return f"the previous backup ({last.checkpoint}, after {last.position.description}) is kept"

    def _write_manifest(self, commit: Commit) -> None:
        run_dir.atomic_write_json(self.folder / MANIFEST, commit.to_json())

    def _delete_uncommitted(self, keep: set[str]) -> None:
        """Files of older commits (and of writes a kill interrupted) are not needed."""
        for path in self.folder.iterdir():
            if path.name != MANIFEST and path.name not in keep:
                with contextlib.suppress(OSError):
                    if path.is_dir():  # TensorFlow's `ckpt-N_temp/` of a failed write
                        shutil.rmtree(path)
                    else:
                        path.unlink()


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def remove(backup: Path) -> None:
    """Drop the whole backup once the run's final files are committed."""
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(backup)

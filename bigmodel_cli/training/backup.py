"""The resume backup: everything `--resume` needs, committed in one atomic step.

    checkpoints/backup/chief/
        ckpt-N.index  ckpt-N.data-00000-of-00001   weights, optimizer, random-number states
        carry-N.npz      running totals of the interrupted epoch's training metrics
        manifest.json    the commit: file names and SHA-256s, position, callback state

A backup is written the way orbax commits a checkpoint: the new files under new names,
then `manifest.json` replaced atomically (the commit point), then the previous backup's
files deleted. A kill at any instant leaves the previous commit or the new one, both
whole, and whatever the callbacks must remember (best value, early-stopping patience)
is part of the same commit, so it can never disagree with the weights.

`--resume` reads only the files the manifest names, from this folder, after checking
every digest, and only while `config.yaml` is the one the run was trained with.
TensorFlow's own `checkpoint` pointer file (which may hold an absolute path to anywhere)
is never read. The digests detect damage and mix-ups, not tampering: someone who can
write the run directory can also rewrite the manifest.

Under multi_worker every worker writes (reading mirrored and sync-on-read variables is a
collective), but only the chief's backup is recorded; the others write to a scratch
folder. Every worker restores from the chief's.

This module holds the format, where a resumed run stands (Position) and the reading of
a commit; backup_writer.py writes them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bigmodel_cli import run_dir
from bigmodel_cli.errors import UserError

FOLDER = "chief"  # backup/chief/: the chief's backup, which every worker restores from
MANIFEST = "manifest.json"
FORMAT = 2  # format 1: tf_keras BackupAndRestore's files plus a manifest of their digests
RESTART_HINT = "to restart the run from its first step instead, delete {folder}"


@dataclass(frozen=True)
class Position:
    """Where training stands: `step` steps of epoch `epoch` (both from 0) are done."""

    epoch: int = 0
    step: int = 0

    def normalized(self, steps_per_epoch: int) -> Position:
        """An epoch whose every step is done is the start of the next one (backups of
        bigmodel 0.1 could record that)."""
        if self.step >= steps_per_epoch:
            return Position(self.epoch + 1, 0)
        return self

    @classmethod
    def after_steps(cls, epoch: int, done: int, steps_per_epoch: int) -> Position:
        """Where training stands once `done` steps of `epoch` are trained (all of them:
        at the start of the next epoch)."""
        if done >= steps_per_epoch:
            return cls(epoch + 1, 0)
        return cls(epoch, done)

    def stream_start(self, steps_per_epoch: int, batches_per_epoch: int) -> tuple[int, int]:
        """(data epoch, batch in it) of the next batch: training epochs of
        `steps_per_epoch` steps are cut from a stream of whole data epochs."""
        return divmod(self.epoch * steps_per_epoch + self.step, batches_per_epoch)

    def counters(self, steps_per_epoch: int) -> tuple[int, int]:
        """(ckpt_saved_epoch, ckpt_saved_batch), the counters tf_keras's own format kept:
        the epoch, and the last step covered (read back by `_legacy_commit`)."""
        if self.step:
            return self.epoch, self.step - 1
        return self.epoch - 1, steps_per_epoch - 1

    @property
    def description(self) -> str:
        """`epoch 3, step 40` inside an epoch, `epoch 2` once an epoch is complete."""
        if self.step:
            return f"epoch {self.epoch + 1}, step {self.step}"
        return f"epoch {self.epoch}"


@dataclass(frozen=True)
class Commit:
    """What one manifest.json records."""

    sequence: int = 0
    checkpoint: str | None = None  # prefix of the checkpoint files, e.g. "ckpt-7"
    files: dict[str, str] = field(default_factory=dict)  # name -> SHA-256
    position: Position = Position()
    state: dict[str, Any] = field(default_factory=dict)  # callbacks' memory
    # Training ended ({"stop_reason", "final_weights"}); only the final files remain.
    finished: dict[str, Any] | None = None
    carry: str | None = None  # the metric totals file of an interrupted epoch
    config_sha256: str | None = None  # config.yaml as the run was trained with
    # Arrays the callbacks keep beside the weights (early stopping's best weights), by
    # role: the file holding them, rewritten only when its name (their version) changes.
    attachments: dict[str, str] = field(default_factory=dict)

    def normalized(self, steps_per_epoch: int) -> Commit:
        """This commit, its position counted in this run's epochs (see Position.normalized)."""
        return dataclasses.replace(self, position=self.position.normalized(steps_per_epoch))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "sequence": self.sequence,
            "checkpoint": self.checkpoint,
            "files": self.files,
            "position": {"epoch": self.position.epoch, "step": self.position.step},
            "state": self.state,
            "finished": self.finished,
            "carry": self.carry,
            "config_sha256": self.config_sha256,
            "attachments": self.attachments,
        }


def folder_of(backup: Path) -> Path:
    return backup / FOLDER


# === Reading a commit =========================================================


def read_commit(backup: Path, config: Path | None = None) -> Commit | None:
    """The verified last commit of `backup` (checkpoints/backup), or None before the first.

    Every problem is a UserError that names the file and what can be done, never a
    traceback: a truncated file, a digest that differs, a name outside the folder, a
    manifest that was deleted while checkpoint files remain, a changed config.yaml.
    """
    folder = folder_of(backup)
    path = folder / MANIFEST
    if not path.is_file():
        leftovers = sorted(p.name for p in folder.glob("ckpt-*")) if folder.is_dir() else []
        if leftovers:
            raise UserError(
                f"{folder}: backup files ({', '.join(leftovers[:3])}) but no {MANIFEST}, so "
                f"they cannot be verified; {RESTART_HINT.format(folder=backup)}"
            )
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        commit = _commit_from_json(data, folder)
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError) as err:
        raise UserError(
            f"{path}: unreadable ({type(err).__name__}: {err}); "
            + RESTART_HINT.format(folder=backup)
        ) from None
    _verify_files(folder, commit, backup)
    known = config is not None and commit.config_sha256 and config.is_file()
    if known and run_dir.sha256_of(config) != commit.config_sha256:
        raise UserError(
            f"{config}: changed since the run was trained with it (the backup was made "
            "for the original); restore it, or start a new run with `bigmodel train`"
        )
    _check_readable(folder, commit, backup)
    return commit


def _check_readable(folder: Path, commit: Commit, backup: Path) -> None:
    """Every tensor of the checkpoint reads back (TensorFlow checks each one's CRC), so a
    file rewritten with its digest recorded anew is refused before the run directory is
    touched, not halfway into fit(). It costs one more read, as the digests do."""
    if commit.checkpoint is None:
        return
    from bigmodel_cli.tfenv import import_tensorflow

    tf = import_tensorflow()
    try:
        reader = tf.train.load_checkpoint(str(folder / commit.checkpoint))
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except (tf.errors.OpError, ValueError) as err:
        text = " ".join(str(getattr(err, "message", err)).split())[:200]
        raise UserError(
            f"{folder}: backup {commit.checkpoint} cannot be read ({text}); "
            + RESTART_HINT.format(folder=backup)
        ) from None


def plain_name(name: Any) -> str:
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"{name!r} is not a file name inside the backup folder")
    return name


def _commit_from_json(data: dict, folder: Path) -> Commit:
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    files = {plain_name(k): str(v) for k, v in dict(data.get("files") or {}).items()}
    checkpoint = data.get("checkpoint")
    checkpoint = plain_name(checkpoint) if checkpoint is not None else None
    if data.get("format") != FORMAT:  # written by bigmodel before its own backup format
        return _legacy_commit(folder, checkpoint, files)
    position = data.get("position") or {}
    epoch, step = int(position.get("epoch", 0)), int(position.get("step", 0))
    if epoch < 0 or step < 0:
        raise ValueError(f"position {position} is negative")
    carry = data.get("carry")
    attachments = {str(k): plain_name(v) for k, v in dict(data.get("attachments") or {}).items()}
    return Commit(
        sequence=int(data.get("sequence", 0)),
        checkpoint=checkpoint,
        files=files,
        position=Position(epoch, step),
        state=dict(data.get("state") or {}),
        finished=dict(data["finished"]) if data.get("finished") else None,
        carry=plain_name(carry) if carry is not None else None,
        config_sha256=data.get("config_sha256"),
        attachments=attachments,
    )


def _legacy_commit(folder: Path, checkpoint: str | None, files: dict[str, str]) -> Commit:
    """A backup of tf_keras's BackupAndRestore (bigmodel 0.1's first format): the position
    is inside the checkpoint, the callbacks' memory in checkpoints/state.json."""
    if checkpoint is None:
        raise ValueError("no checkpoint named")
    from bigmodel_cli.tfenv import import_tensorflow

    tf = import_tensorflow()
    _verify_files(folder, Commit(checkpoint=checkpoint, files=files), folder.parent)
    reader = tf.train.load_checkpoint(str(folder / checkpoint))
    names = {n.split("/")[0]: n for n in reader.get_variable_to_shape_map()}
    epoch = int(reader.get_tensor(names["ckpt_saved_epoch"]))
    batch = int(reader.get_tensor(names["ckpt_saved_batch"]))
    state_path = folder.parent.parent / run_dir.STATE
    state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.is_file() else {}
    sequence = int(checkpoint.rsplit("-", 1)[-1]) if checkpoint.rsplit("-", 1)[-1].isdigit() else 0
    # Format 1 recorded the epoch and the last step it covered; -1: none of the epoch.
    return Commit(
        sequence=sequence,
        checkpoint=checkpoint,
        files=files,
        position=Position(max(0, epoch), max(-1, batch) + 1),
        state={k: state[k] for k in ("best", "early_stopping") if k in state},
    )


def _verify_files(folder: Path, commit: Commit, backup: Path) -> None:
    if commit.checkpoint is None:
        return
    expected = {f"{commit.checkpoint}.index"}
    if not expected <= set(commit.files) or not any(
        n.startswith(f"{commit.checkpoint}.data-") for n in commit.files
    ):
        raise UserError(
            f"{folder / MANIFEST}: does not list the files of {commit.checkpoint}; "
            + RESTART_HINT.format(folder=backup)
        )
    for name, digest in commit.files.items():
        path = folder / name
        if not path.is_file():
            raise UserError(
                f"{path}: missing (the backup's manifest lists it); "
                + RESTART_HINT.format(folder=backup)
            )
        if run_dir.sha256_of(path) != digest:
            raise UserError(
                f"{folder}: backup {commit.checkpoint} does not match {MANIFEST} ({name} was "
                f"changed, truncated or replaced); refusing to resume from it; "
                + RESTART_HINT.format(folder=backup)
            )


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as arrays:
        return {name: arrays[name] for name in arrays.files}


def read_carry(backup: Path, commit: Commit) -> dict[str, np.ndarray]:
    """The metric totals an interrupted epoch had reached (already digest-checked)."""
    return _read_npz(folder_of(backup) / commit.carry) if commit.carry else {}


def read_attachment(backup: Path, commit: Commit, role: str) -> dict[str, np.ndarray] | None:
    """The arrays a callback attached to the commit (already digest-checked), or None."""
    name = commit.attachments.get(role)
    return _read_npz(folder_of(backup) / name) if name else None

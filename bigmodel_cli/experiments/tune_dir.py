"""Every path and file name of a tune directory.

    OUTPUT_DIR/NAME/tune-YYYYMMDD-HHMMSS[-N]/
        journal.log     Optuna's journal: the study, every trial's values and state (resume
                        reads only this)
        tune.json       the search as a report: settings, every trial, the best
        best.yaml       the best trial's full config, ready for `bigmodel train`
        trial-000/ ...  one ordinary run directory per trial
        .lock           held by the `bigmodel tune` working in it

Like a run directory, a tune directory is never overwritten: each search gets a new one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from bigmodel_cli.errors import UserError

JOURNAL = "journal.log"
REPORT = "tune.json"
BEST = "best.yaml"
PREFIX = "tune-"


@dataclass(frozen=True)
class TuneDir:
    root: Path

    @property
    def journal(self) -> Path:
        return self.root / JOURNAL

    @property
    def report(self) -> Path:
        return self.root / REPORT

    @property
    def best(self) -> Path:
        return self.root / BEST

    def trial(self, number: int) -> Path:
        return self.root / trial_name(number)


def trial_name(number: int) -> str:
    return f"trial-{number:03d}"


def is_tune_dir(path: Path) -> bool:
    return (path / JOURNAL).is_file()


def create(output_dir: Path, name: str) -> TuneDir:
    """A new `tune-<timestamp>` folder under OUTPUT_DIR/NAME (made atomically, so two
    searches started in the same second get different folders)."""
    parent = output_dir / name
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"output.dir: cannot create {parent}: {err.strerror}") from None
    stamp = PREFIX + dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for attempt in range(1000):
        candidate = parent / (stamp if attempt == 0 else f"{stamp}-{attempt}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return TuneDir(candidate)
    raise UserError(f"output.dir: could not find a free tune folder under {parent}")

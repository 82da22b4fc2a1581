"""Errors that are the user's to fix: the CLI prints their problems and exits 2."""

from __future__ import annotations

from collections.abc import Iterable


class UserError(Exception):
    """Bad input (config, data, arguments). `problems` holds one readable line each."""

    def __init__(self, problems: Iterable[str] | str):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(dict.fromkeys(problems))  # keep order, drop repeats
        super().__init__("\n".join(self.problems))


class ConfigError(UserError):
    """The config file, its `base:` or a `--set` override is wrong."""


class DataError(UserError):
    """The data the config points at cannot be used as asked."""


class Interrupted(Exception):
    """SIGINT/SIGTERM stopped training after saving a backup: exit 128 + signal number."""

    def __init__(self, signal_number: int, message: str):
        super().__init__(message)
        self.signal_number = signal_number


class TrainingFailed(Exception):
    """Training ran but failed (e.g. the loss became NaN): exit code 1."""

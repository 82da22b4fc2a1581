"""SIGINT and SIGTERM during training: stop after the graph call under way, with a backup.

The handler only records the signal (StopRequest); ResumeBackup reads it after every
call into the training graph, commits a backup and raises StoppedBySignal to leave
fit() at once. A second signal stops at once (KeyboardInterrupt).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from bigmodel_cli import console


class StopRequest:
    """Set by the SIGINT/SIGTERM handler; read after every call into the training graph."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.honoured = False  # training stopped because of it, after a backup


class StoppedBySignal(Exception):  # noqa: N818 - raised to leave fit() at once
    """Raised from a callback after the backup: fit() ends at once, without the validation
    pass and epoch-end callbacks Keras would run after `stop_training`."""


@contextlib.contextmanager
def stop_on_signals(stop: Any) -> Iterator[None]:
    """SIGINT and SIGTERM ask training to stop after the graph call under way, with a
    backup (ResumeBackup reads `stop`); a second signal stops at once (KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return

    def request(signum: int, frame: Any) -> None:
        if stop.signal is not None:
            raise KeyboardInterrupt
        stop.signal = signum
        console.note(
            f"{signal.Signals(signum).name}: saving a backup at the next step, then stopping "
            "(Ctrl-C again to stop at once)"
        )

    previous = {}
    for number in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(number) is not signal.SIG_IGN:  # e.g. under nohup: keep ignoring
            previous[number] = signal.signal(number, request)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)

"""Named points where the tests stop a run, to prove a kill anywhere loses nothing.

`BIGMODEL_KILL_AT=NAME[:N[:SIGNAL]]` makes the process send itself SIGNAL (default KILL,
as a power cut or the OOM killer would stop it: no cleanup, no `finally`) the N-th time
(default 1st) it reaches the point NAME. `TERM` or `INT` instead test what a scheduler's
preemption or a Ctrl-C at exactly that moment does. Unset (always, outside the tests) a
point costs one environment lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "BIGMODEL_KILL_AT"
_reached: dict[str, int] = {}


def point(name: str, count: int | None = None) -> None:
    """Signal this process here if the environment asks for it (see the docstring).

    `count` replaces the per-process count where a point has a number of its own that
    survives a resume (a backup's sequence number), so a chain of kill-and-resume can
    name each backup of the run once.
    """
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    target, _, rest = wanted.partition(":")
    if target != name:
        return
    nth, _, signame = rest.partition(":")
    _reached[name] = _reached.get(name, 0) + 1
    if (count if count is not None else _reached[name]) == int(nth or 1):
        os.kill(os.getpid(), getattr(signal, f"SIG{signame or 'KILL'}"))

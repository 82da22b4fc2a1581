"""Running one broken config through the CLI: the scratch folder every input is written
to, the input itself (`BadInput`), and the checks every answer must pass (exit code 2,
`error:` lines, no traceback, quick, no run folder).

The CLI runner is module level, not the `runner` fixture: Hypothesis runs many examples
per test, and a function-scoped fixture would be shared between them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, settings
from typer.testing import CliRunner

from bigmodel_cli.cli import app
from tests.helpers import no_traceback

RUNNER = CliRunner()
CASE = Path(tempfile.mkdtemp(prefix="bigmodel-fuzz-")) / "case"  # emptied for every input
RUNS = CASE / "runs"  # output.dir of every base config; CASE is also the working directory
TRIED: Counter[tuple[str, str]] = Counter()  # (command, kind of corruption) -> inputs run
SECONDS = 5.0  # a robustness bound (config errors answer in milliseconds), not a benchmark
# No answer within this long is a hang. Not a timing check of each input: on a loaded
# 2-core machine (the other pytest-xdist worker training) one took 16 s to print its error.
HANG_SECONDS = 60.0


def dump(document: Any) -> bytes:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True).encode("utf-8")


# === running one input ======================================================


@dataclass
class BadInput:
    kind: str
    files: dict[str, bytes]  # written into CASE; `config.yaml` is given to the command
    args: list[str] = field(default_factory=list)  # more arguments (--set ...)


def as_input(kind: str, document: Any, args: list[str] | None = None) -> BadInput:
    return BadInput(kind, {"config.yaml": dump(document)}, args or [])


class Hang(BaseException):
    """Raised by the watchdog; a BaseException so that no `except Exception` swallows it."""


@contextlib.contextmanager
def watchdog(seconds: float):
    """Fail instead of hanging the test session when an input makes the CLI loop."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum, frame):
        raise Hang(f"no answer within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_bad_input(command: str, bad: BadInput):
    """Run one input; assert exit 2, `error:` lines, no traceback, an answer, no run folder."""
    shutil.rmtree(CASE, ignore_errors=True)
    CASE.mkdir(parents=True)
    for name, content in bad.files.items():
        (CASE / name).write_bytes(content)
    flags = ["--no-build"] if command == "validate" else []
    args = [command, *flags, str(CASE / "config.yaml"), *bad.args]
    shown = f"{bad.kind}: {args[1:]!r}\n{bad.files!r}"[:3000]
    cwd = os.getcwd()
    os.chdir(CASE)  # a relative output.dir would land here
    try:
        with watchdog(HANG_SECONDS):
            result = RUNNER.invoke(app, args)
    except Hang as err:
        raise Hang(f"{err}\n{shown}") from None
    finally:
        os.chdir(cwd)
    TRIED[command, bad.kind] += 1
    shown += f"\n--- output:\n{result.output}"
    assert result.exit_code == 2, shown
    assert result.exception is None or isinstance(result.exception, SystemExit), shown
    assert any(line.startswith("error: ") for line in result.stderr.splitlines()), shown
    assert no_traceback(result.output), shown
    assert sorted(p.name for p in CASE.iterdir()) == sorted(bad.files), shown  # no run dir
    return result


FUZZ = settings(
    deadline=None,  # the watchdog catches a hang; time per input is not what is tested
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

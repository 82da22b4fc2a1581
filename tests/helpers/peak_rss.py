"""Peak resident memory of a `bigmodel` child process, as the process itself saw it."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from tests.helpers import forkserver

KILL_ABOVE = 4e9  # a regression must not take the shared machine down with it


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    peak_rss: int  # bytes: the process's own high-water mark (VmHWM)


# The CLI, reporting its VmHWM as it exits. Not wait4's ru_maxrss: exec keeps the
# parent's high-water mark, so every child of a test process holding TensorFlow would
# seem to be that large.
CLI = """
import atexit, os, sys
def report():
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM"))
    os.write(2, f"\\npeak-rss-kb: {peak}\\n".encode())
atexit.register(report)
sys.argv = ["bigmodel", *sys.argv[1:]]
from bigmodel_cli.cli import main
main()
"""


def run_measured(
    *args: str, timeout: float = 600, env: dict | None = None, fork: bool = False
) -> Run:
    """Run `bigmodel ARGS...`; killed above KILL_ABOVE (watched every 50 ms).

    `fork`: a child of the fork server (tests/helpers/forkserver.py), TensorFlow already
    imported; its peak is counted from the fork, so compare it only with forked runs.
    """
    output, watched, readers = {}, 0, []
    if fork:
        process = forkserver.start(*args, env=env, report_peak_rss=True)
    else:
        process = subprocess.Popen(
            [sys.executable, "-c", CLI, *args], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        readers = [
            threading.Thread(target=lambda n=n, f=f: output.__setitem__(n, f.read()))
            for n, f in (("out", process.stdout), ("err", process.stderr))
        ]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        rss, peak = status_field(process.pid, "VmRSS"), status_field(process.pid, "VmHWM")
        watched = max(watched, peak)
        if rss > KILL_ABOVE or time.monotonic() > deadline:
            process.kill()
        time.sleep(0.05)
    for reader in readers:
        reader.join()
    if fork:
        output["out"], output["err"] = process.communicate()
    stderr, _, reported = output["err"].rpartition("\npeak-rss-kb: ")
    if not reported.strip().isdigit():  # killed: what the watch saw
        return Run(process.returncode, output["out"], output["err"], watched)
    return Run(process.returncode, output["out"], stderr, int(reported) * 1024)


def status_field(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith(field))
    except (OSError, StopIteration, ValueError):
        return 0

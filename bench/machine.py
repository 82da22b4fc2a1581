"""What the bench ran on, and how busy the machine was with other work meanwhile.

Other processes on a 2-core machine take cores away from every run; the bench cannot
stop them, so it measures and reports their share instead of hiding it.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from importlib import metadata
from pathlib import Path

BF16_MATRIX_FLAGS = ("amx_bf16", "avx512_bf16")


def cpuinfo_field(name: str) -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(name):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _busy_seconds() -> float | None:
    """CPU seconds all processes have used since boot (every core), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    """CPU seconds of this process and the bench's finished child processes."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


class LoadMeter:
    """The share of the machine's CPU time that went to other processes during the bench."""

    def __init__(self) -> None:
        self.start = (time.perf_counter(), _busy_seconds(), _own_seconds())
        self.load_before = os.getloadavg()

    def finish(self) -> dict:
        wall, busy, own = time.perf_counter(), _busy_seconds(), _own_seconds()
        result = {
            "load_average_before": [round(v, 2) for v in self.load_before],
            "load_average_after": [round(v, 2) for v in os.getloadavg()],
        }
        if busy is not None and self.start[1] is not None:
            capacity = (wall - self.start[0]) * (os.cpu_count() or 1)
            other = (busy - self.start[1]) - (own - self.start[2])
            result["other_processes_cpu_share"] = round(max(0.0, other) / capacity, 3)
        return result


def has_bf16_matrix_units() -> bool:
    return any(flag in cpuinfo_field("flags").split() for flag in BF16_MATRIX_FLAGS)


def describe(load: dict) -> dict:
    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    bf16 = has_bf16_matrix_units()
    return {
        "cpu": cpuinfo_field("model name") or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "bf16_matrix_units": bf16,
        "precision_note": "bf16 matrix units" if bf16 else "no bf16 matrix units: AVX2 only",
        "python": platform.python_version(),
        "tensorflow": version("tensorflow"),
        "tf_keras": version("tf-keras"),
        **load,
    }

"""Speed decisions and measurements: steps per execution, bf16 on CPUs, peak FLOP/s, MFU.

Model FLOPs utilization (MFU) = achieved model FLOP/s / the device's peak, where
achieved = 3 x forward FLOPs per example (forward + backward) x examples per second, and
the peak is measured once per machine, precision and TensorFlow version with a large
matrix product, then cached in ~/.cache/bigmodel/peak_flops.json.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path

from bigmodel_cli.cache import cache_root
from bigmodel_cli.tfenv import import_tensorflow

# One call into the graph costs ~0.3-1 ms of Python and runtime overhead. Bundling steps
# until each call does ~2.5 GFLOP (tens of ms on a CPU) makes that overhead negligible.
TARGET_FLOPS_PER_EXECUTION = 2.5e9
MAX_STEPS_PER_EXECUTION = 1000
# A signal is read between calls into the graph: with steps_per_execution auto, calls
# that take longer than this are shortened (callbacks.ExecutionBound).
MAX_SECONDS_PER_EXECUTION = 0.5
TRAIN_FLOPS_PER_FORWARD = 3  # backward ~ 2x forward
# Below this much work per step, bfloat16's casts cost more than its faster matmuls save.
BF16_MIN_FLOPS_PER_STEP = 5e9
PEAK_MATRIX_SIZE = 2048


def auto_steps_per_execution(flops_per_example: int, batch_size: int, steps_per_epoch: int) -> int:
    """Steps per graph call so that small models are not dominated by per-call overhead."""
    per_step = max(1.0, TRAIN_FLOPS_PER_FORWARD * flops_per_example * batch_size)
    wanted = math.ceil(TARGET_FLOPS_PER_EXECUTION / per_step)
    return max(1, min(wanted, steps_per_epoch, MAX_STEPS_PER_EXECUTION))


def cpu_has_bf16_matmul() -> bool:
    """True on CPUs with bfloat16 matrix instructions (Intel AMX, AVX-512 BF16)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return bool({"amx_bf16", "avx512_bf16"} & set(flags.split()))


def bf16_pays_off(flops_per_example: int, batch_size: int) -> bool:
    return TRAIN_FLOPS_PER_FORWARD * flops_per_example * batch_size >= BF16_MIN_FLOPS_PER_STEP


def _cache_path() -> Path:
    return cache_root() / "peak_flops.json"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _device_key(device: str, dtype: str) -> str:
    tf = import_tensorflow()
    kind = _cpu_model() if "CPU" in device.upper() else device
    threads = os.cpu_count()
    return f"tf{tf.__version__}|{kind}|{threads} threads|{dtype}"


def measure_peak_flops(device: str, dtype: str, size: int = PEAK_MATRIX_SIZE) -> float:
    """FLOP/s of a large matrix product on `device` in `dtype`, best of a few runs."""
    tf = import_tensorflow()
    with tf.device(device):
        a = tf.random.normal((size, size), dtype=tf.float32)
        b = tf.random.normal((size, size), dtype=tf.float32)
        a, b = tf.cast(a, dtype), tf.cast(b, dtype)
        matmul = tf.function(lambda x, y: tf.reduce_sum(tf.cast(tf.linalg.matmul(x, y)[0, 0],
                                                                 tf.float32)))  # fmt: skip
        matmul(a, b).numpy()  # trace and warm up
        best = math.inf
        for _ in range(5):
            start = time.perf_counter()
            matmul(a, b).numpy()
            best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def peak_flops(device: str, precision: str) -> float:
    """The cached peak for this machine and precision, measured on first use."""
    dtype = {"mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}.get(precision, "float32")
    path = _cache_path()
    key = _device_key(device, dtype)
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if key not in cache:
        cache[key] = measure_peak_flops(device, dtype)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cache, indent=2))
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only home only costs a re-measurement next time
    return float(cache[key])


def model_flops_utilization(flops_per_example: int, examples_per_second: float,
                            peak: float) -> float:  # fmt: skip
    if peak <= 0:
        return 0.0
    return TRAIN_FLOPS_PER_FORWARD * flops_per_example * examples_per_second / peak

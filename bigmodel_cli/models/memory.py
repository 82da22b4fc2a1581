"""The memory a config needs, estimated before anything is allocated, and refused when
it cannot fit in the memory available.

What is counted, in bytes (1 MB = 10^6 bytes, 1 GB = 10^9):
- **weights**: every variable of the real model, built symbolically (memory_layers.py:
  nothing is allocated), 4 bytes each (variables stay float32 under mixed precision),
  x WEIGHT_COPIES for the copies made while initializing, saving checkpoints and
  reloading `model.keras` for the test score; plus the position tables of transformers.
- **optimizer**: for each trainable weight, the optimizer's slots (OPTIMIZER_SLOTS) and
  one gradient.
- **activations**, for one batch: each layer's output, the attention scores (heads x
  queries x keys) of each attention layer and the gate values of recurrent layers
  (steps x units x gates), x batch size x bytes of the layer's compute dtype, each x
  what training keeps of it for the backward pass (ACTIVATION_FACTORS).
- **data**: the arrays `load_data` holds, with the copies made while reading, splitting
  and normalizing them and tf.data's (memory_data.py); synthetic data from the config's
  counts, before any example is generated.
- **runtime**: what Keras's training machinery adds whatever the model (traced
  functions, kernels, the data pipeline): RUNTIME_BASE + RUNTIME_PER_OP per op of the
  forward graph; PRUNE_RUNTIME more with `compress.prune` (tfmot's import and its mask
  updates).

The total is what the config adds on top of a process that has imported TensorFlow
(0.8 GB on CPU, not counted), compared with the memory available at that moment:
MemAvailable, or what the cgroup's limit leaves if that is less, and a GPU's free memory
for the model's part when training runs on GPUs. `BIGMODEL_MEMORY_LIMIT` (bytes, or e.g.
`64GB`) replaces the measured figure. The factors are least-squares fits to the peak RSS
of 23 short training runs (the shipped configs and nine made to stress one term each:
wide MLP, wide CNN, long attention, long LSTM, large synthetic data of every kind) on
TF 2.21 CPU, float32; with the rounded constants below every one of them is estimated
at 0.88-1.16x its measured peak. tests/models/test_memory.py holds the shipped configs to a
factor of 2.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bigmodel_cli.config import Config
from bigmodel_cli.errors import ConfigError, UserError
from bigmodel_cli.tfenv import import_tensorflow

WEIGHT_BYTES = 4
WEIGHT_COPIES = 5  # fitted 4.75
# Per example value, what training keeps (fitted): TF fuses or frees some layer
# outputs (0.68), keeps a little more than the attention probabilities (1.2), and about
# one value per gate and step of a recurrent layer (4.4 per LSTM unit-step).
ACTIVATION_FACTORS = {"output": 0.7, "attention": 1.2, "recurrent": 1.1}
RUNTIME_BASE = 50_000_000  # fitted 48.7 MB
RUNTIME_PER_OP = 150_000  # fitted 156 KB: traced functions grow with the forward graph
# Measured: digits_prune.yaml's peak is 44 MB above digits_cnn.yaml's, the same model
# (tensorflow-model-optimization with scipy and dm-tree imported, the mask-update ops).
PRUNE_RUNTIME = 45_000_000
# Per weight: slots (Keras's optimizers) + 1 gradient (optimizer_copies).
OPTIMIZER_SLOTS = {
    "sgd": 0, "adagrad": 1, "adadelta": 2, "adam": 2, "adamw": 2, "nadam": 2, "adamax": 2,
    "rmsprop": 1,
}  # fmt: skip


def format_bytes(n: float) -> str:
    """`40 GB`, `1.2 MB`: two significant digits below 10, whole numbers above."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            value = n / size
            return f"{value:.1f} {unit}" if value < 10 else f"{value:,.0f} {unit}"
    return f"{int(n)} bytes"


# === Memory available ========================================================


class DoesNotFit(ConfigError):
    """The config needs more memory than there is (exit 2, like every config error)."""


@dataclass(frozen=True)
class Available:
    bytes: int | None  # None: unknown (no /proc/meminfo), nothing is refused
    where: str  # "this machine", "this container (cgroup limit)", "GPU:0"
    devices: int = 1  # GPUs sharing the batch (each holds the weights, a slice of it)


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().split()[0]
    except (OSError, IndexError):
        return None
    return int(text) if text.isdigit() else None


def _mem_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_room() -> int | None:
    """What the cgroup's memory limit leaves (v2, else v1), or None without a limit."""
    for folder, limit_name, usage_name in (
        ("/sys/fs/cgroup", "memory.max", "memory.current"),
        ("/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes"),
    ):
        limit_file, usage_file = f"{folder}/{limit_name}", f"{folder}/{usage_name}"
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 1 << 60:  # "max": no limit
            return max(0, limit - usage)
    return None


def parse_size(text: str) -> int | None:
    """`64GB`, `512 MB`, `1e9`, `1073741824` -> bytes (decimal units), else None."""
    match = re.fullmatch(r"\s*([0-9.eE+]+)\s*([KMGT]?)B?\s*", text, re.IGNORECASE)
    if not match:
        return None
    number = match.group(1)
    if not re.fullmatch(r"\d+(\.\d*)?([eE]\+?\d+)?|\.\d+", number):
        return None
    value = float(number)
    scale = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}[match.group(2).upper()]
    return int(value * scale) if math.isfinite(value) and value >= 0 else None


@functools.cache
def host_available() -> Available:
    """Host memory available now; measured once per process, before the data exists."""
    given = os.environ.get("BIGMODEL_MEMORY_LIMIT")
    if given:
        if parse_size(given) is None:
            raise UserError(
                f"BIGMODEL_MEMORY_LIMIT: {given!r} is not a size; expected bytes or a number "
                "with KB, MB, GB or TB (e.g. 64GB), or unset it to use the memory available"
            )
        return Available(parse_size(given), "BIGMODEL_MEMORY_LIMIT")
    free, room = _mem_available(), _cgroup_room()
    if room is not None and (free is None or room < free):
        return Available(room, "this container (cgroup limit)")
    return Available(free, "this machine")


def device_available(devices: list[str]) -> Available | None:
    """The smallest free memory of the GPUs training runs on, or None on CPUs."""
    gpus = [d for d in devices if "GPU" in d.upper()]
    if not gpus or os.environ.get("BIGMODEL_MEMORY_LIMIT"):
        return None
    try:
        tf = import_tensorflow()
        from tensorflow.python.client import device_lib  # noqa: TID251 - not in the public API

        limits = {d.name.split("device:")[-1]: d.memory_limit
                  for d in device_lib.list_local_devices() if d.device_type == "GPU"}  # fmt: skip
        info = tf.config.experimental.get_memory_info
        free = [(limit - info(name)["current"], name) for name, limit in limits.items()]
    except (ImportError, ValueError, RuntimeError, KeyError):
        return None
    return Available(*min(free), len(free)) if free else None


# === Before the data exists ==================================================


def check_before_data(
    cfg: Config, precision: str = "float32", devices: list[str] | None = None
) -> None:
    """Exit 2 (ConfigError) before reading or generating data, when what the config
    says about it already cannot fit: synthetic data is known from its counts, so its
    model is estimated too (an example of 100,000 tokens fits, its attention may not)."""
    from bigmodel_cli.models import memory_data

    part = memory_data.synthetic_data(cfg)
    room = host_available()
    if part is None or room.bytes is None:
        return
    if part.bytes > room.bytes:
        raise DoesNotFit(
            f"{part.key}: {part.what} need ~{format_bytes(part.bytes)} to generate and hold; "
            f"{room.where} has {format_bytes(room.bytes)} available. Use fewer or smaller "
            "examples (data.examples, data.features, data.image_shape, data.sequence_length)."
        )
    spec = memory_data.synthetic_spec(cfg)
    if spec is None:
        return  # the config and its data do not fit together: load_data says how
    try:
        with measured_model(cfg, spec, None, precision, devices):
            pass
    except DoesNotFit:
        raise
    except UserError:
        pass  # the model does not fit the data: reported with every other problem later


# === The estimate ============================================================


@dataclass
class Estimate:
    """The parts of the estimate, and what each config key contributes."""

    weights: int
    optimizer: int
    activations: int
    data: int
    runtime: int
    batch_size: int
    what: dict[str, str] = field(default_factory=dict)  # key -> "100,000,000 units"
    parts_of: dict[str, dict[str, int]] = field(default_factory=dict)  # key -> part -> bytes
    data_key: str = "data"
    data_what: str = ""

    @property
    def model(self) -> int:
        return self.weights + self.optimizer + self.activations

    @property
    def total(self) -> int:
        return self.model + self.data + self.runtime

    def breakdown(self) -> str:
        return (
            f"weights {format_bytes(self.weights)}, optimizer {format_bytes(self.optimizer)}, "
            f"activations {format_bytes(self.activations)} per batch of {self.batch_size:,}, "
            f"data {format_bytes(self.data)}, runtime {format_bytes(self.runtime)}"
        )

    def to_json(self, available: Available) -> dict[str, Any]:
        """What validate --json shows (and `summary_line` reads)."""
        return {
            "weights": self.weights,
            "optimizer": self.optimizer,
            "activations": self.activations,
            "data": self.data,
            "runtime": self.runtime,
            "batch_size": self.batch_size,
            "available": available.bytes,
            "available_where": available.where,
        }


def summary_line(memory: dict[str, Any]) -> str:
    """`memory: ~123 MB (weights ..., ...) of 21 GB available`, from `Estimate.to_json`."""
    parts = ("weights", "optimizer", "activations", "data", "runtime")
    est = Estimate(*(memory[part] for part in parts), memory["batch_size"])
    line = f"memory: ~{format_bytes(est.total)} ({est.breakdown()})"
    room, where = memory["available"], memory["available_where"]
    if room is None:
        return f"{line}; memory available unknown"
    return f"{line} of {format_bytes(room)} available" + (
        "" if where == "this machine" else f" ({where})"
    )


def optimizer_copies(cfg: Config) -> int:
    """Values the optimizer keeps per trainable weight: its slots and the gradient."""
    opt = cfg.optimizer
    slots = OPTIMIZER_SLOTS[opt.name]
    if opt.name == "sgd" and opt.momentum:
        slots = 1
    if opt.name == "rmsprop":
        slots += bool(opt.momentum) + bool(opt.centered)
    if opt.name in ("adam", "adamw") and opt.amsgrad:
        slots += 1
    return slots + 1


@contextlib.contextmanager
def measured_model(cfg: Config, spec: Any, bundle: Any, precision: str = "float32",
                   devices: list[str] | None = None) -> Iterator[tuple[Any, Estimate]]:  # fmt: skip
    """The config's model built symbolically (nothing allocated) and its estimate; a
    ConfigError (exit 2) naming the keys responsible when it does not fit."""
    from bigmodel_cli.models import memory_data, memory_layers

    _refuse_before_building(cfg, spec, memory_layers)
    with memory_layers.symbolic_model(cfg, spec, precision) as model:
        est = _estimate(cfg, memory_layers.layer_costs(model, cfg, spec), memory_layers.graph_ops())
        part = memory_data.data_bytes(cfg, bundle)
        est.data, est.data_key = part.bytes, part.key
        est.data_what = part.what or f"{format_bytes(part.held)} of examples"
        problems = refusal(est, host_available(), device_available(devices or []))
        if problems:
            raise DoesNotFit(problems)
        yield model, est


def _refuse_before_building(cfg: Config, spec: Any, memory_layers: Any) -> None:
    room = host_available()
    per_weight = WEIGHT_BYTES * (WEIGHT_COPIES + optimizer_copies(cfg))
    if room.bytes is None:
        return
    for key, needed, what in memory_layers.prebuild_costs(cfg, spec, per_weight):
        if needed > room.bytes:
            raise DoesNotFit(
                f"{key}: {what} ~{format_bytes(needed)} before the model can be built; "
                f"{room.where} has {format_bytes(room.bytes)} available. Lower {key}."
            )


def check(cfg: Config, spec: Any, bundle: Any, precision: str, devices: list[str]) -> Estimate:
    """The estimate of training `cfg`; ConfigError (exit 2) when it does not fit."""
    with measured_model(cfg, spec, bundle, precision, devices) as (_, est):
        return est


def _estimate(cfg: Config, costs: list[Any], ops: int) -> Estimate:
    batch = cfg.data.batch_size
    copies = optimizer_copies(cfg)
    runtime = RUNTIME_BASE + RUNTIME_PER_OP * ops
    if cfg.compress is not None and cfg.compress.prune is not None:
        runtime += PRUNE_RUNTIME
    result = Estimate(0, 0, 0, 0, runtime, batch)
    for cost in costs:
        if cost.kind == "weight":
            optimizer = cost.bytes * copies if cost.trainable else 0
            result.weights += cost.bytes * WEIGHT_COPIES
            result.optimizer += optimizer
            amount = cost.bytes * WEIGHT_COPIES + optimizer
        elif cost.kind == "table":
            result.weights += cost.bytes
            amount = cost.bytes
        else:
            amount = int(cost.bytes * batch * ACTIVATION_FACTORS[cost.kind])
            result.activations += amount
        parts = result.parts_of.setdefault(cost.key, {})
        parts[cost.part] = parts.get(cost.part, 0) + amount
        if cost.what:
            result.what.setdefault(cost.key, cost.what)
    return result


def refusal(est: Estimate, host: Available, device: Available | None = None) -> list[str]:
    """Problem lines when `est` does not fit, naming the keys that contribute most. On
    GPUs each one holds the weights, optimizer state and its slice of the batch, while
    the data and the runtime stay in host memory."""
    needs = [(host, est.total)]
    if device is not None:
        on_device = est.weights + est.optimizer + est.activations // device.devices
        needs = [(device, on_device), (host, est.data + est.runtime)]
    short = [room for room, needed in needs if room.bytes is not None and needed > room.bytes]
    if not short:
        return []
    room = short[0]
    parts_of = {key: dict(parts) for key, parts in est.parts_of.items()}
    data_parts = parts_of.setdefault(est.data_key, {})
    data_parts["data"] = data_parts.get("data", 0) + est.data
    ranked = sorted(parts_of.items(), key=lambda item: -sum(item[1].values()))
    lines = [
        f"{key}: {_needs(est, key, parts)}"
        for rank, (key, parts) in enumerate(ranked[:3])
        if rank == 0 or sum(parts.values()) >= est.total / 5
    ]
    top, parts = ranked[0]
    hint = f"Lower {top}" if top.startswith(("model.", "data.")) else "Use less data"
    if parts.get("activations", 0) * 2 > sum(parts.values()):
        hint += " or data.batch_size"
    lines[0] += (
        f"; the whole config needs ~{format_bytes(est.total)} ({est.breakdown()}) and "
        f"{room.where} has {format_bytes(room.bytes)} available. {hint}."
    )
    return lines


def _needs(est: Estimate, key: str, parts: dict[str, int]) -> str:
    """`100,000,000 units need ~40 GB of weights, optimizer state and activations`."""
    what = est.what.get(key, "") or (est.data_what if key == est.data_key else "")
    names = {"weights": ["weights", "optimizer state"], "activations": ["activations"],
             "data": ["data"]}  # fmt: skip
    pieces = [name for part in names if parts.get(part) for name in names[part]]
    listed = ", ".join(pieces[:-1]) + " and " + pieces[-1] if len(pieces) > 1 else pieces[0]
    verb = "need" if re.match(r"[\d,]+ \w+s\b", what) else "needs"
    amount = format_bytes(sum(parts.values()))
    return f"{what or 'this setting'} {verb} ~{amount} of {listed}"


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far: VmHWM on Linux, where ru_maxrss also
    counts the process that started this one (exec keeps the old image's high-water
    mark, so a run started from a 2 GB test process would report 2 GB); elsewhere
    ru_maxrss (KB on Linux, bytes on macOS)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    import resource  # Unix only: imported where /proc is missing

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)

"""Turn the `distribute` section into a tf.distribute strategy, and pick the precision.

One function maps the closed set of strategy names to strategies, with a precise
error for each combination that cannot work on this machine. What a cluster does
wrong (a worker that never comes, one that dies mid-training) is told here too.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bigmodel_cli.config import DistributeConfig
from bigmodel_cli.errors import UserError
from bigmodel_cli.rendezvous import wait_for_cluster
from bigmodel_cli.tfenv import (
    import_keras,
    import_tensorflow,
    quiet_native_logs,
    write_to_real_stderr,
)


@dataclass
class Placement:
    """The strategy training runs under and how it was chosen."""

    strategy: Any
    name: str
    replicas: int
    devices: list[str]
    is_chief: bool = True


def _tf_config() -> dict[str, Any] | None:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as err:
        raise UserError(f"TF_CONFIG: not valid JSON ({err})") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("cluster"), dict):
        raise UserError('TF_CONFIG: expected {"cluster": {...}, "task": {...}}')
    return parsed


def _check_tf_config(tf_config: dict[str, Any]) -> None:
    """Every problem with TF_CONFIG's shape, at once, before TensorFlow sees it."""
    problems = []
    cluster = tf_config["cluster"]
    for role, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses:
            problems.append(f"TF_CONFIG: cluster.{role} must be a non-empty list of host:port")
            continue
        for address in addresses:
            host, _, port = str(address).rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                problems.append(f"TF_CONFIG: cluster.{role}: {address!r} is not host:port")
    task = tf_config.get("task")
    if not isinstance(task, dict) or "type" not in task:
        problems.append('TF_CONFIG: task must be {"type": "worker", "index": N}')
    else:
        kind, index = task.get("type"), task.get("index", 0)
        members = cluster.get(kind)
        if not isinstance(members, list):
            problems.append(f"TF_CONFIG: task.type {kind!r} is not a role of the cluster "
                            f"({', '.join(cluster)})")  # fmt: skip
        elif not isinstance(index, int) or not 0 <= index < len(members):
            problems.append(f"TF_CONFIG: task.index {index!r} is not in 0..{len(members) - 1}")
    if problems:
        raise UserError(problems)


STARTUP_MARGIN_SECONDS = 60


class StartupDeadline:
    """Give up with exit 2 if start-up has not finished in `seconds`.

    While the workers of a cluster find each other, TensorFlow blocks inside C++ and does
    not answer SIGTERM; a watchdog thread is the one reliable bound. `cancel()` once the
    model's variables exist (their creation is the first collective).
    """

    def __init__(self, seconds: float, what: str):
        self.seconds, self.what = seconds, what
        self._timer = threading.Timer(seconds, self._give_up)
        self._timer.daemon = True

    def _give_up(self) -> None:
        # The main thread may be blocked inside C++ with native stderr silenced.
        write_to_real_stderr(
            f"error: {self.what} did not start within {self.seconds:g} s "
            "(distribute.timeout_seconds); check that every address is reachable and every "
            "worker was started\n"
        )
        os._exit(2)

    def start(self) -> StartupDeadline:
        self._timer.start()
        return self

    def cancel(self) -> None:
        self._timer.cancel()


def startup_deadline(cfg: DistributeConfig) -> StartupDeadline | None:
    """A started deadline for strategies that wait on other machines, else None."""
    name = resolve_strategy_name(cfg, gpus=0)  # the GPU count only matters for local ones
    if name not in ("multi_worker", "tpu"):
        return None
    what = "the multi-worker cluster" if name == "multi_worker" else "the TPU"
    # A backstop behind the rendezvous (which names the missing workers itself); it
    # catches a peer that dies after answering but before the strategy is formed.
    return StartupDeadline(cfg.timeout_seconds + STARTUP_MARGIN_SECONDS, what).start()


# === A worker lost during training ==========================================


def is_peer_loss(err: BaseException, placement: Placement) -> bool:
    """Whether `err` is how a collective fails when another worker is gone."""
    if placement.name != "multi_worker":
        return False
    tf = import_tensorflow()
    lost = (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.DeadlineExceededError)
    return isinstance(err, lost)


def peer_lost_message(err: BaseException, resume_command: str, is_chief: bool) -> str:
    """What a surviving worker says when a peer dies mid-training: TensorFlow's
    coordination service notices the missing heartbeats and aborts the collectives."""
    text = " ".join(str(getattr(err, "message", err)).split())
    start = text.find("The following tasks")
    reason = text[start:] if start >= 0 else text
    reason = reason.split(" The tasks have crashed")[0][:300]
    restart = (
        f"The last backup is kept; restart every worker, this one with: {resume_command} "
        "(the run directory must be on storage all workers share)"
        if is_chief
        else "Restart this worker together with the chief, which prints the resume command"
    )
    return f"a worker stopped during training: {reason}. {restart}."


def _cluster_workers(tf_config: dict[str, Any] | None) -> int:
    if not tf_config:
        return 0
    cluster = tf_config["cluster"]
    return sum(len(cluster.get(role, [])) for role in ("chief", "worker"))


def _tpu_visible() -> bool:
    # Never probe the GCE metadata server from here: only trust explicit signs of a TPU.
    return bool(os.environ.get("TPU_NAME") or os.environ.get("COLAB_TPU_ADDR")) or any(
        Path("/dev").glob("accel*")
    )


def resolve_strategy_name(cfg: DistributeConfig, gpus: int) -> str:
    """`auto` -> the concrete strategy for this machine; other names pass through."""
    if cfg.strategy != "auto":
        return cfg.strategy
    if cfg.tpu or _tpu_visible():
        return "tpu"
    if _cluster_workers(_tf_config()) > 1:
        return "multi_worker"
    if gpus > 1:
        return "mirrored"
    if gpus == 1:
        return "one_device"
    return "default"


def make_strategy(cfg: DistributeConfig) -> Placement:
    """Build the strategy named by `distribute.strategy` (after resolving `auto`)."""
    with quiet_native_logs():  # device discovery logs CUDA probes on GPU-less machines
        return _make_strategy(cfg)


def _make_strategy(cfg: DistributeConfig) -> Placement:
    tf = import_tensorflow()
    # Physical devices can be listed without initializing TensorFlow's runtime, which a
    # multi-worker strategy must configure first; logical ones only after.
    name = resolve_strategy_name(cfg, len(tf.config.list_physical_devices("GPU")))
    if name in ("multi_worker", "tpu"):
        return _make_cluster_strategy(cfg, name, tf)
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    if cfg.devices and name not in ("one_device", "mirrored"):
        raise UserError(
            f"distribute.devices: only one_device and mirrored take devices; strategy is {name!r}"
        )
    if name == "default":
        strategy = tf.distribute.get_strategy()
        return Placement(strategy, name, 1, [(gpus or cpus)[0]])
    if name == "one_device":
        device = (cfg.devices or gpus or cpus)[0]
        if cfg.devices and len(cfg.devices) != 1:
            raise UserError("distribute.devices: one_device takes exactly one device")
        return Placement(tf.distribute.OneDeviceStrategy(device), name, 1, [device])
    if name == "mirrored":
        devices = cfg.devices or gpus or cpus
        known = set(gpus) | set(cpus) | {d.split("device:")[-1] for d in gpus + cpus}
        unknown = [d for d in devices if d not in known and f"/device:{d}" not in known]
        if cfg.devices and unknown:
            raise UserError(
                f"distribute.devices: unknown device(s) {unknown}; this machine has {gpus + cpus}"
            )
        strategy = tf.distribute.MirroredStrategy(devices)
        return Placement(strategy, name, strategy.num_replicas_in_sync, list(devices))
    raise UserError(f"distribute.strategy: unknown strategy {name!r}")


def _make_cluster_strategy(cfg: DistributeConfig, name: str, tf: Any) -> Placement:
    if cfg.devices:
        raise UserError(
            f"distribute.devices: only one_device and mirrored take devices; strategy is {name!r}"
        )
    if name == "multi_worker":
        tf_config = _tf_config()
        if _cluster_workers(tf_config) < 1:
            raise UserError(
                "distribute.strategy: multi_worker needs TF_CONFIG naming the cluster and this "
                "worker's task (see the README's 'Several machines' section)"
            )
        _check_tf_config(tf_config)
        wait_for_cluster(tf_config, cfg.timeout_seconds)
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        task = (tf_config or {}).get("task", {})
        is_chief = task.get("type") == "chief" or (
            task.get("type") == "worker"
            and task.get("index") == 0
            and "chief" not in tf_config["cluster"]
        )
        return Placement(strategy, name, strategy.num_replicas_in_sync, gpus or cpus, is_chief)
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=cfg.tpu or "")
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as err:
            raise UserError(f"distribute.strategy: no TPU could be reached ({err})") from None
        strategy = tf.distribute.TPUStrategy(resolver)
        return Placement(strategy, name, strategy.num_replicas_in_sync, ["TPU"])
    raise UserError(f"distribute.strategy: unknown strategy {name!r}")


def resolve_precision(requested: str, placement: Placement) -> str:
    """`auto` -> the Keras mixed-precision policy that is fast and safe on these devices."""
    if requested != "auto":
        return requested
    if placement.name == "tpu":
        return "mixed_bfloat16"
    tf = import_tensorflow()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capabilities = [
            tf.config.experimental.get_device_details(g).get("compute_capability", (0, 0))
            for g in gpus
        ]
        if all(cap >= (7, 0) for cap in capabilities):
            return "mixed_float16"
    # On CPUs float32 until the model is known: see prefers_bf16.
    return "float32"


def prefers_bf16(requested: str, placement: Placement, flops_per_example: int,
                 batch_size: int) -> bool:  # fmt: skip
    """`auto` on a CPU with bfloat16 matrix units: switch to mixed_bfloat16 when the
    model does enough matrix work per step for bf16 to be faster (measured: tiny models
    lose more to casts than they gain)."""
    from bigmodel_cli.performance import bf16_pays_off, cpu_has_bf16_matmul

    on_cpu = all("GPU" not in d.upper() and "TPU" not in d.upper() for d in placement.devices)
    return (
        requested == "auto"
        and on_cpu
        and cpu_has_bf16_matmul()
        and bf16_pays_off(flops_per_example, batch_size // max(1, placement.replicas))
    )


def set_precision(policy: str) -> None:
    keras = import_keras()

    keras.mixed_precision.set_global_policy(policy)

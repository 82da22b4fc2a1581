"""Turn the `distribute` section into a tf.distribute strategy, and pick the precision.

One function maps the closed set of strategy names to strategies, with a precise
error for each combination that cannot work on this machine.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bigmodel_cli.config import DistributeConfig
from bigmodel_cli.errors import UserError
from bigmodel_cli.tfenv import import_tensorflow


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
    tf = import_tensorflow()
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    name = resolve_strategy_name(cfg, len(gpus))
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
    if name == "multi_worker":
        tf_config = _tf_config()
        if _cluster_workers(tf_config) < 1:
            raise UserError(
                "distribute.strategy: multi_worker needs TF_CONFIG naming the cluster and this "
                "worker's task (see the README's 'Several machines' section)"
            )
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
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
    import tf_keras as keras

    keras.mixed_precision.set_global_policy(policy)

"""Step 1 of the recipe: strategy, seeds and precision, chosen before anything is built,
and the description of that environment the run directory keeps (environment.json)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from bigmodel_cli import distribution
from bigmodel_cli.config import Config
from bigmodel_cli.errors import UserError
from bigmodel_cli.tfenv import import_keras, import_tensorflow


@dataclass(frozen=True)
class Runtime:
    """Strategy, devices and precision, chosen before anything is built."""

    placement: distribution.Placement
    precision: str

    @property
    def multi_worker(self) -> bool:
        return self.placement.name == "multi_worker"


def setup_runtime(cfg: Config) -> Runtime:
    keras = import_keras()

    placement = distribution.make_strategy(cfg.distribute)  # first: multi-worker needs that
    if placement.name == "multi_worker" and cfg.train.time_limit_minutes is not None:
        # Each worker would read its own clock: one could stop while another starts the
        # next epoch and waits for it in a collective forever.
        raise UserError(
            "train.time_limit_minutes: not supported with several workers (each would stop "
            "by its own clock); set train.epochs instead"
        )
    keras.utils.set_random_seed(cfg.seed)
    # Dropout and other random layers draw from a tf.random.Generator each, whose state
    # the resume backup records, so a resumed run draws the masks the whole run would.
    keras.backend.experimental.enable_tf_random_generator()
    if cfg.train.deterministic:
        tf = import_tensorflow()

        tf.config.experimental.enable_op_determinism()
    return Runtime(placement, distribution.resolve_precision(cfg.train.mixed_precision, placement))


def describe_environment(runtime: Runtime, precision: str, command: list[str]) -> dict[str, Any]:
    """environment.json: versions, devices, strategy and the command that ran."""
    import platform

    import numpy as np

    from bigmodel_cli import __version__

    tf, keras = import_tensorflow(), import_keras()
    placement = runtime.placement
    return {
        "bigmodel": __version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "tf_keras": keras.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "hostname": platform.node(),
        "devices": [d.name for d in tf.config.list_logical_devices()],
        "strategy": placement.name,
        "replicas": placement.replicas,
        "is_chief": placement.is_chief,
        "strategy_devices": placement.devices,
        "precision": precision,
        "command": shlex.join(command),
    }

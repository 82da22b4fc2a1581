"""The config: what a YAML file may say, and how it becomes a `Config`.

One strict pydantic section per group of keys: `base` (names, the strict base section,
shared field types), `data`, `model`, `optim` (optimizer, schedule, clipping), `sections`
(loss, regularization, train, distribute, output), `compress` (pruning), `tune`, `init`
(transfer learning), `distill`, and `root`, which assembles `Config`. Around them: `load`
(safe YAML, `base:` inheritance, `--set`), `messages` (pydantic's errors as `dotted.key:
message` lines), `json_schema` (`bigmodel schema`), `allowlist` (the layers a
`sequential` model may name), `defaults` (the loss, metrics and head the data implies)
and `reference` (the README's tables).

Nothing here imports TensorFlow, so `bigmodel validate --no-build` and config errors
answer instantly. Callers import every schema name from this package.
"""

from __future__ import annotations

from bigmodel_cli.config.base import (
    CLASSIFICATION_LOSSES,
    LM_METRICS,
    LOSSES,
    METRICS,
    OPTIMIZERS,
    SCHEDULES,
    ConfigKeyError,
    Section,
)
from bigmodel_cli.config.compress import CompressConfig, PruneConfig
from bigmodel_cli.config.data import (
    MAX_SEQUENCE_LENGTH,
    SEQUENCE_SOURCES,
    SEQUENCE_TASKS,
    DataConfig,
)
from bigmodel_cli.config.distill import DistillConfig
from bigmodel_cli.config.init import InitConfig
from bigmodel_cli.config.load import config_from_mapping, dump_config, load_config
from bigmodel_cli.config.model import (
    MODEL_CLASSES,
    CNNConfig,
    ConvBlock,
    MLPConfig,
    ModelCommon,
    ModelConfig,
    RNNConfig,
    SequentialConfig,
    TransformerConfig,
)
from bigmodel_cli.config.optim import (
    LEARNING_RATE_TAGS,
    OPTIMIZER_ARGS,
    OptimizerConfig,
    ScheduleConfig,
)
from bigmodel_cli.config.root import Config, is_language_model
from bigmodel_cli.config.sections import (
    CheckpointConfig,
    DistributeConfig,
    EarlyStoppingConfig,
    LossConfig,
    OutputConfig,
    RegularizationConfig,
    TrainConfig,
)
from bigmodel_cli.config.tune import SearchRange, TuneConfig

__all__ = [
    "CLASSIFICATION_LOSSES", "LEARNING_RATE_TAGS", "METRICS", "OPTIMIZER_ARGS", "MODEL_CLASSES",
    "CompressConfig", "PruneConfig",
    "LOSSES", "OPTIMIZERS", "SCHEDULES", "CNNConfig", "CheckpointConfig",
    "Config", "ConfigKeyError", "ConvBlock", "DataConfig", "DistillConfig", "DistributeConfig",
    "EarlyStoppingConfig", "InitConfig", "LossConfig", "MLPConfig", "ModelCommon", "ModelConfig",
    "OptimizerConfig", "OutputConfig", "RNNConfig", "RegularizationConfig", "ScheduleConfig",
    "SearchRange", "SequentialConfig", "TrainConfig", "TransformerConfig", "TuneConfig",
    "is_language_model", "load_config", "config_from_mapping", "dump_config", "LM_METRICS",
    "Section", "MAX_SEQUENCE_LENGTH", "SEQUENCE_SOURCES", "SEQUENCE_TASKS",
]  # fmt: skip

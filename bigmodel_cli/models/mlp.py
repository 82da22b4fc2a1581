"""`model.type: mlp`: hidden Dense blocks, then the output layer."""

from __future__ import annotations

from bigmodel_cli.config import Config
from bigmodel_cli.models import common
from bigmodel_cli.spec import DataSpec
from bigmodel_cli.tfenv import import_keras

keras = import_keras()


def build_mlp(cfg: Config, spec: DataSpec) -> keras.Model:
    common.require_not_language_model(cfg, spec)
    common.require_batch_norm_target(cfg, bool(cfg.model.dense), "its hidden Dense layers")

    # === Inputs ===
    inputs = common.model_input(cfg, spec)
    x = inputs
    if len(common.input_shape(cfg, spec)) > 1:
        x = keras.layers.Flatten(name="flatten")(x)  # Dense would act on the last axis only

    # === Hidden layers ===
    x = common.dense_stack(x, cfg)

    # === Output ===
    outputs = common.output_layer(x, cfg, spec)
    return keras.Model(inputs, outputs, name=common.model_name(cfg))

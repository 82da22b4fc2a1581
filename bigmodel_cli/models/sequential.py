"""`model.type: sequential`: a `keras.Sequential` exactly as the config writes it.

Nothing is injected: no initializer, no regularizer, no output layer, so the model is
the one a person would write by hand. The single exception, which changes no
parameter, is `dtype="float32"` on the last layer when it gives none, so predictions
and the loss stay float32 under mixed precision (as the presets' output layer does).
Preset-only keys (`dropout`, `activation`, `regularization`, ...) are errors here
rather than silently ignored.
"""

from __future__ import annotations

import tf_keras as keras

from bigmodel_cli import defaults
from bigmodel_cli.config import Config
from bigmodel_cli.errors import ConfigError
from bigmodel_cli.layer_allowlist import ALLOWED_LAYERS
from bigmodel_cli.models import common
from bigmodel_cli.spec import DataSpec

# ModelCommon keys that only the presets read.
PRESET_KEYS = (
    "outputs", "output_activation", "activation", "dropout", "batch_norm", "initializer",
)  # fmt: skip


def _check_no_preset_keys(cfg: Config) -> None:
    problems = [
        f"model.{key}: type sequential is built exactly as written and does not use `{key}`;"
        " set it on the layers instead (e.g. {type: Dropout, rate: 0.2})."
        for key in PRESET_KEYS
        if key in cfg.model.model_fields_set
    ]
    for key in ("l1", "l2"):
        if getattr(cfg.regularization, key):
            problems.append(
                f"regularization.{key}: type sequential applies no global penalty; give "
                "layers a kernel_regularizer (e.g. {type: Dense, units: 10, "
                "kernel_regularizer: l2})."
            )
    if problems:
        raise ConfigError(problems)


def _make_layers(cfg: Config) -> list[keras.layers.Layer]:
    """Every layer of the list, with every constructor error reported at once."""
    specs = cfg.model.layers
    made, problems = [], []
    for index, item in enumerate(specs):
        kind = item.get("type")
        if kind not in ALLOWED_LAYERS:  # the schema checked this; never trust a string twice
            problems.append(f"model.layers.{index}: layer type {kind!r} is not allowed.")
            continue
        kwargs = {key: value for key, value in item.items() if key != "type"}
        if index == len(specs) - 1:
            kwargs.setdefault("dtype", "float32")
        try:
            made.append(getattr(keras.layers, kind)(**kwargs))
        except (TypeError, ValueError) as err:
            problems.append(f"model.layers.{index}: {kind}: {common.keras_message(err)}")
    if problems:
        raise ConfigError(problems)
    return made


def _check_output(model: keras.Model, cfg: Config, spec: DataSpec) -> None:
    """The last layer must fit the labels; say so now rather than fail inside fit()."""
    expected = defaults.output_head(cfg, spec).units
    shape = model.output_shape
    rank = 3 if spec.task == "language_model" else 2
    where = f"model.layers.{len(cfg.model.layers) - 1}"
    if len(shape) != rank:
        what = "one vector per token" if rank == 3 else "one vector per example"
        raise ConfigError(
            f"{where}: the model's output has shape {list(shape[1:])} per example; the "
            f"labels need {what} (add a Flatten or GlobalAveragePooling before the last "
            "Dense, or remove it)."
        )
    if shape[-1] != expected:
        raise ConfigError(
            f"{where}: the last layer gives {shape[-1]} outputs; the data and loss need "
            f"{expected} (e.g. {{type: Dense, units: {expected}}})."
        )


def build_sequential(cfg: Config, spec: DataSpec) -> keras.Model:
    _check_no_preset_keys(cfg)

    # === Layers ===
    layers = _make_layers(cfg)

    # === Stack ===
    # Added one at a time so a shape error names the layer that raised it.
    model = keras.Sequential(name=common.model_name(cfg))
    model.add(common.model_input(cfg, spec))
    for index, layer in enumerate(layers):
        try:
            model.add(layer)
        except (TypeError, ValueError) as err:
            kind = cfg.model.layers[index]["type"]
            message = common.keras_message(err)
            raise ConfigError(f"model.layers.{index}: {kind}: {message}") from None

    # === Output check ===
    _check_output(model, cfg, spec)
    return model

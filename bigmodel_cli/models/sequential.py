"""`model.type: sequential`: a `keras.Sequential` exactly as the config writes it.

Nothing is injected: no initializer, no regularizer, no output layer, so the model is
the one a person would write by hand. The single exception, which changes no
parameter, is `dtype="float32"` on the last layer when it gives none, so predictions
and the loss stay float32 under mixed precision (as the presets' output layer does).
Preset-only keys (`dropout`, `activation`, `regularization`, ...) are errors here
rather than silently ignored. Any error Keras raises making or stacking a layer (a
TypeError, a shape error, TensorFlow's InvalidArgumentError for `Softmax axis: 99`) is
the config's, reported as `model.layers.N` with Keras's message; so is a fractional
number Keras would silently truncate (`Dense units: 1.5` would become 1 unit).
"""

from __future__ import annotations

from bigmodel_cli.config import Config, defaults
from bigmodel_cli.config.allowlist import ALLOWED_LAYERS
from bigmodel_cli.errors import ConfigError
from bigmodel_cli.models import common
from bigmodel_cli.spec import DataSpec
from bigmodel_cli.tfenv import import_keras

keras = import_keras()

# ModelCommon keys that only the presets read.
PRESET_KEYS = (
    "outputs", "output_activation", "activation", "dropout", "batch_norm", "initializer",
)  # fmt: skip


def _check_no_preset_keys(cfg: Config) -> None:
    problems = [
        f"model.{key}: type sequential is built exactly as written and does not use `{key}`;"
        " set it on the layers instead (e.g. {type: Dropout, rate: 0.2})."
        for key in PRESET_KEYS
        # By value, not by "was it written": a run's config.yaml spells out every default.
        if getattr(cfg.model, key) != type(cfg.model).model_fields[key].get_default()
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


# Keras looks these up by name, and some lookups return an unknown string unchanged (so it
# would fail deep inside fit). Resolve them here: a name that is not Keras's is a config error.
_LOOKUPS = {
    "_regularizer": lambda name: keras.regularizers.get(name),
    "_initializer": lambda name: keras.initializers.get(name),
    "_constraint": lambda name: keras.constraints.get(name),
    "activation": lambda name: keras.activations.get(name),
}


def _unresolved_names(kwargs: dict) -> list[str]:
    """Arguments naming a regularizer/initializer/constraint/activation Keras doesn't know."""
    bad = []
    for key, value in kwargs.items():
        lookup = next((f for suffix, f in _LOOKUPS.items() if key.endswith(suffix)), None)
        if lookup is None or not isinstance(value, str):
            continue
        try:
            resolved = lookup(value)
        except (TypeError, ValueError):
            resolved = None
        if resolved is None or isinstance(resolved, str):
            bad.append(f"{key}: unknown name {value!r}")
    return bad


def _truncated(kwargs: dict, layer: keras.layers.Layer) -> list[str]:
    """Fractional arguments the layer turned into integers without a word."""
    config = layer.get_config()
    bad = []
    for key, given in kwargs.items():
        values = given if isinstance(given, list) else [given]
        if not any(isinstance(v, float) and not v.is_integer() for v in values):
            continue
        kept = config.get(key)
        kept = list(kept) if isinstance(kept, list | tuple) else [kept]
        if not any(isinstance(v, float) and not v.is_integer() for v in kept):
            bad.append(
                f"{key}: {given!r} is not a whole number (Keras would use {config.get(key)!r})"
            )
    return bad


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
        unresolved = _unresolved_names(kwargs)
        if unresolved:
            problems += [f"model.layers.{index}: {kind}: {text}" for text in unresolved]
            continue
        if index == len(specs) - 1:
            kwargs.setdefault("dtype", "float32")
        try:
            layer = getattr(keras.layers, kind)(**kwargs)
        except Exception as err:  # noqa: BLE001 - whatever Keras raises is about this layer
            problems.append(f"model.layers.{index}: {kind}: {common.keras_message(err)}")
            continue
        problems += [f"model.layers.{index}: {kind}: {text}" for text in _truncated(kwargs, layer)]
        made.append(layer)
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
        except Exception as err:  # noqa: BLE001 - shape and op errors name this layer
            kind = cfg.model.layers[index]["type"]
            message = common.keras_message(err)
            raise ConfigError(f"model.layers.{index}: {kind}: {message}") from None

    # === Output check ===
    _check_output(model, cfg, spec)
    return model

"""Which `keras.layers` classes a `model.type: sequential` config may name.

A config describes a model; it must never run code. So only plain layers are accepted
(no `Lambda`, no wrappers that take other layers, no import paths), and arguments are
plain values: finite numbers, strings, booleans, lists of those (`.inf` and `.nan` are
refused: `GaussianNoise stddev: .inf` would turn every input into NaN). No TensorFlow
import here.
"""

from __future__ import annotations

import difflib
import math
from typing import Any

ALLOWED_LAYERS = frozenset(
    {
        # core
        "Dense", "Activation", "Embedding", "Flatten", "Reshape", "Permute", "RepeatVector",
        # convolution and pooling
        "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose",
        "Conv3DTranspose", "SeparableConv1D", "SeparableConv2D", "DepthwiseConv2D",
        "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D",
        "AveragePooling2D", "AveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
        "GlobalAveragePooling1D", "GlobalAveragePooling2D", "UpSampling1D", "UpSampling2D",
        "ZeroPadding1D", "ZeroPadding2D", "Cropping1D", "Cropping2D",
        # recurrent
        "LSTM", "GRU", "SimpleRNN",
        # normalization and regularization
        "BatchNormalization", "LayerNormalization", "Dropout", "SpatialDropout1D",
        "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
        "ActivityRegularization",
        # activations
        "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "ThresholdedReLU",
        # preprocessing that holds no code
        "Rescaling", "Normalization", "CenterCrop", "Resizing",
    }
)  # fmt: skip

# Arguments that would let a config reach outside plain values.
_REFUSED_ARGUMENTS = frozenset({"function", "layer", "backward_layer", "cell", "dtype_policy"})


def _non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    return isinstance(value, list | tuple) and any(_non_finite(item) for item in value)


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, list | tuple):
        return all(_plain(item) for item in value)
    return False


def check_layer_spec(spec: Any) -> str | None:
    """Return a problem with one `layers:` item, or None when it is acceptable."""
    if not isinstance(spec, dict):
        return f"each layer must be a mapping like {{type: Dense, units: 10}}; received {spec!r}"
    kind = spec.get("type")
    if not isinstance(kind, str):
        return "each layer needs `type`, the name of a keras.layers class (e.g. Dense)"
    if kind not in ALLOWED_LAYERS:
        if kind == "Lambda" or "." in kind:
            reason = "configs describe models and never run code"
            return f"layer type {kind!r} is not allowed: {reason}"
        close = difflib.get_close_matches(kind, sorted(ALLOWED_LAYERS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return f"unknown layer type {kind!r}.{hint} Allowed: {', '.join(sorted(ALLOWED_LAYERS))}"
    for key, value in spec.items():
        if key == "type":
            continue
        if not isinstance(key, str) or not key.isidentifier():
            return f"{kind}: argument name {key!r} is not an identifier"
        if key in _REFUSED_ARGUMENTS:
            return f"{kind}: argument {key!r} is not allowed in configs"
        if not _plain(value):
            return (
                f"{kind}.{key}: only plain values (numbers, strings, booleans, lists) are "
                f"allowed; received {type(value).__name__}"
            )
        if _non_finite(value):
            return f"{kind}.{key}: {value!r} is not a finite number; give a finite value"
    return None

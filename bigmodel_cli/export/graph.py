"""The exported graph: raw inputs in, what `bigmodel predict` returns out.

The run's model reads inputs standardized with the training split's statistics
(data/normalize.py), applied outside the model by evaluate and predict. The serving
function puts that step inside the graph, so whoever loads the file feeds the values a
user has (raw feature values, pixels in the training data's range, token ids), laid out
in the model's input shape:

    inputs (batch, *input_shape) -> view in the data's native shape
           -> (x - mean) * (1 / std) per feature or channel -> the model's layout
           -> model -> named outputs

Outputs, by task (the names are the SavedModel signature's and the TFLite signature's):
- classifier: `probabilities` (batch, classes), as predict's: a softmax of logits, and
  [1 - p, p] for one sigmoid unit; with `from_logits` also `logits`, the model's own output;
- regression: `value` (batch, targets);
- language model: `logits` (batch, positions, vocabulary), the next-token scores at
  every position (`probabilities` when the model ends in a softmax).

The module tracks the model's variables, not the Keras model, so the SavedModel holds
a plain TensorFlow graph: `tf.saved_model.load` needs neither Keras nor bigmodel.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bigmodel_cli import run_dir
from bigmodel_cli.spec import DataSpec
from bigmodel_cli.tfenv import import_tensorflow

INPUT_NAME = "inputs"
SIGNATURE = "serving_default"
# Names of the normalization's ops, which int8 TFLite files keep in float32 (tflite.py).
NORMALIZATION_OPS = ("bigmodel_normalize_center", "bigmodel_normalize_scale")


@dataclass(frozen=True)
class Interface:
    """What the exported signature takes and returns."""

    input_shape: tuple[int, ...]  # one example, the model's layout
    input_dtype: str  # "float32" or "int32" (token ids)
    task: str
    from_logits: bool
    units: int  # the model's last axis

    def outputs(self) -> list[str]:
        if self.task == "regression":
            return ["value"]
        if self.task == "language_model":
            return ["logits" if self.from_logits else "probabilities"]
        return ["probabilities", "logits"] if self.from_logits else ["probabilities"]

    def model_outputs(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        """The Keras model's own output, recovered from the signature's outputs (what
        the run's loss and metrics are computed on)."""
        if "logits" in outputs:
            return outputs["logits"]
        if "value" in outputs:
            return outputs["value"]
        p = outputs["probabilities"]
        return p[..., 1:] if self.task == "classification" and self.units == 1 else p

    def to_json(self) -> dict[str, Any]:
        return {
            "inputs": {
                "name": INPUT_NAME,
                "dtype": self.input_dtype,
                "shape": [None, *self.input_shape],
            },
            "outputs": self.outputs(),
        }


def interface_of(model: Any, spec: DataSpec, from_logits: bool) -> Interface:
    return Interface(
        input_shape=tuple(int(d) for d in spec.input_shape),
        input_dtype="int32" if spec.input_dtype == "int32" else "float32",
        task=spec.task,
        from_logits=from_logits,
        units=int(model.outputs[0].shape[-1]),
    )


def _named_outputs(tf, raw, interface: Interface) -> dict[str, Any]:
    """The model's output `raw` as the signature's named outputs."""
    if interface.task != "classification":
        return {interface.outputs()[0]: raw}
    if interface.units == 1:  # one sigmoid unit (or logit): P(class 1)
        p1 = tf.sigmoid(raw) if interface.from_logits else raw
        probabilities = tf.concat([1.0 - p1, p1], axis=-1)
    else:
        probabilities = tf.nn.softmax(raw, axis=-1) if interface.from_logits else raw
    named = {"probabilities": probabilities}
    if interface.from_logits:
        named["logits"] = raw
    return named


def serving_module(
    model: Any, interface: Interface, normalization: dict | None, batch: int | None = None
):
    """A tf.Module whose `serve` is the exported signature (see the module docstring),
    for batches of any size, or of exactly `batch` examples."""
    tf = import_tensorflow()
    dtype = tf.int32 if interface.input_dtype == "int32" else tf.float32
    layout = list(interface.input_shape)
    spec = tf.TensorSpec([batch, *layout], dtype, name=INPUT_NAME)
    if normalization:
        native = [int(d) for d in normalization["native_shape"]]
        mean = tf.constant(np.asarray(normalization["mean"], np.float32))
        # A product, not a quotient: int8 TFLite quantizes MUL everywhere, DIV not.
        scale = tf.constant((1.0 / np.asarray(normalization["std"], np.float64)).astype(np.float32))

    @tf.function(input_signature=[spec])
    def serve(inputs):
        x = inputs
        if normalization:
            x = tf.subtract(tf.reshape(x, [-1, *native]), mean, name=NORMALIZATION_OPS[0])
            x = tf.reshape(tf.multiply(x, scale, name=NORMALIZATION_OPS[1]), [-1, *layout])
        return _named_outputs(tf, model(x, training=False), interface)

    module = tf.Module()
    module.model_variables = list(model.variables)  # tracked, so the SavedModel holds them
    module.serve = serve
    return module


def save_saved_model(module: Any, path: Path) -> None:
    """Write the SavedModel folder at `path` whole: into a new folder beside it, then
    renamed into place (the previous export is removed only after that)."""
    tf = import_tensorflow()
    temporary = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tf.saved_model.save(module, str(temporary), signatures={SIGNATURE: module.serve})
    except Exception as err:
        shutil.rmtree(temporary, ignore_errors=True)
        reason = run_dir.file_system_reason(err)
        if reason:
            raise run_dir.StorageError(path, reason) from None
        raise
    old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
    with contextlib.suppress(FileNotFoundError):
        path.rename(old)
    temporary.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def folder_bytes(path: Path) -> int:
    """Size of a file, or of every file under a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())

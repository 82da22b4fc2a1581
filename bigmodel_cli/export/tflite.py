"""TFLite files: `tf.lite.TFLiteConverter` from the exported SavedModel, run with the
LiteRT interpreter (`ai_edge_litert`; `tf.lite.Interpreter` is deprecated).

Quantization (`--quantize`):
- `none`: float32 weights and arithmetic;
- `dynamic`: int8 weights, float activations (dynamic range quantization);
- `float16`: float16 weights, computed in float32;
- `int8`: int8 weights and activations, their ranges calibrated on a seeded sample of
  the training split; the file's inputs and outputs stay float32 (and token ids int32),
  so it is called exactly as the float file is, and the normalization in front of the
  model computes in float32 (see `_convert`).

A conversion is kept only when LiteRT loads the file and runs it on real inputs
(finite outputs of the expected shapes): a broken file is never written. When an
attempt fails, the next one is tried and the report says why:
int8 (integer kernels only) -> int8 with float kernels for the ops that have no int8
one -> dynamic -> none; dynamic and float16 -> none. When even float32 cannot be
converted (an op with no TFLite builtin), export stops with the converter's reason.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bigmodel_cli.errors import UserError
from bigmodel_cli.export.graph import (
    INPUT_NAME,
    NORMALIZATION_OPS,
    SIGNATURE,
    Interface,
    save_saved_model,
)
from bigmodel_cli.tfenv import import_tensorflow, quiet_native_logs

ATTEMPTS = {
    "none": ("none",),
    "dynamic": ("dynamic", "none"),
    "float16": ("float16", "none"),
    "int8": ("int8", "int8-with-float", "dynamic", "none"),
}
VERIFY_EXAMPLES = 8
NOT_QUANTIZED = {"QUANTIZE", "DEQUANTIZE"}  # the float boundary of an int8 graph


@dataclass
class Converted:
    """A TFLite file that LiteRT ran, and how it was made."""

    content: bytes
    quantize: str  # what the file is: none, dynamic, float16 or int8
    batch: int | None  # None: any batch size; else the file takes exactly this many
    float_ops: list[str] = field(default_factory=list)  # int8 files: ops left in float
    fallbacks: list[str] = field(default_factory=list)  # why earlier attempts were refused

    def note(self, requested: str) -> str | None:
        """What a person should know when the file is not what was asked for."""
        notes = []
        if self.batch is not None:
            notes.append(
                f"the TFLite converter cannot lower this model for a variable batch size "
                f"(the RNN's loop over time becomes tensor lists, which TFLite's builtin "
                f"ops cannot hold), so the file takes {self.batch} example per call; its "
                "LSTM state persists between calls in TFLite: call the interpreter's "
                "reset_all_variables() before each"
            )
        quantized = self._quantize_note(requested)
        return "; ".join([*notes, *([quantized] if quantized else [])]) or None

    def _quantize_note(self, requested: str) -> str | None:
        if self.quantize == requested and not self.float_ops:
            return None
        if self.quantize == requested:
            ops = ", ".join(sorted(set(self.float_ops)))
            return (
                f"--quantize int8: some ops have no int8 kernel and run in float32 ({ops}); "
                f"the rest is int8 ({'; '.join(self.fallbacks)})"
            )
        return (
            f"--quantize {requested}: could not be applied to this model, so the file is "
            f"--quantize {self.quantize}. Why: {'; '.join(self.fallbacks)}"
        )


class LiteRTModel:
    """A TFLite file's serving signature, called like the SavedModel's."""

    def __init__(self, content: bytes):
        from ai_edge_litert.interpreter import Interpreter

        with quiet_native_logs():
            self.interpreter = Interpreter(model_content=content)
            self.interpreter.allocate_tensors()  # reset_all_variables needs them
            self.runner = self.interpreter.get_signature_runner(SIGNATURE)
        shape = self.runner.get_input_details()[INPUT_NAME]["shape_signature"]
        self.batch = None if shape[0] < 0 else int(shape[0])  # a fixed batch: rows one by one
        self._called = False

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if not self._called:  # the delegate is made, and announces itself, on first use
            self._called = True
            with quiet_native_logs():
                return self(x)
        if self.batch is None or len(x) == self.batch:
            # TFLite's fused LSTM keeps its state in variable tensors from one call to the
            # next; every call starts from the zero state, as the Keras model's does.
            self.interpreter.reset_all_variables()
            return {name: np.asarray(v) for name, v in self.runner(**{INPUT_NAME: x}).items()}
        parts = [self(x[i : i + self.batch]) for i in range(0, len(x), self.batch)]
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    def float_ops(self) -> list[str]:
        """Ops computing in float32 (after an int8 conversion: those with no int8 kernel)."""
        try:
            tensors = {t["index"]: t["dtype"] for t in self.interpreter.get_tensor_details()}
            ops = self.interpreter._get_ops_details()  # no public listing of a file's ops
        except (AttributeError, KeyError, ValueError, RuntimeError):
            return []
        return [
            op["op_name"]
            for op in ops
            if op["op_name"] not in NOT_QUANTIZED
            and any(tensors.get(i) == np.float32 for i in op["outputs"])
        ]


def _representative(calibration: np.ndarray):
    def examples():
        for i in range(len(calibration)):
            yield [calibration[i : i + 1]]

    return examples


def _converter(tf, saved_model: Path, attempt: str, calibration: np.ndarray | None):
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model), signature_keys=[SIGNATURE]
    )
    if attempt == "none":
        return converter
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if attempt == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif attempt.startswith("int8"):
        converter.representative_dataset = _representative(calibration)
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if attempt == "int8-with-float":
            ops.append(tf.lite.OpsSet.TFLITE_BUILTINS)
        converter.target_spec.supported_ops = ops
    return converter


def normalization_tensors(content: bytes) -> list[str]:
    """Output tensors of the normalization's ops in a converted file (TFLite names an
    op's output by the TF ops fused into it, its own name first)."""
    interpreter = LiteRTModel(content).interpreter
    return [
        t["name"]
        for t in interpreter.get_tensor_details()
        if t["name"].split(";")[0] in NORMALIZATION_OPS
    ]


def _convert(tf, saved: Path, attempt: str, calibration, float_tensors: list[str]) -> bytes:
    """One attempt's file. int8 keeps the normalization (`float_tensors`) in float32: one
    int8 scale for every raw input would round away features of small range (a 0..0.1
    feature beside a 0..4000 one), while after normalization every feature spans the
    same range."""
    converter = _converter(tf, saved, attempt, calibration)
    if not (attempt.startswith("int8") and float_tensors):
        return converter.convert()
    debug = tf.lite.experimental
    with warnings.catch_warnings():  # it runs the deprecated tf.lite.Interpreter inside
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        return _debugger_file(debug, converter, calibration, float_tensors)


def _debugger_file(debug, converter, calibration, float_tensors: list[str]) -> bytes:
    debugger = debug.QuantizationDebugger(
        converter=converter,
        debug_dataset=_representative(calibration),
        debug_options=debug.QuantizationDebugOptions(denylisted_nodes=float_tensors),
    )
    return debugger.get_nondebug_quantized_model()


def converter_reason(err: BaseException) -> str:
    """The converter's own error lines, without MLIR locations and stack traces (nor its
    advice to use Select TF ops, which LiteRT's interpreter does not run)."""
    text = str(err)
    lines = [getattr(e, "error_message", "") for e in getattr(err, "errors", None) or []]
    lines = [line.split(" Please consider")[0] for line in lines if line]
    if not lines:
        lines = [m.group(1).strip() for m in re.finditer(r"error: ([^\n]+)", text)]
        lines = [line for line in lines if not line.startswith("loc(")]
    picked = list(dict.fromkeys(lines))[:3] or [text.strip().splitlines()[0] if text else ""]
    reason = "; ".join(line for line in picked if line) or type(err).__name__
    return reason if len(reason) <= 400 else reason[:397] + "..."


def _verify(content: bytes, interface: Interface, sample: np.ndarray) -> LiteRTModel:
    """LiteRT loads the file and returns finite outputs of the right shapes, or ValueError."""
    try:
        model = LiteRTModel(content)
        outputs = model(sample)
    except (ValueError, RuntimeError) as err:
        raise ValueError(f"LiteRT cannot run the file ({converter_reason(err)})") from None
    if sorted(outputs) != sorted(interface.outputs()):
        raise ValueError(f"the file returns {sorted(outputs)}, not {interface.outputs()}")
    for name, value in outputs.items():
        if value.shape[0] != len(sample) or not np.isfinite(value).all():
            raise ValueError(f"the file's {name} output is not finite on real inputs")
    return model


def convert(
    make_module: Callable[[int | None], Any],
    interface: Interface,
    quantize: str,
    sample: np.ndarray,
    calibration: Callable[[], np.ndarray] | None = None,
) -> Converted:
    """The best file `quantize` allows (see the module docstring), for any batch size
    or, when the converter cannot lower the model for that (a Keras LSTM's dynamic
    loop), one example per call. `make_module(batch)`: the serving module; `sample`: real
    inputs each attempt is run on; `calibration()`: the int8 calibration examples."""
    tf = import_tensorflow()
    examples = calibration() if quantize == "int8" else None
    reasons: list[str] = []
    for batch in (None, 1):
        folder = Path(tempfile.mkdtemp(prefix="bigmodel-export-"))
        fallbacks: list[str] = []
        try:
            saved = folder / "saved_model"
            save_saved_model(make_module(batch), saved)
            converted = _attempts(tf, saved, quantize, examples, interface, sample, fallbacks)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if converted is not None:
            converted.batch = batch
            return converted
        reasons += [reason.split(": ", 1)[1] for reason in fallbacks]
    raise UserError(
        "--format tflite: the TFLite converter cannot express this model with TFLite's "
        f"builtin ops, so no file was written ({'; '.join(dict.fromkeys(reasons))}). "
        "Use --format savedmodel for it"
    )


def _attempts(tf, saved: Path, quantize: str, examples, interface, sample, fallbacks):
    """The first attempt of ATTEMPTS[quantize] that converts and runs, or None; the
    reasons of those that did not are appended to `fallbacks`."""
    float_tensors: list[str] = []
    if quantize == "int8":
        # A model TFLite cannot hold at all fails in the attempts below, with the reason.
        with contextlib.suppress(Exception), quiet_native_logs():
            float_tensors = normalization_tensors(_converter(tf, saved, "none", None).convert())
    for attempt in ATTEMPTS[quantize]:
        try:
            with quiet_native_logs():  # the converter's MLIR and calibration logs
                content = _convert(tf, saved, attempt, examples, float_tensors)
            model = _verify(content, interface, sample[:VERIFY_EXAMPLES])
        except Exception as err:  # noqa: BLE001 - every converter failure is a reason
            fallbacks.append(f"{attempt}: {converter_reason(err)}")
            continue
        kind = "int8" if attempt.startswith("int8") else attempt
        float_ops = model.float_ops() if attempt == "int8-with-float" else []
        return Converted(content, kind, None, float_ops, list(fallbacks))
    return None

"""What `bigmodel export` was asked for, and every problem with it at once (exit 2)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from bigmodel_cli.config import load as config_load
from bigmodel_cli.errors import UserError

FORMATS = ("savedmodel", "tflite")
QUANTIZATIONS = ("none", "dynamic", "float16", "int8")
DEFAULT_CALIBRATION_EXAMPLES = 200  # the converter's guide asks for ~100-500


@dataclass(frozen=True)
class ExportRequest:
    """One `bigmodel export` call, checked."""

    run_dir: Path
    format: str
    quantize: str = "none"
    calibration_examples: int | None = None  # None: DEFAULT_CALIBRATION_EXAMPLES (int8)
    max_metric_drop: float | None = None

    @property
    def calibration_count(self) -> int:
        return self.calibration_examples or DEFAULT_CALIBRATION_EXAMPLES

    def check(self) -> ExportRequest:
        """`self`, or a UserError listing every bad option."""
        problems = _choice("--format", self.format, FORMATS)
        problems += _choice("--quantize", self.quantize, QUANTIZATIONS)
        if self.format == "savedmodel" and self.quantize != "none":
            problems.append(
                f"--quantize {self.quantize}: quantization is for --format tflite; a "
                "SavedModel keeps the trained float32 weights (give --quantize none, or "
                "--format tflite)"
            )
        count = self.calibration_examples
        if count is not None and count < 1:
            problems.append(
                f"--calibration-examples {count}: give a number of training examples of "
                "at least 1 (default 200)"
            )
        elif count is not None and self.quantize != "int8":
            problems.append(
                f"--calibration-examples {count}: only --quantize int8 is calibrated; "
                f"--quantize {self.quantize} would not use it"
            )
        drop = self.max_metric_drop
        if drop is not None and not (drop >= 0 and math.isfinite(drop)):
            problems.append(
                f"--max-metric-drop {drop}: give how much worse the exported model may "
                "score, a number of 0 or more (e.g. 0.01 for one accuracy point)"
            )
        if problems:
            raise UserError(problems)
        return self


def _choice(option: str, value: str, choices: tuple[str, ...]) -> list[str]:
    if value in choices:
        return []
    hint = config_load.did_you_mean(value, choices)
    return [f"{option} {value!r}: unknown value.{hint} Expected one of {', '.join(choices)}"]

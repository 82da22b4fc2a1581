"""The `distill:` section: train this config's model (the student) to match a trained
run's model (the teacher) as well as the labels.

Only the section's own values are checked here. Whether the teacher is a finished run
of the same task, classes, inputs and vocabulary as the student's data is checked when
training starts (training/distill.py), before the run directory exists. Self-contained:
it imports only the schema's base.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from bigmodel_cli.config.base import Section

TEACHER_KEY = "distill.teacher"


class DistillConfig(Section):
    """Knowledge distillation: the loss is `hard_label_weight * loss(labels) + (1 -
    hard_label_weight) * temperature^2 * KL(teacher || student)` over both models'
    class probabilities softened by `temperature` (Hinton et al., 2015)."""

    teacher: str | None = Field(
        None,
        min_length=1,
        description="The run directory of the teacher, a finished `bigmodel train` run "
        "(relative to the current directory, as `bigmodel evaluate RUN_DIR`; config.yaml "
        "records it absolute). Often given on the command line: --set distill.teacher=RUN_DIR.",
    )
    temperature: float = Field(
        4.0,
        gt=0,
        le=1000,
        description="Softens both models' class probabilities before they are compared "
        "(softmax(logits / T)); 1 compares them as they are.",
    )
    hard_label_weight: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Weight of the loss on the labels; the teacher's term gets 1 - this. "
        "0: learn from the teacher alone; 1: ignore it.",
    )

    @field_validator("teacher")
    @classmethod
    def _teacher_is_a_path(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError(f"a path cannot contain a NUL character; received {value!r}")
        return value

"""The README's config reference, generated from the schema so the two never drift.

python -m bigmodel_cli.config.reference   # prints the Markdown tables
"""

from __future__ import annotations

import sys
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from bigmodel_cli import config as schema

SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("top level", schema.Config),
    ("data", schema.DataConfig),
    ("model (every type)", schema.ModelCommon),
    ("model: mlp", schema.MLPConfig),
    ("model: cnn", schema.CNNConfig),
    ("model.conv[] items", schema.ConvBlock),
    ("model: rnn", schema.RNNConfig),
    ("model: transformer", schema.TransformerConfig),
    ("model: sequential", schema.SequentialConfig),
    ("optimizer", schema.OptimizerConfig),
    ("optimizer.learning_rate schedule", schema.ScheduleConfig),
    ("loss", schema.LossConfig),
    ("regularization", schema.RegularizationConfig),
    ("train", schema.TrainConfig),
    ("train.early_stopping", schema.EarlyStoppingConfig),
    ("train.checkpoint", schema.CheckpointConfig),
    ("distribute", schema.DistributeConfig),
    ("output", schema.OutputConfig),
    ("distill", schema.DistillConfig),
    ("compress", schema.CompressConfig),
    ("compress.prune", schema.PruneConfig),
    ("tune", schema.TuneConfig),
    ("tune.space.KEY (one of)", schema.SearchRange),
    ("init", schema.InitConfig),
]
SECTION_KEYS = {
    "data", "optimizer", "regularization", "train", "distribute", "output", "compress", "tune",
    "init", "distill",
}  # fmt: skip


def _default(field) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        return "" if isinstance(value, BaseModel) else f"`{value}`"
    if field.default is PydanticUndefined:
        return "required"
    return "" if field.default is None else f"`{field.default}`"


def _choices(annotation) -> str:
    literals = [a for a in typing.get_args(annotation) if typing.get_origin(a) is typing.Literal]
    if typing.get_origin(annotation) is typing.Literal:
        literals = [annotation]
    values = [v for lit in literals for v in typing.get_args(lit)]
    return " (" + " \\| ".join(str(v) for v in values) + ")" if 1 < len(values) <= 12 else ""


# Said once above the tables: how values are read, and where the same rules are for tools.
PREAMBLE = [
    'Values are checked strictly, as the JSON Schema states them: `epochs: "3"` (a '
    "string) is refused, `epochs: 3.0` is 3, and `1e-3` is a number (as YAML 1.2 and "
    "editors read it). `bigmodel schema` prints these tables as a JSON Schema (draft "
    "2020-12) for editors and CI; a file with `base:` is checked as overrides (no key "
    "required), and rules across keys are checked by `bigmodel validate`.",
    "",
]


def markdown() -> str:
    lines: list[str] = list(PREAMBLE)
    common = set(schema.ModelCommon.model_fields)
    for title, section in SECTIONS:
        fields = section.model_fields
        if section is not schema.ModelCommon and issubclass(section, schema.ModelCommon):
            fields = {k: v for k, v in fields.items() if k not in common or k == "activation"
                      and section is schema.TransformerConfig}  # fmt: skip
        lines += [f"**{title}**", "", "| key | default | meaning |", "|---|---|---|"]
        for key, field in fields.items():
            if section is schema.Config and key in SECTION_KEYS | {"model", "loss"}:
                continue  # sections have tables of their own
            description = (field.description or "").replace("|", "\\|")
            choices = _choices(field.annotation)
            key = field.alias or key  # `init.from` is `from_` in Python
            lines.append(f"| `{key}` | {_default(field)} | {description}{choices} |")
        lines.append("")
    return "\n".join(lines)


def rewrite(readme: Path) -> None:
    text = readme.read_text(encoding="utf-8")
    start, end = "<!-- reference:start -->\n", "\n<!-- reference:end -->"
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    readme.write_text(head + start + markdown().strip() + end + tail, encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        rewrite(Path(sys.argv[1]))
    else:
        print(markdown())

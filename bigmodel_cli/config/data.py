"""The `data` config section: where examples come from, how they are split and batched,
and which keys each `data.source` reads."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from bigmodel_cli.config.base import (
    MAX_INT,
    ConfigKeyError,
    DataSource,
    Fraction,
    PositiveInt,
    Section,
)
from bigmodel_cli.config.sections import (
    MAX_IMAGE_SIDE,
    AugmentConfig,
    FeatureSpec,
)

MAX_SEQUENCE_LENGTH = 100_000
# Sources whose examples are cut to `sequence_length` (synthetic: for these tasks only).
SEQUENCE_SOURCES = ("text_dir", "text_corpus")
SEQUENCE_TASKS = ("sequence", "language_model")

# The keys each data.source reads (beyond the common ones); any other is an error. The
# JSON Schema (json_schema.py) states the same rule from this table.
SOURCE_KEYS: dict[str, set[str]] = {
    "synthetic": {"task", "examples", "features", "image_shape", "sequence_length",
                  "vocab_size", "classes", "noise", "augment"},
    "csv": {"path", "target", "features", "delimiter", "header", "skip_rows"},
    "npz": {"path", "augment"},
    "image_dir": {"path", "image_size", "color_mode", "augment", "cache"},
    "text_dir": {"path", "tokenizer", "max_tokens", "sequence_length"},
    "text_corpus": {"paths", "tokenizer", "sequence_length", "vocab_size", "max_bytes"},
    "tfrecord": {"paths", "feature_spec", "target", "augment", "cache"},
}  # fmt: skip
SOURCE_SPECIFIC_KEYS = set().union(*SOURCE_KEYS.values())
# The keys a source cannot do without.
SOURCE_NEEDS: dict[str, tuple[str, ...]] = {
    "csv": ("path", "target"),
    "npz": ("path",),
    "image_dir": ("path",),
    "text_dir": ("path",),
    "text_corpus": ("paths",),
    "tfrecord": ("paths", "feature_spec", "target"),
}


# A key another source spells differently: (the key this source reads, how to write it).
SIBLING_KEYS: dict[str, tuple[str, str]] = {
    "path": ("paths", "a list of files or glob patterns; write `paths: [{value}]`"),
    "paths": ("path", "one {what}; write `path: {first}`"),
    "image_shape": ("image_size", "write `image_size: {hw}` (channels come from `color_mode`)"),
    "image_size": ("image_shape", "[height, width, channels]"),
    "max_tokens": ("vocab_size", "the size of its `tokenizer: bpe` vocabulary"),
    "vocab_size": ("max_tokens", "the size of its vocabulary"),
}


def _unused_key(source: str, key: str, value: object) -> str:
    """The message for a data key `source` does not read, naming the key it reads instead
    when another source spells the same setting differently."""
    users = [s for s, keys in SOURCE_KEYS.items() if key in keys]
    listing = " and ".join([", ".join(users[:-1]), users[-1]] if len(users) > 1 else users)
    verb = "do" if len(users) > 1 else "does"
    message = f"data.source={source!r} does not use `{key}` (only {listing} {verb})."
    sibling, how = SIBLING_KEYS.get(key, ("", ""))
    if sibling not in SOURCE_KEYS.get(source, ()):
        return f"{message} Remove it."
    values = value if isinstance(value, list) else [value]
    how = how.format(
        value=", ".join(json.dumps(v) for v in values),
        first=json.dumps(values[0]) if len(values) == 1 else "FILE",
        what="folder" if source in ("image_dir", "text_dir") else "file",
        hw=json.dumps(values[:2]),
    )
    return f"{message} It reads `{sibling}` instead: {how}."


class DataConfig(Section):
    """Where examples come from, how they are split, batched and normalized."""

    source: DataSource = Field(
        "digits",
        description="Built-in dataset, `synthetic`, a file type (`csv`, `npz`, `tfrecord`), a "
        "folder of class sub-folders (`image_dir`, `text_dir`), or text files for a "
        "language model (`text_corpus`).",
    )
    validation_split: Fraction = Field(
        0.1, description="Fraction of the examples held out for validation (seeded)."
    )
    test_split: Fraction = Field(
        0.1,
        description="Fraction held out for `bigmodel evaluate` (ignored when an npz "
        "file brings its own x_test/y_test).",
    )
    batch_size: PositiveInt = Field(
        32, le=1_000_000, description="Global batch size, split across replicas."
    )
    shuffle: bool = Field(True, description="Reshuffle the training split every epoch.")
    normalize: bool = Field(
        True,
        description="Standardize float inputs with mean/std of the training split "
        "(per feature; per channel for images). Token inputs are never normalized.",
    )
    limit: PositiveInt | None = Field(
        None, description="Use only the first N examples (after a seeded shuffle)."
    )
    # synthetic
    task: Literal["classification", "regression", "image", "sequence", "language_model"] | None = (
        Field(None, description="synthetic: what kind of examples to generate.")
    )
    examples: PositiveInt | None = Field(
        None, le=10_000_000, description="synthetic: number of examples (default 2000)."
    )
    features: PositiveInt | list[str] | None = Field(
        None,
        description="synthetic: features per example (default 20); csv: the input "
        "columns (default: every column but the target).",
    )
    image_shape: list[PositiveInt] | None = Field(
        None, description="synthetic image: [height, width, channels] (default [16, 16, 1])."
    )
    sequence_length: PositiveInt | None = Field(
        None,
        le=MAX_SEQUENCE_LENGTH,
        description="synthetic sequence/language_model, text_dir, text_corpus: tokens (or "
        "steps) per example. Default: a transformer's `model.max_length` when set, else 32 "
        "(synthetic sequence), 64 (synthetic language_model), 200 (text_dir), 256 "
        "(text_corpus).",
    )
    vocab_size: PositiveInt | None = Field(
        None,
        le=1_000_000,
        description="synthetic sequence/language_model: integer tokens in [0, vocab_size). "
        "For `sequence`, omit it to get float-valued sequences. text_corpus with "
        "tokenizer bpe: the subword vocabulary size (default 1024).",
    )
    classes: PositiveInt | None = Field(
        None, ge=2, le=100_000, description="synthetic classification/image/sequence: classes."
    )
    noise: float | None = Field(
        None, ge=0.0, le=10.0, description="synthetic: label/feature noise (default 0.1)."
    )
    # files
    path: str | None = Field(
        None,
        description="csv/npz: path of the file; image_dir/text_dir: the folder with one "
        "sub-folder per class (relative to the config file's folder, or absolute).",
    )
    paths: list[str] | None = Field(
        None,
        description="text_corpus/tfrecord: files or glob patterns (`**` recurses), relative "
        "to the config file's folder or absolute; `{stdlib}` stands for this Python's "
        "standard-library folder.",
    )
    image_size: list[Annotated[int, Field(ge=1, le=MAX_IMAGE_SIDE)]] | None = Field(
        None,
        description="image_dir: [height, width] every image is resized to (default [64, 64]; "
        f"at most {MAX_IMAGE_SIDE} each).",
    )
    color_mode: Literal["grayscale", "rgb", "rgba"] | None = Field(
        None, description="image_dir: channels to decode to (default rgb)."
    )
    augment: AugmentConfig | None = Field(
        None, description="image data: random transformations of training batches."
    )
    cache: Literal["none", "disk"] | None = Field(
        None,
        description="image_dir, tfrecord images: `disk` decodes each split once into a "
        "file of uint8 pixels in the cache folder, read by later epochs and runs instead "
        "of decoding again (default none: decoded every epoch).",
    )
    tokenizer: Literal["word", "character", "byte", "bpe"] | None = Field(
        None,
        description="text_dir: `word` (default) or `character`; text_corpus: `byte` "
        "(default) or `bpe` (a subword vocabulary of `vocab_size` learned from the "
        "training portion).",
    )
    max_tokens: PositiveInt | None = Field(
        None,
        le=1_000_000,
        description="text_dir: vocabulary size, including padding and out-of-vocabulary "
        "(default 20000).",
    )
    max_bytes: PositiveInt | None = Field(
        None, description="text_corpus: read at most this many bytes (default: all)."
    )
    feature_spec: dict[str, FeatureSpec] | None = Field(
        None,
        description="tfrecord: the features of each record, by name; `target` names the "
        "label and the one other feature is the input.",
    )
    target: str | int | None = Field(
        None,
        description="csv: the label column, by name or by position (0 is the first column, "
        "-1 the last); tfrecord: the name of the label feature.",
    )
    delimiter: str | None = Field(
        None, min_length=1, max_length=1, description="csv: field separator (default `,`)."
    )
    header: bool | None = Field(
        None,
        description="csv: the first row holds the column names (default true). With false, "
        "every row is data and the columns are named column_0, column_1, ...",
    )
    skip_rows: int | None = Field(
        None,
        ge=0,
        le=MAX_INT,
        description="csv: rows to skip at the start of the file, before the header (or the "
        "data), e.g. 1 for a first line that is neither, as in scikit-learn's own csv files "
        "(`150,4,setosa,versicolor,virginica`). Default 0.",
    )

    @model_validator(mode="after")
    def _keys_fit_source(self) -> DataConfig:
        allowed = SOURCE_KEYS.get(self.source, set())
        # By value, not by "was it written": config.yaml spells out every default.
        unused = [
            (key, _unused_key(self.source, key, getattr(self, key)))
            for key in sorted(SOURCE_SPECIFIC_KEYS - allowed)
            if getattr(self, key) is not None
        ]
        if unused:
            raise ConfigKeyError.collect(unused)
        for key in ("path", "paths"):
            if key in SOURCE_NEEDS.get(self.source, ()) and not getattr(self, key):
                raise ConfigKeyError(key, f"data.source={self.source!r} needs `{key}`.")
        self._check_source_specifics()
        if self.source == "csv" and self.target in (None, ""):
            raise ConfigKeyError(
                "target", "data.source='csv' needs `target`, the label column (name or index)."
            )
        if self.source == "synthetic" and isinstance(self.features, list):
            raise ConfigKeyError("features", "synthetic data takes a number of features.")
        if self.source == "csv" and isinstance(self.features, int):
            raise ConfigKeyError("features", "csv takes a list of column names.")
        if self.image_shape is not None and len(self.image_shape) != 3:
            raise ConfigKeyError("image_shape", "expected [height, width, channels].")
        if self.validation_split + self.test_split >= 0.9:
            raise ConfigKeyError(
                "validation_split",
                f"validation_split + test_split = {self.validation_split + self.test_split:g}"
                " leaves less than 10% of the data for training.",
            )
        return self

    def _check_source_specifics(self) -> None:
        tokenizers = {"text_dir": ("word", "character"), "text_corpus": ("byte", "bpe")}
        if self.tokenizer and self.tokenizer not in tokenizers.get(self.source, ()):
            allowed = " or ".join(tokenizers[self.source])
            raise ConfigKeyError("tokenizer", f"data.source={self.source!r} takes {allowed}.")
        if self.source == "text_corpus" and self.vocab_size and self.tokenizer != "bpe":
            raise ConfigKeyError(
                "vocab_size", "only `tokenizer: bpe` learns a vocabulary of a chosen size."
            )
        if self.source == "text_corpus" and self.vocab_size and self.vocab_size < 300:
            raise ConfigKeyError(
                "vocab_size", "a bpe vocabulary starts from the bytes it sees; use >= 300."
            )
        if self.image_size is not None and len(self.image_size) != 2:
            raise ConfigKeyError("image_size", "expected [height, width].")
        if self.source == "tfrecord":
            spec = self.feature_spec or {}
            if not isinstance(self.target, str) or self.target not in spec:
                raise ConfigKeyError(
                    "target", "tfrecord needs `target`, the name of a feature in feature_spec."
                )
            if len(spec) != 2:
                raise ConfigKeyError(
                    "feature_spec",
                    f"expected two features, the input and the target `{self.target}`; "
                    f"received {len(spec)} ({', '.join(spec) or 'none'}).",
                )

    @field_validator("paths", mode="before", json_schema_input_type=str | list[str] | None)
    @classmethod
    def _one_path_is_a_list(cls, value):
        return [value] if isinstance(value, str) else value

    @field_validator("path", "paths")
    @classmethod
    def _no_nul_in_paths(cls, value):
        for path in [value] if isinstance(value, str) else value or []:
            if "\x00" in path:  # else the OS refuses it later, with a traceback
                raise ValueError(f"a path cannot contain a NUL character; received {path!r}")
        return value

"""Tests of bigmodel_cli/config: loading, validation, the JSON Schema, fuzzing."""

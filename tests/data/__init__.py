"""Tests of bigmodel_cli/data: every source, splits, layout, pipelines, hostile files."""

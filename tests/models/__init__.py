"""Tests of bigmodel_cli/models and the registry: builders, FLOPs, memory, saved files."""

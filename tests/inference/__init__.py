"""Tests of bigmodel_cli/inference: evaluate, predict, generate, and old run directories."""

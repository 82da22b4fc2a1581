"""Tests of bigmodel_cli/experiments: tune, runs, compare, plot."""

"""Tests of bigmodel_cli/training: resume, kills, signals, strategies, full disks, smoke."""

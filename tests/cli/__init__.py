"""Tests through the command line: exit codes, output, hostile arguments, real processes."""

"""Defaults the readers and their callers share, defined once: the tokens (or steps) per
example when `data.sequence_length` is not set. (The config's description of
`sequence_length` lists the same numbers.)"""

from __future__ import annotations

TEXT_DIR_SEQUENCE_LENGTH = 200
TEXT_CORPUS_SEQUENCE_LENGTH = 256
SYNTHETIC_SEQUENCE_LENGTH = {"sequence": 32, "language_model": 64}  # by data.task

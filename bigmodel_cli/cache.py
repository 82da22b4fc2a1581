"""The folder bigmodel keeps what it can recompute: the measured peak FLOP/s, the token
files of text corpora (tokens/), the decoded images of `data.cache: disk` (images/).
`BIGMODEL_CACHE_DIR`, else `$XDG_CACHE_HOME/bigmodel`, else `~/.cache/bigmodel`;
deleting it at any time loses only the time to rebuild it."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    root = os.environ.get("BIGMODEL_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "bigmodel"
    )
    return Path(root)

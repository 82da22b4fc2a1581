"""Import TensorFlow lazily and quietly.

TensorFlow's C++ logs (oneDNN notices, CUDA stubs) and Python warnings drown the
output a person wants; they are silenced unless `--verbose`. The environment variable
must be set before the first `import tensorflow`, which is why every command goes
through `import_tensorflow()` instead of importing it at module level.
"""

from __future__ import annotations

import logging
import os
import warnings
from types import ModuleType

_verbose = False


def set_verbose(verbose: bool) -> None:
    global _verbose
    _verbose = verbose


def import_tensorflow() -> ModuleType:
    """Import tensorflow (once), with its log noise silenced unless verbose."""
    if not _verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    if not _verbose:
        tf.get_logger().setLevel(logging.ERROR)
        logging.getLogger("absl").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", module=r"tf_keras.*")
        warnings.filterwarnings("ignore", module=r"tensorflow.*")
    return tf

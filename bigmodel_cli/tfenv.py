"""Import TensorFlow lazily and quietly.

TensorFlow's C++ logs (CUDA stubs, cuInit failures on machines without a GPU, CPU
feature notices) and Python warnings drown the output a person wants; they are
silenced unless `--verbose`. TF 2.21 writes some of them through absl before its log
level is read, so `TF_CPP_MIN_LOG_LEVEL` alone does not stop them: while TensorFlow
imports and initializes its devices, file descriptor 2 points at /dev/null. Every
command goes through `import_tensorflow()` before touching anything that imports TF.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from types import ModuleType

_verbose = False


def set_verbose(verbose: bool) -> None:
    """Called by the CLI before any command runs, so even an indirect import is quiet."""
    global _verbose
    _verbose = verbose
    _quiet_environment()


def _quiet_environment() -> None:
    if not _verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send C/C++ writes to fd 2 to /dev/null; Python's sys.stderr is left alone."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded, some test runners)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow() -> ModuleType:
    """Import tensorflow and tf_keras (once) and initialize devices, quietly unless verbose."""
    _quiet_environment()
    if "tensorflow" in sys.modules and "tf_keras" in sys.modules:
        return sys.modules["tensorflow"]
    quiet = _native_stderr_silenced() if not _verbose else contextlib.nullcontext()
    with quiet:
        import tensorflow as tf
        import tf_keras  # noqa: F401 - imported here so its import is quiet too

        tf.config.list_logical_devices()  # device discovery logs the CUDA probes
    if not _verbose:
        tf.get_logger().setLevel(logging.ERROR)
        logging.getLogger("absl").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", module=r"tf_keras.*")
        warnings.filterwarnings("ignore", module=r"tensorflow.*")
    return tf

"""Import TensorFlow lazily and quietly.

TensorFlow's C++ logs (CUDA stubs, cuInit failures on machines without a GPU, CPU
feature notices) and Python warnings drown the output a person wants; they are
silenced unless `--verbose`. TF 2.21 writes some of them through absl before its log
level is read, so `TF_CPP_MIN_LOG_LEVEL` alone does not stop them: while TensorFlow
imports and initializes its devices, file descriptor 2 points at /dev/null. Every
command goes through `import_tensorflow()` before touching anything that imports TF.

This is the one module that imports `tensorflow` and `tf_keras` (ruff's banned-api rule
holds every other module to `import_tensorflow()` / `import_keras()`), so the quieting,
and `TF_USE_LEGACY_KERAS=1` from the package's `__init__`, always come first.
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
_real_stderr_fd: int | None = None  # fd 2 as it was, while native logs are silenced


def set_verbose(verbose: bool) -> None:
    """Called by the CLI before any command runs, so even an indirect import is quiet."""
    global _verbose
    _verbose = verbose
    _quiet_environment()


def _quiet_environment() -> None:
    if not _verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def quiet_native_logs() -> contextlib.AbstractContextManager:
    """Silence C++ log lines for a block (device discovery logs CUDA probes), unless verbose."""
    return _native_stderr_silenced() if not _verbose else contextlib.nullcontext()


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send C/C++ writes to fd 2 to /dev/null; Python's sys.stderr is left alone."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded, some test runners)
        yield
        return
    global _real_stderr_fd
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        _real_stderr_fd = saved
        yield
    finally:
        _real_stderr_fd = None
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def write_to_real_stderr(text: str) -> None:
    """Write to the terminal's stderr even while native logs are silenced."""
    sys.stderr.flush()
    os.write(_real_stderr_fd if _real_stderr_fd is not None else 2, text.encode())


def import_tensorflow() -> ModuleType:
    """Import tensorflow and tf_keras (once), quietly unless verbose.

    Devices are *not* initialized here: a multi-worker strategy must be created before
    they are. Wrap device discovery in `quiet_native_logs()`.
    """
    _quiet_environment()
    if "tensorflow" in sys.modules and "tf_keras" in sys.modules:
        return sys.modules["tensorflow"]
    with quiet_native_logs():
        import tensorflow as tf
        import tf_keras  # noqa: F401 - imported here so its import is quiet too
    if not _verbose:
        tf.get_logger().setLevel(logging.ERROR)
        logging.getLogger("absl").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", module=r"tf_keras.*")
        warnings.filterwarnings("ignore", module=r"tensorflow.*")
    return tf


def import_keras() -> ModuleType:
    """tf_keras, the Keras every module uses (imported quietly with TensorFlow)."""
    import_tensorflow()
    return sys.modules["tf_keras"]


def import_tfmot() -> ModuleType:
    """tensorflow-model-optimization (pruning), on the same tf_keras as everything else.

    `TF_USE_LEGACY_KERAS=1` (set by the package's `__init__`, before TensorFlow loads)
    makes tfmot build on tf_keras. Its pruning registry still tries `from keras.src.engine
    import base_layer` (a module of Keras 2.13's layout) for one layer class, which would
    import Keras 3 into the process only to fail there; while tfmot loads, `keras` is made
    unimportable so that attempt fails at once (tfmot then skips that class, which only
    whole-model pruning of raw TensorFlow ops uses) and one Keras stays in the process.
    """
    import_tensorflow()
    if "tensorflow_model_optimization" in sys.modules:
        return sys.modules["tensorflow_model_optimization"]
    blocked = "keras" not in sys.modules
    if blocked:
        sys.modules["keras"] = None  # type: ignore[assignment]  # import keras -> ImportError
    try:
        with quiet_native_logs():
            import tensorflow_model_optimization as tfmot
    finally:
        if blocked:
            del sys.modules["keras"]
    return tfmot

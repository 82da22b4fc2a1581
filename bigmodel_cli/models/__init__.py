"""Model builders: one pure function per `model.type`, `build_model` dispatches; also the
FLOPs count (`flops`), the layer summary (`summary`) and the memory estimate (`memory`).

Each builder is `build_x(cfg: Config, spec: DataSpec) -> keras.Model`, uses the
functional API (sequential: `keras.Sequential`), names the model after `cfg.name`, and
adds no layer the config did not ask for. The builders import TensorFlow; this package
itself does not (`build_model` and `BUILDERS` load on first use), so `models.memory`
answers `bigmodel validate --no-build` without TensorFlow.
"""

from __future__ import annotations

# Everything `build.py` defines or imports: the table, the dispatch and each builder.
_BUILD_NAMES = (
    "BUILDERS",
    "build_cnn",
    "build_mlp",
    "build_model",
    "build_rnn",
    "build_sequential",
    "build_transformer",
)


def __getattr__(name: str):
    if name in _BUILD_NAMES:
        from bigmodel_cli.models import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_BUILD_NAMES)

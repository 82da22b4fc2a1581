"""Which way a monitored metric improves, and whether the run logs it at all.

Shared by everything that watches a metric (checkpoints/best.keras, early stopping, a
tuner's objective), as keras's monitor_callback.py is. No TensorFlow here: a tuner asks
for a direction without training anything.
"""

from __future__ import annotations

from bigmodel_cli.config import Config
from bigmodel_cli.errors import ConfigError

LOWER_IS_BETTER = ("loss", "mae", "mse", "rmse", "perplexity")


def monitor_mode(monitor: str) -> str:
    """`min` for losses and errors, `max` for accuracy-like metrics (Keras's `auto`
    guesses `min` for f1, precision and recall, which is wrong)."""
    name = monitor.removeprefix("val_")
    return "min" if name in LOWER_IS_BETTER or name.endswith("_loss") else "max"


def check_monitor(cfg: Config, metric_names: list[str], has_validation: bool) -> None:
    """train.early_stopping.monitor names a value fit() logs (checked before training)."""
    stopping = cfg.train.early_stopping
    if stopping is None:
        return
    # distill logs the two terms of its loss too (training/distill.py's LOSS_TERMS).
    known = ["loss", *(("hard_loss", "soft_loss") if cfg.distill else ()), *metric_names]
    if has_validation:
        known += [f"val_{name}" for name in known]
    if stopping.monitor not in known:
        hint = ""
        if stopping.monitor.startswith("val_") and not has_validation:
            hint = " (no validation split: set data.validation_split > 0)"
        raise ConfigError(
            f"train.early_stopping.monitor: {stopping.monitor!r} is not logged{hint}; "
            f"expected one of: {', '.join(known)}"
        )

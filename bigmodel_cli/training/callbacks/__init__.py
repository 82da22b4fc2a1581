"""The Keras callbacks of a training run, one concern per module.

throughput (epoch timings, read by the others), metrics_csv (metrics.csv), tensorboard
(scalars beyond Keras's own), checkpoints (best.keras, last.keras, model.keras),
nan_guard (the first NaN/Inf loss), execution (time per graph call, the time limit),
early_stopping (resumable), resume_backup (the backup for --resume), signals (SIGINT and
SIGTERM), progress (the console display) and monitor (which way a metric improves).
The order they run in is training/build_callbacks.py's.

Import from the modules themselves: this package's __init__ loads none of them, so
`monitor` stays usable without TensorFlow.
"""

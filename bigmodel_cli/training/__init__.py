"""Training: `train()` runs the recipe (launch.py, recipe.py) for `bigmodel train`,
`bigmodel smoke` (smoke.py) and a tuner's trials.

The recipe's steps, one module each, in the order they happen: runtime (strategy,
seeds, precision), prepare (data), build (model, compile), run_directory (claim it),
build_callbacks (their order), fit, summary. start.py reads where a run starts (a
config, or a run to resume), failures.py words what stops it; distill.py opens a
`distill:` teacher and adds its term to the student's loss. The resume backup's
format is backup.py's, its writing backup_writer.py's; callbacks/ holds the Keras
callbacks, one concern per module.

Importing this package loads no TensorFlow; calling `train()` does.
"""

from bigmodel_cli.training.callbacks.monitor import monitor_mode
from bigmodel_cli.training.launch import train
from bigmodel_cli.training.options import TrainOptions

__all__ = ["TrainOptions", "monitor_mode", "train"]

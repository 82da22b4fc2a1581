"""bigmodel: train Keras models from one YAML file."""

import os

# Before anything imports TensorFlow: `tf.keras` inside TensorFlow (and inside
# tensorflow-model-optimization) is then the same tf_keras that bigmodel builds with.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

__version__ = "0.1.0"

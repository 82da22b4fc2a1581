"""Data for training: read the source, split, normalize, lay out for the model, batch.

`load_data` (load.py) returns NumPy splits and a `DataSpec` without importing
TensorFlow; `make_dataset` (pipeline.py) turns one split into a `tf.data.Dataset`
(TensorFlow is imported there, when it is called).

- `sources/`: one reader per `data.source` value, behind the `READERS` table; readers
  share the leaf types of `raw.py` and helpers (`images`, `files`, `arrays`, ...).
- `splits.py` (seeded, stratified), `tokenize.py` (text to ids after the split),
  `normalize.py` (training-split statistics), `layout.py` (the shape the model reads).
- `text/`: the vocabularies (byte, bpe, word), saved as a run's `vocabulary.json`.
"""

from __future__ import annotations

from bigmodel_cli.data.layout import data_spec, layout_shape
from bigmodel_cli.data.load import describe, load_data
from bigmodel_cli.data.normalize import Normalization, bundle_normalization, fit_normalization
from bigmodel_cli.data.pipeline import make_dataset
from bigmodel_cli.data.splits import split_indices

__all__ = [
    "Normalization",
    "bundle_normalization",
    "data_spec",
    "describe",
    "fit_normalization",
    "layout_shape",
    "load_data",
    "make_dataset",
    "split_indices",
]

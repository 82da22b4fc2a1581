"""Readers: one per `data.source` value, behind one table (`READERS`), the only place
that names them all. Each reads its source into NumPy arrays in their native shape
(`raw.RawData`), or, for text_corpus, documents already dealt to the splits
(`raw.DealtDocuments`); no splitting, no normalization.

A reader imports only the leaf types (`data.raw`) and shared helpers (`data.images`,
`data.files`, `data.arrays`, ...), never this package or another reader, so a new source
is one module and one line here. TensorFlow and scikit-learn are imported inside the
readers that need them.

Sources: scikit-learn's bundled datasets (no download, `builtin.py`), seeded synthetic
data (`synthetic.py`), the user's csv and npz files, folders of images or texts (one
sub-folder per class), text files for a language model, and TFRecord files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bigmodel_cli.config import Config
from bigmodel_cli.config.base import BUILTIN_SOURCES
from bigmodel_cli.data.raw import DealtDocuments, RawData
from bigmodel_cli.data.sources.builtin import read_builtin
from bigmodel_cli.data.sources.csv_file import read_csv
from bigmodel_cli.data.sources.image_dir import read_image_dir
from bigmodel_cli.data.sources.npz import read_npz
from bigmodel_cli.data.sources.synthetic import read_synthetic
from bigmodel_cli.data.sources.text_corpus import read_text_corpus
from bigmodel_cli.data.sources.text_dir import read_text_dir
from bigmodel_cli.data.sources.tfrecord import read_tfrecords

Reader = Callable[[Config, Path], RawData | DealtDocuments]

# data.source -> its reader; covers every choice of the `data.source` Literal.
READERS: dict[str, Reader] = {
    **dict.fromkeys(BUILTIN_SOURCES, read_builtin),
    "synthetic": read_synthetic,
    "csv": read_csv,
    "npz": read_npz,
    "image_dir": read_image_dir,
    "text_dir": read_text_dir,
    "text_corpus": read_text_corpus,
    "tfrecord": read_tfrecords,
}


def read_source(cfg: Config, base_dir: Path) -> RawData | DealtDocuments:
    """Read `cfg.data.source` (relative paths resolve against `base_dir`)."""
    return READERS[cfg.data.source](cfg, Path(base_dir))

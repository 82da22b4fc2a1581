"""scikit-learn's bundled datasets (`data.source: digits`, `iris`, ...): no download."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bigmodel_cli.config import Config
from bigmodel_cli.data.raw import RawData

BUILTIN = {
    "digits": ("load_digits", "1797 8x8 grayscale images of handwritten digits, values 0..16"),
    "iris": ("load_iris", "150 iris flowers, 4 measurements, 3 species"),
    "wine": ("load_wine", "178 wines, 13 chemical measurements, 3 cultivars"),
    "breast_cancer": ("load_breast_cancer", "569 tumours, 30 features, malignant or benign"),
    "diabetes": ("load_diabetes", "442 patients, 10 features, disease progression (regression)"),
}


def read_builtin(cfg: Config, base_dir: Path) -> RawData:
    """The bundled dataset `data.source` names (digits as 8x8x1 images)."""
    from sklearn import datasets  # ~1 s import; only pay it for built-in sources

    source = cfg.data.source
    loader, about = BUILTIN[source]
    bunch = getattr(datasets, loader)()
    description = f"{source} (scikit-learn): {about}"
    x = bunch.data.astype(np.float32)
    if source == "diabetes":
        y = bunch.target.astype(np.float32).reshape(-1, 1)
        return RawData(x=x, y=y, task="regression", kind="tabular", description=description)
    names = tuple(str(name) for name in bunch.target_names)
    kind = "tabular"
    if source == "digits":
        x, kind = x.reshape(-1, 8, 8, 1), "image"
    return RawData(
        x=x,
        y=bunch.target.astype(np.int64),
        task="classification",
        kind=kind,
        description=description,
        num_classes=len(names),
        class_names=names,
    )

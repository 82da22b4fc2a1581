"""Exporting a trained run for deployment: a SavedModel or a TFLite file under
`RUN_DIR/export/`, with the run's normalization inside the graph, re-scored on the test
split against the Keras model (`export.json`). It uses `inference` to open the run and
never trains."""

from bigmodel_cli.export.export import export_run  # noqa: F401
from bigmodel_cli.export.options import ExportRequest  # noqa: F401

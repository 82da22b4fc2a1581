"""Imported by the fork server `bigmodel smoke` starts its workers from: TensorFlow
imported (quietly), and no op run, so each forked worker starts its own runtime."""

from bigmodel_cli.tfenv import import_tensorflow

import_tensorflow()

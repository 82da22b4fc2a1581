"""How fast a config's training batches come without a model: what the input pipeline
could feed the training step on this machine (issue 12's "the input pipeline keeps up").

python bench/pipeline_alone.py CONFIG   prints examples/s

The bench scripts run it in a process of its own (`examples_per_second`), as training
would run the pipeline: its data loaded by `bigmodel_cli.data.load_data`, its batches
made by `make_dataset` as `bigmodel train` makes them, 20 batches of warm-up, then
BATCHES batches timed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
BATCHES = 300


def measure(path: Path) -> float:
    from bigmodel_cli.config import load_config
    from bigmodel_cli.data.load import load_data
    from bigmodel_cli.data.pipeline import make_dataset

    cfg = load_config(path)
    bundle = load_data(cfg, path.parent)
    batches = iter(make_dataset(bundle.train, cfg, bundle.spec, training=True, start=(0, 0)))
    for _ in range(20):
        next(batches)
    started = time.perf_counter()
    examples = sum(len(next(batches)[1]) for _ in range(BATCHES))
    return examples / (time.perf_counter() - started)


def examples_per_second(path: Path, env: dict) -> int:
    """`measure` in a process of its own."""
    process = subprocess.run([sys.executable, __file__, str(path)],
                             capture_output=True, text=True, env=env, cwd=ROOT)  # fmt: skip
    if process.returncode != 0:
        raise SystemExit(f"the pipeline measurement failed:\n{process.stderr[-3000:]}")
    return round(float(process.stdout.split()[-1]))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # bigmodel_cli from this checkout, as `-m` finds it
    print(measure(Path(sys.argv[1])))

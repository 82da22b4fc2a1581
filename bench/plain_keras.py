"""The plain Keras recipe: `model.fit(x, y, batch_size=32)` on NumPy arrays.

python bench/plain_keras.py bench/configs/cnn_28x28.yaml   # prints one JSON line

Everything is Keras's default (shuffle, progress bar, one step per graph call), with
the config's model, optimizer, loss, metrics, epochs and validation split.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import workload  # noqa: E402


def main() -> None:
    args = workload.parse_args(__doc__)
    work = workload.load_workload(args.config, args.overrides)
    workload.seed_and_quiet(work.seed)
    model = workload.build_model(work)
    model.compile(**workload.compile_args(work))
    timer = workload.epoch_timer()
    validation = (work.x_val, work.y_val) if work.x_val is not None else None
    start = time.perf_counter()
    # The default progress bar stays on (it is part of the recipe); it goes to stderr
    # so that stdout carries only the result line.
    with contextlib.redirect_stdout(sys.stderr):
        model.fit(
            work.x_train,
            work.y_train,
            batch_size=work.batch_size,
            epochs=work.epochs,
            validation_data=validation,
            callbacks=[timer],
        )
    workload.report(work, model, timer, time.perf_counter() - start)


if __name__ == "__main__":
    main()

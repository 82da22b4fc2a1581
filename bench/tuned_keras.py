"""A hand-tuned Keras script: what an expert writes without bigmodel.

python bench/tuned_keras.py bench/configs/cnn_28x28.yaml --steps-per-execution 5

tf.data from the same arrays (shuffle every epoch, batch, prefetch), the same
`steps_per_execution` bigmodel chose (read from its summary.json by bench/run.py), no
progress bar; model, optimizer, loss, metrics, epochs and validation as the config says.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import workload  # noqa: E402


def dataset(x, y, batch_size: int, seed: int, shuffle: bool):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def main() -> None:
    extra = {"--steps-per-execution": {"type": int, "required": True}}
    args = workload.parse_args(__doc__, extra)
    work = workload.load_workload(args.config, args.overrides)
    workload.seed_and_quiet(work.seed)
    model = workload.build_model(work)
    model.compile(**workload.compile_args(work), steps_per_execution=args.steps_per_execution)
    train = dataset(work.x_train, work.y_train, work.batch_size, work.seed, shuffle=True)
    validation = None
    if work.x_val is not None:
        validation = dataset(work.x_val, work.y_val, work.batch_size, work.seed, shuffle=False)
    timer = workload.epoch_timer()
    start = time.perf_counter()
    model.fit(train, validation_data=validation, epochs=work.epochs, callbacks=[timer], verbose=0)
    workload.report(
        work,
        model,
        timer,
        time.perf_counter() - start,
        steps_per_execution=args.steps_per_execution,
    )


if __name__ == "__main__":
    main()

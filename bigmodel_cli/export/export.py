"""`bigmodel export RUN_DIR --format savedmodel|tflite`: a deployable file under
`RUN_DIR/export/`, re-scored on the test split against the run's Keras model.

    export/saved_model/           --format savedmodel (signature `serving_default`)
    export/model.tflite           --format tflite (float32); model_dynamic.tflite,
                                  model_float16.tflite, model_int8.tflite when quantized
    export/export.json            one entry per file, rewritten whole after each export

A file is named by what it is: an int8 request that had to fall back to dynamic range
quantization writes model_dynamic.tflite, and its entry says why.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from bigmodel_cli import run_dir
from bigmodel_cli.config import Config
from bigmodel_cli.errors import UserError
from bigmodel_cli.export import graph, measure, report
from bigmodel_cli.export.options import ExportRequest
from bigmodel_cli.spec import Arrays
from bigmodel_cli.tfenv import import_tensorflow, quiet_native_logs

SAVED_MODEL = "saved_model"


def tflite_name(quantize: str) -> str:
    return "model.tflite" if quantize == "none" else f"model_{quantize}.tflite"


def _finished_run(path: Path) -> run_dir.RunDir:
    from bigmodel_cli.inference.open_run import run_dir_problem

    problem = run_dir_problem(path)
    if problem:
        raise UserError(problem)
    run = run_dir.RunDir(Path(path))
    if not run.summary.is_file():
        raise UserError(
            f"{path}: the run has not finished (no {run_dir.SUMMARY}), so it has no final "
            f"model to export; finish it with `bigmodel train --resume {path}`, then export"
        )
    return run


def _scored_split(bundle, cfg: Config) -> tuple[str, Arrays]:
    """The test split (the validation split when there is none), bounded as evaluate's."""
    for name in ("test", "validation"):
        arrays = bundle.split(name)
        if arrays is not None and len(arrays):
            return name, arrays.bounded(cfg.train.validation_steps, cfg.data.batch_size)
    raise UserError(
        "data.test_split: the run holds out no test or validation examples, so the "
        "exported model cannot be checked against the trained one; export needs a run "
        "trained with data.test_split > 0"
    )


def calibration_sample(train: Arrays, cfg: Config, count: int, dtype: str) -> np.ndarray:
    """`count` training examples (all of them when there are fewer), drawn with the
    run's seed, in their order in the split: the same sample on every export."""
    rng = np.random.default_rng(cfg.seed)
    chosen = np.sort(rng.choice(len(train), size=min(count, len(train)), replace=False))
    return np.asarray(train.x[chosen], dtype=dtype)


def _raw_data(trained):
    """The run's own data, split as in training but not normalized: the exported
    model normalizes inside."""
    from bigmodel_cli.data import load_data

    cfg = trained.cfg
    raw_cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"normalize": False})})
    return load_data(raw_cfg, trained.run.root, vocabulary=trained.vocabulary, same_corpus=True)


def export_run(request: ExportRequest) -> dict[str, Any]:
    """Write the requested file, score it and the Keras model on the test split, record
    both in export.json; the entry (see `entry`) is returned."""
    request.check()
    run = _finished_run(request.run_dir)
    tf = import_tensorflow()
    from bigmodel_cli.config import defaults
    from bigmodel_cli.inference.open_run import load_run_model, open_run

    trained = open_run(run.root, recorded_data=True)
    cfg = trained.cfg
    bundle = _raw_data(trained)
    spec = bundle.spec
    split, arrays = _scored_split(bundle, cfg)
    model, model_path = load_run_model(run, cfg, spec)
    interface = graph.interface_of(model, spec, defaults.effective_loss(cfg, spec).from_logits)

    def make_module(batch: int | None = None):
        return graph.serving_module(model, interface, trained.normalization, batch)

    batches = measure.test_batches(arrays, cfg, spec)
    run.export.mkdir(exist_ok=True)
    started = time.perf_counter()
    if request.format == "savedmodel":
        target, made, note = run.export / SAVED_MODEL, {"quantize": "none"}, None
        with quiet_native_logs():
            graph.save_saved_model(make_module(), target)
        signature = tf.saved_model.load(str(target)).signatures[graph.SIGNATURE]
        call = lambda x: signature(**{graph.INPUT_NAME: tf.constant(x)})  # noqa: E731
    else:
        target, call, made, note = _write_tflite(
            request, run, make_module, interface, (bundle.train, cfg), batches[0][0]
        )
    seconds = time.perf_counter() - started
    keras_call = measure.keras_model(model, trained.normalization)
    exported_call = measure.exported_model(call, interface)
    scores = {
        "keras": measure.score(keras_call, batches, cfg, spec),
        "exported": measure.score(exported_call, batches, cfg, spec),
    }
    inputs = [x for x, _ in batches]
    speed = {
        "keras": measure.examples_per_second(keras_call, inputs),
        "exported": measure.examples_per_second(exported_call, inputs),
    }
    result = report.entry(
        request, run, target, model_path, interface, made, note, bool(trained.normalization)
    )
    result.update(seconds=round(seconds, 3), split=split, examples=len(arrays))
    result["batch_size"] = cfg.data.batch_size
    result.update(report.comparison(scores, defaults.effective_metrics(cfg, spec),
                                    request.max_metric_drop))  # fmt: skip
    result["examples_per_second"] = speed
    report.record(run, target.name, result)
    return result


def _write_tflite(request, run, make_module, interface, training, sample):
    """Convert, write and reopen the TFLite file; `training`: (train split, config),
    where int8 calibration examples are drawn from."""
    from bigmodel_cli.export import tflite

    train, cfg = training
    count = request.calibration_count
    converted = tflite.convert(
        make_module,
        interface,
        request.quantize,
        sample=sample,
        calibration=lambda: calibration_sample(train, cfg, count, interface.input_dtype),
    )
    target = run.export / tflite_name(converted.quantize)
    run_dir.atomic_write(target, lambda tmp: tmp.write_bytes(converted.content))
    made: dict[str, Any] = {"quantize": converted.quantize, "batch": converted.batch}
    if converted.quantize == "int8":
        made["calibration_examples"] = min(count, len(train))
        made["float_ops"] = sorted(set(converted.float_ops))
    if converted.fallbacks:
        made["fallbacks"] = converted.fallbacks
    # Scored from the file on disk: what was written is what is checked.
    return target, tflite.LiteRTModel(target.read_bytes()), made, converted.note(request.quantize)

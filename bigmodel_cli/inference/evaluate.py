"""Score a model on a split: the same function at the end of `train` and in `evaluate`,
so summary.json and eval.json agree by construction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bigmodel_cli import run_dir
from bigmodel_cli.config import Config, LossConfig
from bigmodel_cli.config import load as config_load
from bigmodel_cli.errors import UserError
from bigmodel_cli.spec import Arrays, DataSpec
from bigmodel_cli.tfenv import import_tensorflow

SPLITS = ("train", "validation", "test")
MAX_REPORTED_CLASSES = 100  # past this a per-class table stops being readable


def score(model: Any, arrays: Arrays, cfg: Config, spec: DataSpec) -> dict[str, float]:
    """Loss and metrics of a compiled model on one split (its first
    `train.validation_steps` batches when that is set)."""
    from bigmodel_cli.data import make_dataset

    arrays = arrays.bounded(cfg.train.validation_steps, cfg.data.batch_size)
    dataset = make_dataset(arrays, cfg, spec, training=False)
    results = model.evaluate(dataset, return_dict=True, verbose=0)
    return {name: float(value) for name, value in results.items()}


def _predicted_classes(
    model: Any, arrays: Arrays, cfg: Config, spec: DataSpec, loss_cfg: LossConfig
) -> np.ndarray:
    from bigmodel_cli.data import make_dataset

    outputs = model.predict(make_dataset(arrays, cfg, spec, training=False), verbose=0)
    if outputs.shape[-1] == 1:  # one sigmoid (or logit) unit: binary
        threshold = 0.0 if loss_cfg.from_logits else 0.5
        return (outputs[:, 0] > threshold).astype(np.int64)
    return np.argmax(outputs, axis=-1)


def classification_report(
    model: Any, arrays: Arrays, cfg: Config, spec: DataSpec, loss_cfg: LossConfig
) -> dict[str, Any]:
    """Per-class precision/recall/F1 and the confusion matrix (rows: true classes)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    y_true = np.asarray(arrays.y).reshape(len(arrays.y), -1)[:, 0].astype(np.int64)
    y_pred = _predicted_classes(model, arrays, cfg, spec, loss_cfg)
    classes = list(range(spec.num_classes or int(max(y_true.max(), y_pred.max()) + 1)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=0
    )
    names = list(spec.class_names or [str(c) for c in classes])
    return {
        "per_class": {
            names[c]: {
                "precision": float(precision[c]),
                "recall": float(recall[c]),
                "f1": float(f1[c]),
                "support": int(support[c]),
            }
            for c in classes
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=classes).tolist(),
        "class_names": names,
    }


def load_for_scoring(run: run_dir.RunDir, cfg: Config, spec: DataSpec) -> tuple[Any, Path]:
    """The run's best model, compiled with the config's loss and metrics."""
    from bigmodel_cli import registry
    from bigmodel_cli.config import defaults
    from bigmodel_cli.inference.open_run import load_run_model

    loss_cfg = defaults.effective_loss(cfg, spec)
    model, path = load_run_model(run, cfg, spec)
    model.compile(
        loss=registry.build_loss(loss_cfg),
        metrics=registry.build_metrics(defaults.effective_metrics(cfg, spec), loss_cfg, spec),
    )
    return model, path


def score_saved_model(run: run_dir.RunDir, arrays: Arrays, cfg: Config, spec: DataSpec
                      ) -> tuple[dict[str, float], Path]:  # fmt: skip
    """Score the run's best model as `bigmodel evaluate` will, so the two always agree."""
    model, path = load_for_scoring(run, cfg, spec)
    return score(model, arrays, cfg, spec), path


def evaluate_run(
    path: Path, split: str = "test", data_config: Path | None = None, steps: int | None = None
) -> dict[str, Any]:
    """Score a run's model on a split of its data (or of `data_config`'s data section):
    its first `steps` batches, by default the run's `train.validation_steps` (all of it
    when that is unset, as the test score at the end of training)."""
    if steps is not None and steps < 1:
        raise UserError(f"--steps {steps}: give a number of batches of at least 1")
    if split not in SPLITS:
        hint = config_load.did_you_mean(split, SPLITS)
        raise UserError(
            f"--split {split!r}: unknown split.{hint} Expected one of {', '.join(SPLITS)}"
        )
    import_tensorflow()
    from bigmodel_cli import data as data_lib
    from bigmodel_cli.config import defaults
    from bigmodel_cli.inference.open_run import open_run, recorded_normalization

    trained = open_run(path)
    run, cfg = trained.run, trained.cfg
    base_dir, normalization = run.root, None
    if data_config is not None:
        other = config_load.load_config(data_config)
        cfg = cfg.model_copy(update={"data": other.data, "seed": other.seed})  # its splits
        base_dir = data_config.parent
    if data_config is not None or cfg.init is not None:
        # The model expects inputs scaled like its training data, not like the new data
        # (nor, for a fine-tuned run, like its own: it may have used its parent's scale).
        saved = recorded_normalization(run)
        normalization = data_lib.Normalization.from_json(saved) if saved else None

    # Text is encoded with the run's own vocabulary, whatever data is scored.
    bundle = data_lib.load_data(
        cfg,
        base_dir,
        normalization=normalization,
        vocabulary=trained.vocabulary,
        same_corpus=data_config is None,
    )
    arrays = bundle.split(split)
    if arrays is None:
        raise UserError(f"--split {split}: the data has no {split} split (data.{split}_split is 0)")
    if steps is not None:
        cfg = cfg.model_copy(
            update={"train": cfg.train.model_copy(update={"validation_steps": steps})}
        )
    arrays = arrays.bounded(cfg.train.validation_steps, cfg.data.batch_size)
    spec = bundle.spec
    loss_cfg = defaults.effective_loss(cfg, spec)
    model, model_path = load_for_scoring(run, cfg, spec)
    result: dict[str, Any] = {
        "split": split,
        "examples": len(arrays),
        "model": str(model_path.resolve()),
        "metrics": score(model, arrays, cfg, spec),
    }
    if spec.task == "classification" and (spec.num_classes or 0) <= MAX_REPORTED_CLASSES:
        result.update(classification_report(model, arrays, cfg, spec, loss_cfg))
    run_dir.atomic_write_json(run.eval, result)
    return result


def tables(result: dict[str, Any]) -> list[tuple[str, list[str], list[tuple[Any, ...]]]]:
    """(title, columns, rows) of the tables `bigmodel evaluate` prints: the metrics, and
    for a classifier its per-class scores and confusion matrix."""
    shown = [
        (
            f"{result['split']} ({result['examples']:,} examples)",
            ["metric", "value"],
            sorted(result["metrics"].items()),
        )
    ]
    per_class = result.get("per_class")
    if per_class:
        rows = [(name, m["precision"], m["recall"], m["f1"], m["support"])
                for name, m in per_class.items()]  # fmt: skip
        shown.append(("per class", ["class", "precision", "recall", "f1", "support"], rows))
        names = result["class_names"]
        matrix = [(n, *row) for n, row in zip(names, result["confusion_matrix"], strict=True)]
        shown.append(("confusion matrix (rows: true, columns: predicted)", ["", *names], matrix))
    return shown

"""export.json and what `bigmodel export` prints: the file, its size, its metrics next to
the Keras model's, and whether it passes `--max-metric-drop`.

export.json holds one entry per exported file, keyed by its name (`saved_model`,
`model_int8.tflite`, ...), so the exports of one run can be compared; each export
rewrites the file whole (atomically), replacing only its own entry.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

from bigmodel_cli import run_dir
from bigmodel_cli.errors import UserError
from bigmodel_cli.export.graph import Interface, folder_bytes
from bigmodel_cli.export.options import ExportRequest
from bigmodel_cli.training.callbacks.monitor import monitor_mode


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def entry(
    request: ExportRequest,
    run: run_dir.RunDir,
    target: Path,
    model_path: Path,
    interface: Interface,
    made: dict[str, Any],
    note: str | None,
    normalized: bool,
) -> dict[str, Any]:
    """What the file is and how it was made."""
    versions = {"tensorflow": _version("tensorflow")}
    if request.format == "tflite":
        versions["ai-edge-litert"] = _version("ai-edge-litert")
    return {
        "format": request.format,
        "quantize_requested": request.quantize,
        **made,
        "note": note,
        "path": str(target.resolve()),
        "file": str(target.relative_to(run.root)),
        "bytes": folder_bytes(target),
        "keras_model": str(model_path.relative_to(run.root)),
        "signature": "serving_default",
        **interface.to_json(),
        "normalization": "inside the exported graph"
        if normalized
        else "none (the run's inputs are not normalized)",
        "versions": versions,
    }


def worse_by(metric: str, keras: float, exported: float) -> float:
    """How much worse the exported model scores (negative: better)."""
    return exported - keras if monitor_mode(metric) == "min" else keras - exported


def comparison(
    scores: dict[str, dict[str, float]], metric_names: list[str], max_drop: float | None
) -> dict[str, Any]:
    """Both models' metrics, the difference (exported - keras), and the check of the
    first configured metric (the loss when there is none) against `max_drop`."""
    keras, exported = scores["keras"], scores["exported"]
    checked = metric_names[0] if metric_names and metric_names[0] in keras else "loss"
    drop = worse_by(checked, keras[checked], exported[checked])
    return {
        "metrics": {
            "keras": keras,
            "exported": exported,
            "difference": {name: exported[name] - keras[name] for name in keras},
        },
        "checked_metric": checked,
        "metric_drop": drop,
        "max_metric_drop": max_drop,
        "passed": max_drop is None or drop <= max_drop,
    }


def failure(result: dict[str, Any]) -> str:
    """Why an export failed `--max-metric-drop` (exit 1)."""
    name = result["checked_metric"]
    metrics = result["metrics"]
    return (
        f"{result['file']}: {name} is {metrics['exported'][name]:.4f} against the Keras "
        f"model's {metrics['keras'][name]:.4f} on the {result['split']} split, worse by "
        f"{result['metric_drop']:.4f}, more than --max-metric-drop {result['max_metric_drop']}"
        " (the file is kept, and export.json records the scores)"
    )


def record(run: run_dir.RunDir, name: str, result: dict[str, Any]) -> None:
    """Replace `name`'s entry in export.json (a damaged file is started afresh)."""
    path = run.export / run_dir.EXPORT_REPORT
    try:
        saved = run_dir.read_json(path) if path.exists() else {}
    except UserError:
        saved = {}
    exports = saved.get("exports") if isinstance(saved.get("exports"), dict) else {}
    exports[name] = result
    run_dir.atomic_write_json(path, {"exports": dict(sorted(exports.items()))})


def tables(result: dict[str, Any]) -> list[tuple[str, list[str], list[tuple[Any, ...]]]]:
    """(title, columns, rows) of what `bigmodel export` prints."""
    metrics = result["metrics"]
    rows = [
        (name, metrics["keras"][name], metrics["exported"][name], metrics["difference"][name])
        for name in metrics["keras"]
    ]
    speed = result["examples_per_second"]
    rows.append(("examples/s", round(speed["keras"]), round(speed["exported"]), ""))
    title = (
        f"{result['file']} ({result['bytes']:,} bytes, quantize {result['quantize']}) on "
        f"{result['split']} ({result['examples']:,} examples)"
    )
    return [(title, ["", "keras", "exported", "difference"], rows)]

"""What a search reports, rewritten after every trial: tune.json (the settings, every
trial with its values, value, status and seconds, and the best), best.yaml (the best
trial's full config, without `tune:`, ready for `bigmodel train`) and the table
`bigmodel tune` prints. The journal stays the record `--resume` reads; these are
derived from it.
"""

from __future__ import annotations

import json
from typing import Any

from bigmodel_cli import run_dir
from bigmodel_cli.experiments import tune_dir

# Optuna's trial states as bigmodel names them. A trial still "running" in the journal
# when the report is written was left by an interrupted process (--resume continues it).
STATES = {
    "COMPLETE": "completed",
    "PRUNED": "pruned",
    "FAIL": "failed",
    "RUNNING": "interrupted",
    "WAITING": "waiting",
}


def trial_entries(study: Any, search: Any) -> list[dict[str, Any]]:
    dims = {d.key: d for d in search.dims}
    entries = []
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        entries.append(
            {
                "number": trial.number,
                "run_dir": tune_dir.trial_name(trial.number),
                "status": STATES.get(trial.state.name, trial.state.name.lower()),
                "value": attrs.get("value"),
                "params": {
                    key: dims[key].decode(stored)
                    for key, stored in trial.params.items()
                    if key in dims
                },
                "epochs": attrs.get("epochs"),
                "seconds": attrs.get("seconds"),
                "error": attrs.get("error"),
            }
        )
    return entries


def write_report(study: Any, search: Any, status: str) -> dict[str, Any]:
    """Write tune.json (and best.yaml once a trial completed); return tune.json's content."""
    tune = search.cfg.tune
    entries = trial_entries(study, search)
    completed = [e for e in entries if e["status"] == "completed" and e["value"] is not None]
    best = None
    if completed:
        pick = min if search.direction == "minimize" else max
        best = dict(pick(completed, key=lambda e: e["value"]))
        best["config"] = str(search.folder.best)
        _write_best(search, best, len(entries))
    counts = {name: 0 for name in ("completed", "pruned", "failed", "interrupted")}
    for entry in entries:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    report = {
        "tune_dir": str(search.folder.root),
        "config": str(search.config_path),
        "status": status,
        "metric": tune.metric,
        "direction": search.direction,
        "sampler": tune.sampler,
        "pruner": tune.pruner,
        "seed": search.cfg.seed,
        "trials_requested": search.target,
        "space": {key: {b.kind: b.bounds} for key, b in tune.space.items()},
        "counts": counts,
        "best": best,
        "trials": entries,
    }
    run_dir.atomic_write_json(search.folder.report, report)
    return report


def _write_best(search: Any, best: dict[str, Any], trials: int) -> None:
    config = run_dir.RunDir(search.folder.trial(best["number"])).config
    try:
        text = config.read_text(encoding="utf-8")  # resolved in full, data paths absolute
    except OSError:
        return  # the trial's folder was removed by hand: keep the best.yaml written before
    header = (
        f"# bigmodel train {search.folder.best}\n"
        f"# The best of {trials} trials of {search.folder.root}: {best['run_dir']}, "
        f"{search.cfg.tune.metric} {best['value']:.4f}.\n"
    )
    run_dir.atomic_write_text(search.folder.best, header + text)


def best_line(report: dict[str, Any]) -> str:
    best = report["best"]
    return (
        f"best: {best['run_dir']}, {report['metric']} {best['value']:.4f}; train it with: "
        f"bigmodel train {best['config']}"
    )


def table(report: dict[str, Any]) -> tuple[str, list[str], list[tuple[Any, ...]]]:
    """Title, columns and rows of the trials table: values, metric, status, seconds."""
    keys = list(report["space"])
    columns = ["trial", *short_names(keys), report["metric"], "status", "seconds"]
    rows = []
    for entry in report["trials"]:
        params = [cell(entry["params"].get(key, "")) for key in keys]
        value = entry["value"]
        rows.append(
            (
                entry["run_dir"],
                *params,
                f"{value:.4f}" if value is not None else "",
                entry["status"],
                f"{entry['seconds']:.1f}" if entry["seconds"] is not None else "",
            )
        )
    return f"{report['metric']} ({report['direction']})", columns, rows


def short_names(keys: list[str]) -> list[str]:
    """Column names: each key's last part (learning_rate), unless two keys share it."""
    last = [key.rsplit(".", 1)[-1] for key in keys]
    return [part if last.count(part) == 1 else key for key, part in zip(keys, last, strict=True)]


def cell(value: Any) -> str:
    """A searched value as text: 4 significant digits, lists and mappings as JSON."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value) if isinstance(value, (bool, int, str)) else json.dumps(value)
